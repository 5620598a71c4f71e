"""Soak: two wgpy daemons carry a steady, checksummed stream across many rekeys.

Two namespaces on a veth pair each run `wgpy -f IFNAME`; a TCP stream paced at a moderate rate
flows through the tunnel for the whole run while the daemons are sampled over their configuration
sockets. The promises: memory stays flat, every handshake started completes, nothing is dropped,
and every byte arrives intact.

A session is replaced REKEY_AFTER_TIME (120 s) after it began, so the hour-long run spans about
30 handshakes. The short run lasts 40 s and launches the daemons with REKEY_AFTER_TIME shortened
to 8 s (set on wgpy.core.constants before the rest of wgpy is imported), so it too spans several.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import math
import random
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.hardening import Figure
from benchmarks.hardening.lab import wgpy_stats
from wgpy.client import get_device
from wgpy.core.constants import REKEY_AFTER_TIME, REKEY_TIMEOUT
from wgpy.lab.netns import (
    WG_PORT,
    Namespace,
    WgKeys,
    ip_up,
    one_peer_config,
    start_daemon,
    unique_ifname,
    veth_pair,
    wait_until,
    wg_genkey,
    wg_setconf,
)

AREA = "soak"
INNER = ("192.0.2.1", "192.0.2.2")
STREAM_PORT = 5301
CHUNK = 16 * 1024
# A stream that moves nothing for this long has stalled: the run fails instead of hanging.
IDLE_TIMEOUT = 60.0
HANDSHAKE_DEADLINE = 15.0
# Python's allocator keeps arenas it has grown into, so a flat process still gains a little
# after warm-up; more than this is a leak.
RSS_GROWTH_ALLOWED = 8 * 1024 * 1024
RSS_GROWTH_SHARE = 0.15
MIB = 1024 * 1024

# REKEY_AFTER_TIME is shortened in the daemon only: `wgpy.core.constants` is patched before anything
# imports its names.
LAUNCHER = (
    "import sys, wgpy.core.constants as constants; "
    "constants.REKEY_AFTER_TIME = float(sys.argv.pop(1)); "
    "from wgpy.cli.wgpy import main; sys.exit(main())"
)


@dataclass(frozen=True)
class Plan:
    duration: float  # seconds of streaming
    rekey_after: float  # the daemons' REKEY_AFTER_TIME
    rate: float  # bytes per second
    sample_every: float  # seconds between samples
    warm_up: float  # seconds before the starting RSS is taken

    @property
    def handshakes_expected(self) -> int:
        """The fewest handshakes a healthy run completes: the first, then one per rekey (each
        waits for a send after REKEY_AFTER_TIME and may take a retransmission)."""
        return 1 + math.floor(self.duration / (self.rekey_after + REKEY_TIMEOUT))


FULL = Plan(duration=3600, rekey_after=REKEY_AFTER_TIME, rate=25e6 / 8, sample_every=5, warm_up=60)
SHORT = Plan(duration=40, rekey_after=8, rate=25e6 / 8, sample_every=1, warm_up=5)


@dataclass
class Daemon:
    """One side: its namespace, interface, keys and process id, and what sampling saw."""

    ns: Namespace
    ifname: str
    keys: WgKeys
    inner: str
    pid: int = 0
    handshakes: set[tuple[int, int]] = field(default_factory=set)
    rss_first: int = 0  # at the first handshake
    rss_start: int = 0  # after warm-up: what the end is held to
    rss_end: int = 0
    rss_peak: int = 0

    def sample(self) -> None:
        for peer in get_device(self.ifname).peers:
            if peer.last_handshake_time != (0, 0):
                self.handshakes.add(peer.last_handshake_time)

    def rss(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024


@dataclass
class Stream:
    sent_sha256: str = ""
    received_sha256: str = ""
    sent: int = 0
    received: int = 0
    error: str = ""


def run(short: bool) -> list[Figure]:
    plan = SHORT if short else FULL
    with veth_pair() as (ns_a, ns_b):
        a, b = _start(ns_a, ns_b, plan)
        stream, elapsed = _soak(a, b, plan)
        return _figures(plan, a, b, stream, elapsed)


# The tunnel.


def _start(ns_a: Namespace, ns_b: Namespace, plan: Plan) -> tuple[Daemon, Daemon]:
    a = Daemon(ns_a, unique_ifname(), wg_genkey(), INNER[0])
    b = Daemon(ns_b, unique_ifname(), wg_genkey(), INNER[1])
    command = (sys.executable, "-c", LAUNCHER, str(plan.rekey_after))
    for own, other in ((a, b), (b, a)):
        own.pid = start_daemon(own.ns, command, own.ifname).pid
        endpoint = f"{other.ns.ipv4}:{WG_PORT}"
        config = one_peer_config(own.keys.private, other.keys.public, f"{other.inner}/32", endpoint)
        wg_setconf(own.ns, own.ifname, config)
        # Without IPv6 the kernel sends nothing of its own (router solicitations, MLD) into the
        # tunnel, which has no route for it: every drop counted is then the run's.
        own.ns.run("sysctl", "-qw", f"net.ipv6.conf.{own.ifname}.disable_ipv6=1")
        ip_up(own.ns, own.ifname, f"{own.inner}/24")
    return a, b


def _soak(a: Daemon, b: Daemon, plan: Plan) -> tuple[Stream, float]:
    """Stream from a to b for the plan's duration, sampling both daemons; returns the stream
    and how long it ran."""
    stream = Stream()
    started = time.monotonic()
    with _streaming(a.ns, b.ns, b.inner, plan, stream) as running:
        if not wait_until(lambda: _handshaken(a, b), HANDSHAKE_DEADLINE, 0.2):
            stream.error = f"no handshake within {HANDSHAKE_DEADLINE:.0f} s"
        a.rss_first, b.rss_first = a.rss(), b.rss()
        warm = False
        while running():
            time.sleep(plan.sample_every)
            _sample(a, b)
            if not warm and time.monotonic() - started >= plan.warm_up:
                a.rss_start, b.rss_start = a.rss(), b.rss()
                warm = True
        _sample(a, b)
    for daemon in (a, b):
        daemon.rss_end = daemon.rss()
        daemon.rss_peak = _status_kib(daemon.pid, "VmHWM") * 1024
    return stream, time.monotonic() - started


def _sample(a: Daemon, b: Daemon) -> None:
    for daemon in (a, b):
        daemon.sample()


def _handshaken(a: Daemon, b: Daemon) -> bool:
    _sample(a, b)
    return bool(a.handshakes and b.handshakes)


# The stream: random bytes paced at the plan's rate, SHA-256 on both ends.


@contextmanager
def _streaming(
    sender: Namespace, receiver: Namespace, address: str, plan: Plan, stream: Stream
) -> Iterator[Callable[[], bool]]:
    """Run the stream in two threads; yields whether it is still sending."""
    with receiver.entered():
        listener = socket.create_server((address, STREAM_PORT))
    with sender.entered():
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with concurrent.futures.ThreadPoolExecutor(2) as pool, listener, client:
        listener.settimeout(IDLE_TIMEOUT)
        client.settimeout(IDLE_TIMEOUT)
        received = pool.submit(_receive, listener, stream)
        client.connect((address, STREAM_PORT))
        sent = pool.submit(_send, client, plan, stream)
        yield lambda: not sent.done()
        for future in (sent, received):
            try:
                future.result(IDLE_TIMEOUT * 2)
            except (OSError, concurrent.futures.TimeoutError) as error:
                stream.error = stream.error or f"stream failed: {error!r}"


def _send(client: socket.socket, plan: Plan, stream: Stream) -> None:
    rng = random.Random(plan.duration)
    digest = hashlib.sha256()
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < plan.duration:
        if stream.sent >= plan.rate * elapsed:
            time.sleep(CHUNK / plan.rate)
            continue
        chunk = rng.randbytes(CHUNK)
        digest.update(chunk)
        client.sendall(chunk)
        stream.sent += len(chunk)
    client.shutdown(socket.SHUT_WR)
    stream.sent_sha256 = digest.hexdigest()


def _receive(listener: socket.socket, stream: Stream) -> None:
    connection, _ = listener.accept()
    with connection:
        connection.settimeout(IDLE_TIMEOUT)
        digest = hashlib.sha256()
        buffer = bytearray(CHUNK)
        while count := connection.recv_into(buffer):
            digest.update(memoryview(buffer)[:count])
            stream.received += count
    stream.received_sha256 = digest.hexdigest()


# The figures.


def _figures(plan: Plan, a: Daemon, b: Daemon, stream: Stream, elapsed: float) -> list[Figure]:
    return [
        *(_rss_figure(name, daemon) for name, daemon in (("a", a), ("b", b))),
        *_handshake_figures(plan, a, b),
        _drops_figure(a, b),
        _stream_figure(plan, stream, elapsed),
    ]


def _rss_figure(name: str, daemon: Daemon) -> Figure:
    growth = daemon.rss_end - daemon.rss_start
    allowed = max(RSS_GROWTH_ALLOWED, RSS_GROWTH_SHARE * daemon.rss_start)
    return Figure(
        AREA,
        f"daemon {name} RSS: first handshake, after warm-up -> end (peak)",
        f"{daemon.rss_first / MIB:.1f}, {daemon.rss_start / MIB:.1f} -> "
        f"{daemon.rss_end / MIB:.1f} MiB (peak {daemon.rss_peak / MIB:.1f})",
        daemon.rss_start > 0 and growth <= allowed,
        f"grows by at most {allowed / MIB:.0f} MiB after warm-up",
    )


def _handshake_figures(plan: Plan, a: Daemon, b: Daemon) -> list[Figure]:
    completed = len(a.handshakes)
    peers = [peer for daemon in (a, b) for peer in wgpy_stats(daemon.ifname).peers]
    attempts = sum(peer.handshake_attempts for peer in peers)
    gave_up = sum(peer.drops.get("handshake_gave_up", 0) for peer in peers)
    failed = attempts - completed
    return [
        Figure(
            AREA,
            "handshakes completed",
            f"{completed} (seen by a), {len(b.handshakes)} (seen by b)",
            completed == len(b.handshakes) and completed >= plan.handshakes_expected,
            f"one per REKEY_AFTER_TIME ({plan.rekey_after:.0f} s) under traffic: "
            f"at least {plan.handshakes_expected}",
        ),
        Figure(
            AREA,
            "failed handshakes",
            f"{failed} ({attempts} initiations sent, {gave_up} packets dropped on giving up)",
            failed == 0 and gave_up == 0,
            "every initiation sent is answered and completes",
        ),
    ]


def _drops_figure(a: Daemon, b: Daemon) -> Figure:
    counts: dict[str, int] = {}
    for daemon in (a, b):
        stats = wgpy_stats(daemon.ifname)
        for drops in (stats.drops, *(peer.drops for peer in stats.peers)):
            for reason, count in drops.items():
                counts[reason] = counts.get(reason, 0) + count
    listed = ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()) if count)
    return Figure(
        AREA,
        "packets dropped by either daemon",
        listed or "0",
        not listed,
        "no drop counter moves on a clean link",
    )


def _stream_figure(plan: Plan, stream: Stream, elapsed: float) -> Figure:
    intact = stream.received == stream.sent > 0 and stream.received_sha256 == stream.sent_sha256
    rate = stream.received * 8 / plan.duration / 1e6
    value = f"{stream.received / MIB:.0f} MiB in {elapsed:.0f} s ({rate:.1f} Mbit/s)"
    if stream.error:
        value += f"; {stream.error}"
    return Figure(
        AREA,
        "bytes moved through the tunnel",
        value,
        intact and not stream.error,
        f"a stream paced at {plan.rate * 8 / 1e6:.0f} Mbit/s arrives whole, SHA-256 equal",
    )


def _status_kib(pid: int, field_name: str) -> int:
    """A `kB` field of /proc/PID/status, such as VmRSS (resident now) or VmHWM (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {field_name}")
