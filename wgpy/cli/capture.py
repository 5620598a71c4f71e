"""`wgpy capture IFNAME -w FILE`: an interface's inner (decrypted) packets, as pcapng.

Asks the running daemon for its capture stream (`capture=1`, wgpy/uapi.py) over the configuration
socket, and writes each packet with its direction (epb_flags) and its peer's public key (a packet
comment). --keylog also writes, for every new handshake, the secrets Wireshark's WireGuard
dissector needs to decrypt a capture of the outer UDP traffic (wgpy/capture.py keylog_lines).

The capture ends on Ctrl-C, SIGTERM, --count, --duration, or when the daemon goes away; the file
holds whole blocks only whenever it is flushed (after every read), so it is always a valid
pcapng. Exit status: 0 when the capture ended as asked, 1 when it could not run, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import BinaryIO, TextIO

from wgpy import __version__, client
from wgpy.capture import (
    DroppedRecord,
    PacketRecord,
    Record,
    RecordReader,
    SecretsRecord,
    keylog_lines,
)
from wgpy.cli import argparse_exit_returned
from wgpy.core.keys import to_base64
from wgpy.errors import UapiError, WgpyError
from wgpy.pcapng import PcapngWriter
from wgpy.uapi import CaptureRequest

PROG = "wgpy capture"
WAKE_INTERVAL = 0.25  # how often a quiet capture looks at its deadline and at signals
KEYLOG_WARNING = """\
{prog}: WARNING: writing SESSION SECRETS to {path}.
{prog}: It holds this interface's PRIVATE KEY and every new handshake's ephemeral key: whoever
{prog}: reads it can decrypt this traffic and impersonate the interface. Delete it when done.
{prog}: Only handshakes from now on are logged; a session already running shows up once it is
{prog}: next renewed (within two minutes of traffic).
"""


class CaptureError(WgpyError):
    """Why the capture could not run, as printed after the program name."""


@argparse_exit_returned
def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.keylog is not None and os.geteuid() != 0:
            raise CaptureError("--keylog exposes session secrets and is for root only")
        with _stopped_by_signals() as stop:
            written, dropped = capture(
                args.ifname,
                args.write,
                keylog=args.keylog,
                count=args.count,
                duration=args.duration,
                stop=stop,
            )
    except CaptureError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    lost = f", {dropped} lost (this reader was too slow)" if dropped else ""
    print(f"{PROG}: {written} packets written to {args.write}{lost}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write a wgpy interface's decrypted packets as pcapng, each with its "
        "direction and its peer's public key.",
    )
    parser.add_argument("ifname", metavar="IFNAME")
    parser.add_argument("-w", dest="write", required=True, metavar="FILE", help="- for stdout")
    parser.add_argument("--count", type=_positive(int), metavar="N", help="stop after N packets")
    parser.add_argument("--duration", type=_positive(float), metavar="S", help="stop after S s")
    parser.add_argument(
        "--keylog",
        metavar="KEYFILE",
        help="also append Wireshark's WireGuard key log (SECRETS; root only; created 0600)",
    )
    return parser


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def capture(
    ifname: str,
    path: str,
    *,
    keylog: str | None = None,
    count: int | None = None,
    duration: float | None = None,
    stop: threading.Event | None = None,
) -> tuple[int, int]:
    """Capture to `path` until `count` packets, `duration` seconds, `stop` or the daemon's end.
    Returns (packets written, records the daemon dropped); raises CaptureError."""
    deadline = None if duration is None else time.monotonic() + duration
    stop = stop or threading.Event()
    sock, first = _open(ifname, CaptureRequest(keylog=keylog is not None))
    data: bytes | None = first
    with sock, _output(path) as stream, _keylog(keylog) as secrets_file:
        writer = PcapngWriter(stream, interface=ifname, application=f"wgpy {__version__}")
        sink = _Sink(writer, secrets_file, count)
        reader = RecordReader()
        while data is not None and not sink.full and not stop.is_set():
            sink.take(_records(reader, data))
            data = _receive(sock, deadline)
    return writer.packets, sink.dropped


class _Sink:
    """Where records go: packets to the pcapng writer (until `count`), secrets to the key log."""

    def __init__(self, writer: PcapngWriter, keylog: TextIO | None, count: int | None) -> None:
        self._writer = writer
        self._keylog = keylog
        self._count = count
        self.dropped = 0

    @property
    def full(self) -> bool:
        return self._writer.packets == self._count

    def take(self, records: Iterator[Record]) -> None:
        for record in records:
            if isinstance(record, PacketRecord):
                if self.full:
                    break
                comment = f"peer {to_base64(record.peer)}"
                self._writer.write_packet(record.packet, record.wall, record.direction, comment)
            elif isinstance(record, SecretsRecord) and self._keylog is not None:
                self._keylog.write(keylog_lines(record.secrets))
                self._keylog.flush()
            elif isinstance(record, DroppedRecord):
                self.dropped = record.total
        self._writer.flush()


def _records(reader: RecordReader, data: bytes) -> Iterator[Record]:
    try:
        yield from reader.feed(data)
    except UapiError as error:
        raise CaptureError(f"the daemon sent a malformed stream: {error}") from None


def _receive(sock: socket.socket, deadline: float | None) -> bytes | None:
    """The next bytes of the stream: b"" when none came within WAKE_INTERVAL, None at the end
    (the daemon closed, or the deadline passed)."""
    timeout = WAKE_INTERVAL
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        timeout = min(timeout, remaining)
    sock.settimeout(timeout)
    try:
        data = sock.recv(1 << 16)
    except TimeoutError:
        return b""
    except OSError as error:
        raise CaptureError(f"reading the stream: {error.strerror or error}") from None
    return data or None


# The daemon ---------------------------------------------------------------------------------------


def _open(ifname: str, request: CaptureRequest) -> tuple[socket.socket, bytes]:
    """The daemon's socket, and the first bytes of its stream."""
    try:
        return client.open_capture(ifname, request)
    except OSError as error:
        path = client.socket_path(ifname)
        reason = error.strerror or str(error)
        raise CaptureError(f"{ifname}: cannot reach the daemon through {path}: {reason}") from None
    except UapiError as error:
        if error.errno == errno.EOPNOTSUPP:
            raise CaptureError(f"{ifname}: the daemon does not offer capture (not wgpy?)") from None
        raise CaptureError(f"{ifname}: the daemon refused: {os.strerror(error.errno)}") from None


# Files and signals -----------------------------------------------------------------------------


@contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdout.buffer
        return
    try:
        stream = open(path, "wb")  # noqa: SIM115 -- closed below, after the last flush
    except OSError as error:
        raise CaptureError(f"{path}: {error.strerror}") from None
    with stream:
        yield stream


@contextmanager
def _keylog(path: str | None) -> Iterator[TextIO | None]:
    """The key log, appended to and readable by its owner only, announced loudly on stderr."""
    if path is None:
        yield None
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)  # It may have existed with a wider mode.
    except OSError as error:
        raise CaptureError(f"{path}: {error.strerror}") from None
    print(KEYLOG_WARNING.format(prog=PROG, path=path), end="", file=sys.stderr)
    with open(fd, "w", encoding="ascii") as secrets_file:
        yield secrets_file


@contextmanager
def _stopped_by_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM: the capture loop sees it within WAKE_INTERVAL and
    ends between records, so no block is ever cut short."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
