"""Ping through the tunnel after idle gaps: wgpy, wireguard-go, and a floor for Python.

    python benchmarks/latency.py               # 3 rounds, 50 pings per interval: about 3 minutes

The floor is the cheapest tunnel CPython can run: a loop that reads a packet from a TUN, seals it
with ChaCha20-Poly1305 under a fixed key and sends it, and does the reverse for what arrives, with
no protocol around it. Where wgpy's round trip lies between the floor and wireguard-go's says
what costs it: the interpreter's wake-ups and system calls (the floor pays them too) or wgpy's
own per-packet work.

Pings go 2 ms apart and 20 ms apart (throughput.py's ping interval). On a virtual machine an idle
CPU loses its caches, so the second is the harder case: every object a packet touches is fetched
anew. Each implementation gets fresh namespaces (wgpy/lab/netns.py) in each round, taking turns
in an order rotated by one every round, so that no one always runs first or last.

Last, the machine's own price for a hop between two processes, which a ping through two daemons
pays four times: a UDP round trip on 127.0.0.1 between two processes pinned to one CPU and to two,
at the same intervals. Where waking an idle CPU is dear (a guest whose idle CPUs halt at once,
with no polling first), the second costs several times the first, and a runtime whose threads
spin before they sleep (Go's) hides part of it.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import throughput  # benchmarks/throughput.py, beside this script: its tunnels and pings
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy.io.tun import open_tun
from wgpy.lab.netns import Namespace, ip_up, veth_pair, wait_until

INTERVALS = (0.002, 0.02)
IMPLEMENTATIONS = ("floor", "wgpy", "wireguard-go")
FLOOR_PORT = 51820
FLOOR_IFNAME = "floor0"


# -- the floor -------------------------------------------------------------------------------


def relay(ifname: str, local: str, peer: str) -> None:
    """TUN to UDP and back, sealed and opened under a fixed key: nothing more. Runs until
    killed; prints "ready" once the TUN and the socket are open."""
    tun = open_tun(ifname)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((local, FLOOR_PORT))
    sock.connect((peer, FLOOR_PORT))
    aead, nonce = ChaCha20Poly1305(bytes(32)), bytes(12)
    poller = select.poll()
    poller.register(tun.fileno(), select.POLLIN)
    poller.register(sock, select.POLLIN)
    print("ready", flush=True)
    while True:
        for fd, _ in poller.poll():
            try:
                if fd == tun.fileno():
                    sock.send(aead.encrypt(nonce, os.read(fd, 65536), None))
                else:
                    os.write(tun.fileno(), aead.decrypt(nonce, sock.recv(65536), None))
            except OSError:  # ICMP errors before the other side is up
                pass


@contextmanager
def floor_tunnel() -> Iterator[tuple[Namespace, str]]:
    """Two relays on a veth pair; yields side A's namespace and side B's tunnel address."""
    with veth_pair() as (ns_a, ns_b):
        ends = ((ns_a, ns_b), (ns_b, ns_a))
        for index, (ns, other) in enumerate(ends):
            process = ns.popen(
                sys.executable, __file__, "--relay", FLOOR_IFNAME, ns.ipv4, other.ipv4,
                stdout=subprocess.PIPE,
            )  # fmt: skip
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                raise RuntimeError("the floor relay did not start")
            ip_up(ns, FLOOR_IFNAME, f"{throughput.TUNNEL[index]}/{throughput.TUNNEL_PREFIX}")
        address = throughput.TUNNEL[1]
        if not wait_until(lambda: throughput.ping_ok(ns_a, address), 10.0):
            raise RuntimeError("no ping through the floor relays")
        yield ns_a, address


# -- the machine's hop ------------------------------------------------------------------------


def hop_round_trips(cpus: tuple[int, int], interval: float, count: int) -> float:
    """Median microseconds of a UDP round trip on 127.0.0.1 from a process on `cpus[0]` to one
    on `cpus[1]` that echoes it, `interval` seconds apart."""
    ours, theirs = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for sock in (ours, theirs):
        sock.bind(("127.0.0.1", 0))
    ours.connect(theirs.getsockname())
    pid = os.fork()
    if pid == 0:  # the echo, until an empty datagram
        os.sched_setaffinity(0, {cpus[1]})
        while True:
            data, source = theirs.recvfrom(64)
            if not data:
                os._exit(0)
            theirs.sendto(data, source)
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    try:
        times = []
        for _ in range(count):
            time.sleep(interval)
            started = time.perf_counter()
            ours.send(b"x")
            ours.recv(64)
            times.append((time.perf_counter() - started) * 1e6)
    finally:
        ours.send(b"")
        os.waitpid(pid, 0)
        os.sched_setaffinity(0, allowed)
        ours.close()
        theirs.close()
    return statistics.median(times)


def print_hops(count: int) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("a hop between two processes: one CPU only, nothing to compare")
        return
    print(f"{'hop, us':18}" + "".join(f"{f'every {i * 1e3:g} ms':>22}" for i in INTERVALS))
    for label, pair in (("one CPU", (cpus[0], cpus[0])), ("two CPUs", (cpus[0], cpus[1]))):
        cells = [f"{hop_round_trips(pair, i, count):.1f}".rjust(22) for i in INTERVALS]
        print(f"{label:18}" + "".join(cells))
    print("a UDP round trip between two processes on 127.0.0.1, pinned to one CPU or to two")


# -- the measurement -------------------------------------------------------------------------


def measure(implementation: str, count: int) -> dict[float, list[float]]:
    """Round trips at each interval through a fresh tunnel of `implementation` with itself."""
    if implementation == "floor":
        with floor_tunnel() as (ns, address):
            return {i: throughput.round_trips(ns, address, count, i) for i in INTERVALS}
    with throughput.tunnel((implementation, implementation)) as (a, b):
        return {i: throughput.round_trips(a.namespace, b.address, count, i) for i in INTERVALS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=50, help="pings per interval and round")
    parser.add_argument("--relay", nargs=3, metavar=("IFNAME", "LOCAL", "PEER"), help="internal")
    parser.add_argument(
        "--also",
        default="",
        help="more of throughput.py's implementations, comma-separated (e.g. wgpy-writers-off)",
    )
    args = parser.parse_args(argv)
    if args.relay:
        relay(*args.relay)
        return 0
    missing = [t for t in ("ip", "wg", "wireguard-go", "ping") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        print(f"needs root and {', '.join(missing) or 'nothing else'}", file=sys.stderr)
        return 2

    implementations = IMPLEMENTATIONS + tuple(n for n in args.also.split(",") if n)
    unknown = [
        n for n in implementations[len(IMPLEMENTATIONS) :] if n not in throughput.IMPLEMENTATIONS
    ]
    if unknown:
        raise SystemExit(f"unknown implementations {unknown}: see throughput.IMPLEMENTATIONS")
    samples = {name: {interval: [] for interval in INTERVALS} for name in implementations}
    for number in range(1, args.rounds + 1):
        for name in throughput.rotated(implementations, number - 1):
            started = time.monotonic()
            for interval, times in measure(name, args.count).items():
                samples[name][interval] += times
            print(f"round {number} {name} ({time.monotonic() - started:.0f}s)", flush=True)

    baseline = samples["wireguard-go"]
    print(f"{'median rtt, ms':18}" + "".join(f"{f'every {i * 1e3:g} ms':>22}" for i in INTERVALS))
    for name in implementations:
        cells = []
        for interval in INTERVALS:
            median = statistics.median(samples[name][interval])
            ratio = median / statistics.median(baseline[interval])
            cells.append(f"{median:.3f} ({ratio:.2f}x)".rjust(22))
        print(f"{name:18}" + "".join(cells))
    print("ratios are to wireguard-go's; each figure is the median of every ping of the rounds")
    print_hops(args.count * args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
