"""A ping's four passes through two data paths, counted: the cost of a lone packet (issue 19).

    python benchmarks/lone_pass.py              # hot microseconds a round trip, Python calls
    python benchmarks/lone_pass.py --cold       # microseconds of each pass on cold caches
    python benchmarks/lone_pass.py --callgrind  # CPU instructions of each pass (valgrind)

Two real DataPaths (wgpy/io/datapath.py) with accelerated devices, as a daemon builds them
without writers, joined by UDP sockets on 127.0.0.1 (with IP_PKTINFO, as the daemon's); each
TUN is one end of a SOCK_SEQPACKET pair, read and written as an offloading TUN is (a lone
packet behind a virtio-net header that asks for nothing). One thread drives a round trip: a
ping's request into A's TUN, A's outbound pass, B's inbound pass, the reply into B's TUN, B's
outbound pass, A's inbound pass; poll's wait, which the thread skips, is the only part of a
daemon's pass left out.

At 20 ms spacing each pass meets cold caches. `--cold` times each pass after writing 32 MiB
(what the idle gap does to the caches): ~75-90 us a pass on the 2-core VM measured, against
~7 us hot, so what a pass touches weighs more than what it runs, and the times are noisy on a
shared machine. The instructions are steady: callgrind counts them to a few in 100,000 from run
to run. `--callgrind` runs this script again under valgrind, with collection toggled on around
each pass alone (a client request from a small library built here with cc and valgrind's
headers), and prints each pass's instructions less the toggles' own.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import ipaddress
import os
import pstats
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from wgpy.core.device import Device
from wgpy.core.endpoint import Endpoint
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.keys import generate_private_key, public_key
from wgpy.io import accel, pktinfo
from wgpy.io.datapath import DataPath
from wgpy.io.device_lock import DeviceLock
from wgpy.io.readiness import input_waiting
from wgpy.io.tun_batches import OffloadTun
from wgpy.io.udp_batches import UdpBatches, enable_gro, supports_gso
from wgpy.io.vnet.segment import NO_OFFLOAD

PASSES = ("A out", "B in", "B out", "A in")
ICMP = 1
WARM_UP = 200
TOGGLE_SOURCE = """#include <valgrind/callgrind.h>
void toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
"""


def echo(source: str, destination: str, kind: int) -> bytes:
    """An ICMP echo request (8) or reply (0) of ping's default 84 bytes."""
    return NO_OFFLOAD + ipv4_packet(source, destination, bytes([kind]) + bytes(63), ICMP)


REQUEST = echo("10.0.0.1", "10.0.0.2", 8)
REPLY = echo("10.0.0.2", "10.0.0.1", 0)


