"""WGPY_PEER_HOOK: a command that decides whether the daemon admits an unknown key (issue 20).

When the device holds an initiation from a key it does not know (a PeerWanted), the command
runs through /bin/sh with WGPY_INTERFACE, WGPY_PUBLIC_KEY (base64) and WGPY_ENDPOINT
(host:port, as `wg` writes an endpoint) in its environment. Exit status 0 with peer lines of the
configuration protocol on stdout admits the key:

    allowed_ip=198.18.5.7/32
    preshared_key=<64 hex digits>
    persistent_keepalive_interval=25

Anything else refuses it: another status, a signal, other lines (garbage, other keys), more than
MAX_OUTPUT bytes, or no exit within the timeout, when the hook's whole process group is killed.
Bounded: at most `limit` hooks run at once, in as many threads; MAX_QUEUED more wait (the
device's table holds no more), and what finds the queue full is forgotten until the key's next
initiation. The device limits how often one source asks (core/admission.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from wgpy.core.admission import MAX_HELD, PeerSettings
from wgpy.core.device import PeerWanted
from wgpy.core.keys import short_form, to_base64
from wgpy.errors import WgpyError
from wgpy.uapi import ZERO_KEY, PeerUpdate, parse_peer_line

log = logging.getLogger("wgpy")

HOOK_VARIABLE: Final = "WGPY_PEER_HOOK"
LIMIT_VARIABLE: Final = "WGPY_PEER_HOOK_LIMIT"
TIMEOUT_VARIABLE: Final = "WGPY_PEER_HOOK_TIMEOUT"
DEFAULT_LIMIT: Final = 4
DEFAULT_TIMEOUT: Final = 2.0
MAX_OUTPUT: Final = 65536
MAX_QUEUED: Final = MAX_HELD
# The peer settings a hook may give; the key and the endpoint are the initiation's.
HOOK_KEYS: Final = ("allowed_ip", "preshared_key", "persistent_keepalive_interval")


class HookFailed(WgpyError):
    """Why a hook's answer refuses the key."""


@dataclass(frozen=True, slots=True)
class HookSettings:
    command: str
    limit: int = DEFAULT_LIMIT
    timeout: float = DEFAULT_TIMEOUT


def hook_settings(environ: Mapping[str, str]) -> HookSettings | None:
    """The hook the environment names, or None; raises ValueError for a bad limit or timeout."""
    command = environ.get(HOOK_VARIABLE)
    if not command:
        return None
    limit = environ.get(LIMIT_VARIABLE, str(DEFAULT_LIMIT))
    if not limit.isascii() or not limit.isdigit() or int(limit) < 1:
        raise ValueError(f"{LIMIT_VARIABLE}={limit!r}: not a positive integer")
    timeout = environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT))
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 60:
        raise ValueError(f"{TIMEOUT_VARIABLE}={timeout!r}: not a number of seconds in (0, 60]")
    return HookSettings(command, int(limit), seconds)


def parse_peer_settings(output: str) -> PeerSettings:
    """A hook's standard output as the admitted peer's settings; raises HookFailed, naming the
    line, for anything but HOOK_KEYS lines (blank lines are skipped)."""
    peer = PeerUpdate(ZERO_KEY)
    for number, line in enumerate(output.splitlines(), start=1):
        if not line.strip():
            continue
        key = line.partition("=")[0]
        if key not in HOOK_KEYS:
            raise HookFailed(f"output line {number}: not one of {', '.join(HOOK_KEYS)}")
        try:
            parse_peer_line(peer, line)
        except ValueError as error:
            raise HookFailed(f"output line {number}: {key}: {error}") from None
    if peer.removed_allowed_ips:
        raise HookFailed("allowed_ip=-PREFIX removes a prefix from a peer that has none")
    preshared_key = None if peer.preshared_key in (None, ZERO_KEY) else peer.preshared_key
    return PeerSettings(
        tuple(peer.allowed_ips), preshared_key, peer.persistent_keepalive_interval or 0
    )


def run_hook(command: str, environ: Mapping[str, str], timeout: float) -> str:
    """Run `command` through /bin/sh; its standard output if it exits 0 within `timeout`.
    Raises HookFailed otherwise, its process group killed if it was still running."""
    deadline = time.monotonic() + timeout
    try:
        process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=dict(environ),
            start_new_session=True,  # its own process group, to kill all of it
        )
    except OSError as error:
        raise HookFailed(f"could not start: {error.strerror or error}") from None
    assert process.stdout is not None
    try:
        with process.stdout:
            output = _read_until(process.stdout.fileno(), deadline)
        status = process.wait(max(0.0, deadline - time.monotonic()))
    except (HookFailed, TimeoutError, subprocess.TimeoutExpired) as error:
        # Killed before it is reaped: its process group's id cannot have been reused yet.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if isinstance(error, HookFailed):
            raise
        raise HookFailed(f"timed out after {timeout:g} s (killed)") from None
    if status != 0:
        ended = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise HookFailed(ended)
    try:
        return output.decode()
    except UnicodeDecodeError:
        raise HookFailed("printed what is not UTF-8") from None


def _read_until(fd: int, deadline: float) -> bytes:
    """All that `fd` gives until its end, by `deadline` and at most MAX_OUTPUT bytes."""
    chunks: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise HookFailed(f"printed more than {MAX_OUTPUT} bytes (killed)")
            chunks.append(chunk)


Decide = Callable[[PeerWanted, PeerSettings | None], None]


class PeerHook:
    """Runs the hook for each PeerWanted, `settings.limit` at a time, and hands the answer to
    `decide`: the peer's settings, or None to refuse it."""

    def __init__(self, settings: HookSettings, interface: str, decide: Decide) -> None:
        self._settings = settings
        self._interface = interface
        self._decide = decide
        self._queue: queue.Queue[PeerWanted | None] = queue.Queue(MAX_QUEUED)
        self._workers = [
            threading.Thread(target=self._work, name=f"{interface}-peer-hook", daemon=True)
            for _ in range(settings.limit)
        ]
        for worker in self._workers:
            worker.start()

    def ask(self, wanted: PeerWanted) -> None:
        """From the data path: queue `wanted`, or forget it if the queue is full."""
        try:
            self._queue.put_nowait(wanted)
        except queue.Full:
            log.debug(
                "(%s) peer %s not asked about: %d hooks wait already",
                self._interface, short_form(wanted.public_key), MAX_QUEUED,
            )  # fmt: skip

    def close(self) -> None:
        """Let the workers end once the hooks running now are done; they are not waited for."""
        for _ in self._workers:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)

    def _work(self) -> None:
        while (wanted := self._queue.get()) is not None:
            try:
                self._decide(wanted, self._answer(wanted))
            except Exception:
                log.exception("(%s) peer hook", self._interface)

    def _answer(self, wanted: PeerWanted) -> PeerSettings | None:
        environ = {
            **os.environ,
            "WGPY_INTERFACE": self._interface,
            "WGPY_PUBLIC_KEY": to_base64(wanted.public_key),
            "WGPY_ENDPOINT": str(wanted.endpoint),
        }
        key = short_form(wanted.public_key)
        try:
            output = run_hook(self._settings.command, environ, self._settings.timeout)
            settings = parse_peer_settings(output)
        except HookFailed as reason:
            log.error("(%s) peer %s refused by the peer hook: %s", self._interface, key, reason)
            return None
        log.info("(%s) peer %s from %s admitted by the peer hook", self._interface, key,
                 wanted.endpoint)  # fmt: skip
        return settings
