"""Garbage at a running wgpy's port while a legitimate peer moves a checksummed stream through it.

Two namespaces on a veth pair: side A runs the wgpy daemon under test (LOG_LEVEL=debug, its log
kept), side B the legitimate peer (wireguard-go where installed, else wgpy) and, from another UDP
port of B's address, the garbage (benchmarks/hardening/fuzz_datagrams.py). A TCP stream of random
bytes goes from B to A through the tunnel the whole time, hashed on both ends.

Drops are read from A's `stats=1`. Garbage is sent in bursts, and the next burst waits until A has
counted all but FLIGHT of what was sent, so A's socket buffer never overflows and every datagram
reaches the daemon: the rate of that part is what A absorbed, not a load offered to it. Then more
garbage is offered at a fixed OFFERED_RATE, whatever A makes of it, and what a full socket buffer
lost is counted. nftables counters in A's namespace count what arrived, and the kernel's
RcvbufErrors what a full socket buffer lost. The legitimate peer's handshake messages are counted
too: under load, A may drop one of them (COOKIE_REQUIRED) and must count that as well.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.hardening.fuzz_daemon import WGPY, log_faults, start_daemon
from benchmarks.hardening.fuzz_datagrams import TRANSPORT_TYPE, Corpus
from benchmarks.hardening.lab import nft_counter_packets, rcvbuf_errors, wgpy_stats
from wgpy import client, uapi
from wgpy.core.constants import COUNTER_WINDOW_SIZE
from wgpy.core.drops import DropReason
from wgpy.lab import netns
from wgpy.lab.netns import VETH, WG_PORT, Namespace

INNER = ("192.0.2.1", "192.0.2.2")  # A's and B's tunnel addresses
STREAM_PORT = 5201
STREAM_RATE = 3 << 20  # bytes per second: enough to be a transfer, little enough to leave CPU
CHUNK = 64 * 1024
BURST = 256
FLIGHT = 2048  # datagrams sent but not yet counted, at most
OFFERED_RATE = 50_000  # datagrams a second, in bursts of a millisecond's worth
OFFER_BURST_SECONDS = 0.001
SETTLE_TIMEOUT = 30.0
REPLAY_WAIT_TIMEOUT = 120.0
CAPTURED = 64
# A transport message carries at most an MTU of packet and 32 bytes of header and tag: once this
# many more bytes arrived from B, every captured message's counter is behind the replay window.
WINDOW_PASSED_BYTES = (COUNTER_WINDOW_SIZE + 1024) * (1500 + 32)
TUN_SIDE = frozenset(
    reason.name.lower()
    for reason in (
        DropReason.NO_ROUTE,
        DropReason.NO_ENDPOINT,
        DropReason.STAGED_OVERFLOW,
        DropReason.HANDSHAKE_GAVE_UP,
    )
)
NFT_RULES = f"""
table ip wgpyfuzz {{
    counter legit_handshakes {{}}
    counter garbage {{}}
    chain input {{
        type filter hook input priority 0; policy accept;
        udp sport {WG_PORT} udp dport {WG_PORT} @th,64,8 {{ 1, 2 }} counter name legit_handshakes
        udp sport != {WG_PORT} udp dport {WG_PORT} counter name garbage
    }}
}}
"""


@dataclass
class OfferedLoad:
    """Garbage sent at a fixed rate, not paced on what wgpy counted."""

    sent: int = 0
    seconds: float = 0.0
    arrived: int = 0  # at A's network stack, by nftables
    kernel_dropped: int = 0  # lost to a full socket buffer (RcvbufErrors in A's namespace)
    counted: int = 0  # increase of A's network-side drops
    legit_handshakes: int = 0  # B's handshake messages that arrived meanwhile

    @property
    def counted_as_arrived(self) -> bool:
        """Every datagram that reached wgpy's socket counted once: at least all but those a full
        buffer lost (some of which may have been the stream's), at most one more for each
        legitimate handshake message."""
        return self.sent - self.kernel_dropped <= self.counted <= self.sent + self.legit_handshakes


@dataclass
class TunnelFuzzResult:
    sent: int = 0
    arrived: int = 0  # at A's network stack, by nftables
    kernel_dropped: int = 0  # RcvbufErrors in A's namespace
    counted: int = 0  # increase of A's network-side drops
    legit_handshakes: int = 0  # B's handshake messages that arrived during the run
    by_reason: dict[str, int] = field(default_factory=dict)
    tun_side_drops: int = 0
    seconds: float = 0.0  # sending, and waiting for the count to catch up
    stream_sent: int = 0
    stream_received: int = 0
    stream_intact: bool = False
    daemon_alive: bool = False
    log_faults: int = 0  # tracebacks and error lines in the daemon's log
    log_tail: str = ""
    legitimate_peer: str = ""
    aborted: str = ""  # why the run stopped early, if it did
    offered: OfferedLoad = field(default_factory=OfferedLoad)

    @property
    def counted_as_sent(self) -> bool:
        """Every garbage datagram counted once; a legitimate handshake message may add one."""
        return 0 <= self.counted - self.sent <= self.legit_handshakes


def fuzz_tunnel(count: int, offered: int, seed: int) -> TunnelFuzzResult:
    """`count` garbage datagrams at wgpy's port during a transfer, paced on its count; a tenth of
    them, once the session's transport data is captured, made from it. Then `offered` more at
    OFFERED_RATE."""
    result = TunnelFuzzResult()
    with netns.veth_pair() as (a, b), _tunnel(a, b, result) as target:
        nft(a, "-f", "-", text=NFT_RULES)
        with _Stream(b, a) as stream:
            stream.wait_started()
            captured = _capture_transport(b, a.ipv4, CAPTURED)
            captured_at = _rx_bytes(target.ifname)
            corpus = Corpus(random.Random(seed), target.public_key)
            informed = count // 10
            blind = corpus.blind(count - informed)
            replays = corpus.informed(informed, captured[0][4:8], captured)
            before = _Snapshot.take(a, target.ifname)
            flow: _Flow | None = None
            try:
                flow = _send_garbage(b, a, target, before, blind, replays, captured_at)
                after = _Snapshot.take(a, target.ifname)
                result.offered = _offer(b, a, target.ifname, corpus.blind(offered), after)
            except OSError as error:  # The daemon's socket went away: its log tells why.
                result.aborted = str(error)
                after = before
        result.stream_sent, result.stream_received = stream.sent, stream.received
        result.stream_intact = stream.intact()
        result.seconds = flow.busy if flow else 0.0
        _compare(result, before, after, flow.sent if flow else 0)
        result.daemon_alive = target.process.poll() is None
        text = target.log.read_text(errors="replace")
    result.log_faults = log_faults(text)
    result.log_tail = text[-3000:]
    return result


def _send_garbage(
    b: Namespace,
    a: Namespace,
    target: _Target,
    before: _Snapshot,
    blind: list[bytes],
    replays: list[bytes],
    captured_at: int,
) -> _Flow:
    with _garbage_socket(b) as sender:
        flow = _Flow(sender, (a.ipv4, WG_PORT), target.ifname, before.network_drops)
        flow.send(blind)
        # Replayed only once the window is past them: a replay whose original was lost on the
        # way would otherwise be news, and accepted.
        netns.wait_until(
            lambda: _rx_bytes(target.ifname) - captured_at > WINDOW_PASSED_BYTES,
            REPLAY_WAIT_TIMEOUT,
            interval=0.2,
        )
        flow.send(replays)
        flow.settle()
    return flow


def _compare(result: TunnelFuzzResult, before: _Snapshot, after: _Snapshot, sent: int) -> None:
    result.sent = sent
    result.arrived = after.garbage_arrived - before.garbage_arrived
    result.kernel_dropped = after.rcvbuf_errors - before.rcvbuf_errors
    result.counted = after.network_drops - before.network_drops
    result.legit_handshakes = after.legit_handshakes - before.legit_handshakes
    result.by_reason = {
        reason: count - before.drops.get(reason, 0)
        for reason, count in sorted(after.drops.items())
        if reason not in TUN_SIDE and count != before.drops.get(reason, 0)
    }
    result.tun_side_drops = sum(after.drops.get(r, 0) - before.drops.get(r, 0) for r in TUN_SIDE)


def _offer(
    b: Namespace, a: Namespace, ifname: str, datagrams: list[bytes], before: _Snapshot
) -> OfferedLoad:
    """Send `datagrams` at OFFERED_RATE, give wgpy up to SETTLE_TIMEOUT to count all that reached
    its socket, and compare."""
    with _garbage_socket(b) as sender:
        started = time.monotonic()
        _send_at(sender, (a.ipv4, WG_PORT), datagrams, OFFERED_RATE)
        seconds = time.monotonic() - started

    def reached() -> bool:
        lost = rcvbuf_errors(a) - before.rcvbuf_errors
        return _network_drops(wgpy_stats(ifname)) - before.network_drops >= len(datagrams) - lost

    netns.wait_until(reached, SETTLE_TIMEOUT, interval=0.2)
    after = _Snapshot.take(a, ifname)
    return OfferedLoad(
        sent=len(datagrams),
        seconds=seconds,
        arrived=after.garbage_arrived - before.garbage_arrived,
        kernel_dropped=after.rcvbuf_errors - before.rcvbuf_errors,
        counted=after.network_drops - before.network_drops,
        legit_handshakes=after.legit_handshakes - before.legit_handshakes,
    )


def _send_at(
    sender: socket.socket, target: tuple[str, int], datagrams: list[bytes], rate: float
) -> None:
    """Each datagram at its time in a steady `rate`, in bursts of OFFER_BURST_SECONDS."""
    sendto, sent = sender.sendto, 0
    started = time.monotonic()
    while sent < len(datagrams):
        due = min(int((time.monotonic() - started) * rate), len(datagrams))
        for datagram in datagrams[sent:due]:
            sendto(datagram, target)
        sent = due
        time.sleep(OFFER_BURST_SECONDS)


# The tunnel ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """The wgpy daemon under test, in side A."""

    process: subprocess.Popen[bytes]
    log: Path
    ifname: str
    public_key: bytes


@contextmanager
def _tunnel(a: Namespace, b: Namespace, result: TunnelFuzzResult) -> Iterator[_Target]:
    """wgpy in `a`, the legitimate peer in `b`, each the other's peer, their tunnel up."""
    keys = netns.wg_genkey(), netns.wg_genkey()
    ifnames = netns.unique_ifname("fz"), netns.unique_ifname("fz")
    legit = ("wireguard-go",) if shutil.which("wireguard-go") else WGPY
    result.legitimate_peer = "wireguard-go" if legit[0] == "wireguard-go" else "wgpy"
    log = Path(tempfile.gettempdir()) / f"wgpy-fuzz-{os.getpid()}-{ifnames[0]}.log"
    try:
        with open(log, "wb") as log_file:
            process = start_daemon(a, WGPY, ifnames[0], log_file, {"LOG_LEVEL": "debug"})
        start_daemon(b, legit, ifnames[1], subprocess.DEVNULL, {})
        sides = ((a, b, 0), (b, a, 1))
        for ns, other_ns, side in sides:
            own, other = keys[side], keys[1 - side]
            allowed, endpoint = f"{INNER[1 - side]}/32", f"{other_ns.ipv4}:{WG_PORT}"
            config = netns.one_peer_config(own.private, other.public, allowed, endpoint)
            netns.configure(ns, ifnames[side], config, f"{INNER[side]}/24")
        public_key = base64.b64decode(keys[0].public)
        yield _Target(process, log, ifnames[0], public_key)
    finally:
        for ifname in ifnames:
            client.socket_path(ifname).unlink(missing_ok=True)
        log.unlink(missing_ok=True)


def nft(ns: Namespace, *args: str, text: str | None = None) -> str:
    return ns.run("nft", *args, input=text).stdout


def _network_drops(stats: uapi.DeviceStats) -> int:
    return sum(count for reason, count in stats.drops.items() if reason not in TUN_SIDE)


def _rx_bytes(ifname: str) -> int:
    return sum(peer.rx_bytes for peer in client.get_device(ifname).peers)


@dataclass(frozen=True)
class _Snapshot:
    drops: dict[str, int]
    network_drops: int
    garbage_arrived: int
    legit_handshakes: int
    rcvbuf_errors: int

    @classmethod
    def take(cls, ns: Namespace, ifname: str) -> _Snapshot:
        stats = wgpy_stats(ifname)
        return cls(
            stats.drops,
            _network_drops(stats),
            nft_counter_packets(ns, "wgpyfuzz", "garbage", "ip"),
            nft_counter_packets(ns, "wgpyfuzz", "legit_handshakes", "ip"),
            rcvbuf_errors(ns),
        )


# Garbage ------------------------------------------------------------------------------------


def _garbage_socket(ns: Namespace) -> socket.socket:
    with ns.entered():
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind((ns.ipv4, 0))
    sender.setblocking(True)
    return sender


class _Flow:
    """Sends in bursts, never more than FLIGHT ahead of what the receiver has counted."""

    def __init__(
        self, sender: socket.socket, target: tuple[str, int], ifname: str, counted: int
    ) -> None:
        self.sender, self.target, self.ifname = sender, target, ifname
        self.base = counted
        self.sent = 0
        self.busy = 0.0  # seconds spent sending and waiting for the count to catch up

    def send(self, datagrams: list[bytes]) -> None:
        started = time.monotonic()
        sendto, target = self.sender.sendto, self.target
        for start in range(0, len(datagrams), BURST):
            self._wait_for(self.sent - FLIGHT)
            for datagram in datagrams[start : start + BURST]:
                sendto(datagram, target)
            self.sent += len(datagrams[start : start + BURST])
        self.busy += time.monotonic() - started

    def settle(self) -> None:
        """Wait until everything sent is counted, or until the count stops moving."""
        started = time.monotonic()
        self._wait_for(self.sent)
        self.busy += time.monotonic() - started

    def _wait_for(self, target: int) -> None:
        last, since = -1, time.monotonic()
        while (counted := _network_drops(wgpy_stats(self.ifname)) - self.base) < target:
            if counted != last:
                last, since = counted, time.monotonic()
            elif time.monotonic() - since > SETTLE_TIMEOUT:
                return  # Lost on the way: the comparison at the end shows it.
            time.sleep(0.001)


# The legitimate stream ------------------------------------------------------------------------


class _Stream:
    """Random bytes over TCP from B to A's tunnel address at STREAM_RATE, SHA-256 on both ends,
    until the context ends."""

    def __init__(self, sender: Namespace, receiver: Namespace) -> None:
        with receiver.entered():
            self.listener = socket.create_server((INNER[0], STREAM_PORT))
        with sender.entered():
            self.client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.stop = threading.Event()
        self.sent = self.received = 0
        self.sent_digest, self.received_digest = hashlib.sha256(), hashlib.sha256()
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._guarded(self._receive), daemon=True),
            threading.Thread(target=self._guarded(self._send), daemon=True),
        ]

    def __enter__(self) -> _Stream:
        self.listener.settimeout(60)
        self.client.settimeout(60)
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
        self.listener.close()
        self.client.close()

    def wait_started(self) -> None:
        if not netns.wait_until(lambda: self.received > 0 or bool(self.errors), 30.0):
            raise RuntimeError("no bytes came through the tunnel")

    def intact(self) -> bool:
        return (
            not self.errors
            and self.sent == self.received > 0
            and self.sent_digest.digest() == self.received_digest.digest()
        )

    def _guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as error:
                self.errors.append(error)

        return run

    def _send(self) -> None:
        rng = random.Random(STREAM_PORT)
        self.client.connect((INNER[0], STREAM_PORT))
        started = time.monotonic()
        while not self.stop.is_set():
            chunk = rng.randbytes(CHUNK)
            self.sent_digest.update(chunk)
            self.client.sendall(chunk)
            self.sent += len(chunk)
            ahead = self.sent / STREAM_RATE - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        self.client.shutdown(socket.SHUT_WR)

    def _receive(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.settimeout(60)
            buffer = bytearray(CHUNK)
            while count := connection.recv_into(buffer):
                self.received_digest.update(memoryview(buffer)[:count])
                self.received += count


# Capture --------------------------------------------------------------------------------------

ETH_P_ALL = 0x0003


def _capture_transport(ns: Namespace, destination: str, count: int) -> list[bytes]:
    """The first transport message of each of the next `count` datagrams leaving `ns` for
    `destination`'s WireGuard port (with UDP_SEGMENT, a datagram carries several)."""
    with ns.entered():
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    with capture:
        capture.bind((VETH, ETH_P_ALL))
        capture.settimeout(10)
        address = socket.inet_aton(destination)
        port = WG_PORT.to_bytes(2, "big")
        messages: list[bytes] = []
        while len(messages) < count:
            packet = capture.recv(65535)
            header = (packet[0] & 0x0F) * 4
            payload = packet[header + 8 :]
            if (
                packet[9] == socket.IPPROTO_UDP
                and packet[16:20] == address
                and packet[header + 2 : header + 4] == port
                and payload[:4] == TRANSPORT_TYPE
            ):
                messages.append(_first_message(payload))
    return messages


def _first_message(payload: bytes) -> bytes:
    """Where the header and receiver index recur at a multiple of 16 bytes, the next message
    starts (by chance inside ciphertext with odds of 2**-64)."""
    start = payload[:8]
    end = next((at for at in range(32, len(payload), 16) if payload.startswith(start, at)), None)
    return payload[:end]