class Side:
    """A device and its data path; `kernel` is the TUN's far end, `out` and `into` the passes."""

    def __init__(self, key: bytes) -> None:
        self.device = Device(
            os.urandom, key, batch_cipher=accel.batch_cipher(), lone_cipher=accel.lone_cipher()
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pktinfo.enable(self.sock)
        self.sock.bind(("127.0.0.1", 0))
        self.kernel, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        udp = UdpBatches(gso=supports_gso(self.sock), gro=enable_gro(self.sock))
        path = DataPath(
            "lone", self.device, DeviceLock(), OffloadTun(tun.detach(), udp=True), udp,
            [self.sock], lambda: None, writers=set(),
        )  # fmt: skip
        waiting = input_waiting(self.sock)
        self.out: Callable[[], bool] = path._outbound_batch
        self.into: Callable[[], bool] = lambda: path._inbound_batch(self.sock, waiting)

    def endpoint(self) -> Endpoint:
        host, port = self.sock.getsockname()
        return Endpoint(host, port)


def pair() -> tuple[Side, Side]:
    """A and B, peers of each other, the handshake done and A's first packet delivered."""
    key_a, key_b = generate_private_key(os.urandom), generate_private_key(os.urandom)
    a, b = Side(key_a), Side(key_b)
    peer_b = a.device.add_peer(public_key(key_b), endpoint=b.endpoint())
    peer_a = b.device.add_peer(public_key(key_a), endpoint=a.endpoint())
    a.device.allowed_ips.insert(ipaddress.ip_network("10.0.0.2/32"), peer_b)
    b.device.allowed_ips.insert(ipaddress.ip_network("10.0.0.1/32"), peer_a)
    a.kernel.send(REQUEST)
    a.out()  # the packet staged, an initiation sent
    b.into()  # the response
    a.into()  # the staged packet
    b.into()
    b.kernel.recv(2048)
    return a, b


def round_trips(a: Side, b: Side, count: int) -> None:
    for _ in range(count):
        a.kernel.send(REQUEST)
        a.out()
        b.into()
        assert b.kernel.recv(2048)
        b.kernel.send(REPLY)
        b.out()
        a.into()
        assert a.kernel.recv(2048)


def hot(count: int) -> None:
    a, b = pair()
    round_trips(a, b, WARM_UP)
    samples = []
    for _ in range(7):
        started = time.perf_counter()
        round_trips(a, b, count)
        samples.append((time.perf_counter() - started) / count * 1e6)
    print(f"hot, a round trip: {min(samples):.1f} us best, {sorted(samples)[3]:.1f} median of 7")
    profile = cProfile.Profile()
    profile.enable()
    round_trips(a, b, count)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    calls = sum(entry[1] for entry in stats.values())
    # Less the driver's: round_trips itself and its four sends and receives, assert-free.
    print(f"Python calls a round trip (Python and built-in): {(calls - 1) / count - 4:.0f}")
    assert a.device.drops.total() == b.device.drops.total() == 0


def cold(count: int) -> None:
    a, b = pair()
    round_trips(a, b, WARM_UP)
    source, scratch = bytearray(32 << 20), bytearray(32 << 20)
    clock = time.perf_counter_ns
    passes: list[list[int]] = [[], [], [], []]
    for _ in range(count):
        for index, step in enumerate((a.out, b.into, b.out, a.into)):
            if index == 0:
                a.kernel.send(REQUEST)
            elif index == 2:
                b.kernel.recv(2048)
                b.kernel.send(REPLY)
            scratch[:] = source  # the caches emptied
            started = clock()
            step()
            passes[index].append(clock() - started)
        a.kernel.recv(2048)
    medians = [statistics.median(times) / 1000 for times in passes]
    for name, median in zip(PASSES, medians, strict=True):
        print(f"{name:6s} {median:6.1f} us cold (median of {count})")
    print(f"a round trip {sum(medians):6.1f} us")


def count_under_valgrind(which: str, count: int) -> None:
    """Run under callgrind with collection off: toggle it on around the passes in `which`
    ('0123', or 'e' for the toggles alone)."""
    a, b = pair()
    round_trips(a, b, WARM_UP)
    toggle = ctypes.CDLL(os.environ["LONE_PASS_TOGGLE"]).toggle
    if which == "e":
        for _ in range(count * 4):
            toggle()
            toggle()
        return
    marks = [toggle if str(index) in which else (lambda: None) for index in range(4)]
    a_out, b_in, b_out, a_in = marks
    for _ in range(count):
        a.kernel.send(REQUEST)
        a_out()
        a.out()
        a_out()
        b_in()
        b.into()
        b_in()
        b.kernel.recv(2048)
        b.kernel.send(REPLY)
        b_out()
        b.out()
        b_out()
        a_in()
        a.into()
        a_in()
        a.kernel.recv(2048)


def callgrind(count: int) -> None:
    if not shutil.which("valgrind") or not shutil.which("cc"):
        sys.exit("--callgrind needs valgrind and cc (apt install valgrind gcc)")
    with tempfile.TemporaryDirectory(prefix="lone_pass-") as scratch:
        library = Path(scratch, "toggle.so")
        source = Path(scratch, "toggle.c")
        source.write_text(TOGGLE_SOURCE)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", library, source], check=True)
        env = {**os.environ, "LONE_PASS_TOGGLE": str(library)}
        counts = {}
        for which in ("e", "0", "1", "2", "3"):
            out = Path(scratch, f"callgrind.{which}")
            subprocess.run(
                ["valgrind", "--tool=callgrind", "--collect-atstart=no",
                 f"--callgrind-out-file={out}", sys.executable, __file__,
                 "--under-valgrind", which, "--count", str(count)],
                check=True, capture_output=True, env=env,
            )  # fmt: skip
            found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
            assert found, f"no total in {out}"
            counts[which] = int(found.group(1)) / count
    toggles = counts["e"] / 4
    passes = [counts[str(index)] - toggles for index in range(4)]
    for name, instructions in zip(PASSES, passes, strict=True):
        print(f"{name:6s} {instructions:9,.0f} instructions")
    print(f"a round trip {sum(passes):9,.0f} (less the toggles' {toggles:,.0f} a pass)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cold", action="store_true", help="time each pass on cold caches")
    parser.add_argument("--callgrind", action="store_true", help="count instructions per pass")
    parser.add_argument("--count", type=int, default=None, help="round trips (300; 2000 hot)")
    parser.add_argument("--under-valgrind", metavar="PASSES", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.under_valgrind:
        count_under_valgrind(args.under_valgrind, args.count)
    elif args.cold:
        cold(args.count or 300)
    elif args.callgrind:
        print(f"wgpy from {Path(accel.__file__).parent.parent}, crypto {accel.path()}")
        callgrind(args.count or 300)
    else:
        hot(args.count or 2000)


if __name__ == "__main__":
    main()
