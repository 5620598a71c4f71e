"""Servers with many peers: wgpy against Debian's wireguard-go, in the same run.

    python benchmarks/scale.py                      # 1,000, 10,000 and 100,000 peers: ~2 minutes
    python benchmarks/scale.py --peers 1000,10000   # without the largest: ~1.5 minutes

Needs root, iproute2, wg(8), ping and wireguard-go (scripts/install-deps installs them). Each
implementation and size gets fresh network namespaces and a fresh daemon (wgpy/lab/netns.py), the
implementations taking turns.

The configuration: N peers, each with an endpoint, a persistent keepalive of 25 s and two allowed
IPs, an IPv4 /32 and an IPv6 /128. The interface is up and has no private key, so that neither
implementation starts N handshakes with made-up endpoints: these figures are the configuration's
cost alone. (A daemon that has a key handshakes; that is measured on its own, below.)
wireguard-go takes at most 65,536 peers (its MaxPeers): it refuses 100,000.

  setconf s        `wg setconf` of the whole configuration into the empty interface
  dump s           `wg show dump`, the median of 3
  syncconf s       `wg syncconf` of the configuration with 1% of the peers changed (a new
                   endpoint and IPv4 allowed IP), the median of 3, back and forth; wg sends every
                   peer of the file, changed or not
  rss/peer KiB     the resident memory the configuration added, over N: VmRSS once the daemon is
                   idle after setconf, less VmRSS before it
  peak rss MB      VmHWM at the end

And per implementation:

  handshakes/s     completed handshakes a second (responses received) on a responder holding
                   10,000 peers, and on one holding only the 1,000 that initiate; the median of 3
                   runs each, the two taking turns. The initiations come from another process,
                   made beforehand by wgpy's sans-IO Device (1,000 keys, 8 each, with growing
                   TAI64N timestamps), sent from 64 source ports, 32 in flight. Not a 1-peer
                   responder: a responder takes one initiation per peer every 20 ms at most (the
                   flood rule), which makes a 1-peer responder's rate 50 a second. wgpy's "under
                   load" rule (cookies once 128 handshakes come within a second) is moved out of
                   the way with WGPY_UNDER_LOAD_THRESHOLD; wireguard-go's (a handshake queue 1/8
                   full) does not trip with 32 in flight.
  pause ms         the longest gap between the replies to a ping every 1 ms through the tunnel,
                   less the 1 ms, while `wg addconf` adds 10,000 and 60,000 peers (an endpoint
                   and two allowed IPs each, no keepalive) to the live interface, and while
                   `wg show dump` lists them; the other end of the tunnel is wireguard-go

Every figure is also given as wgpy's ratio to wireguard-go's, then wgpy's against the issue's
targets; all of it is written as JSON (--json, benchmarks/scale.json by default).
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import itertools
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import throughput  # benchmarks/throughput.py, beside this script: the daemons' command lines

from wgpy.core.device import Device, datagrams_of
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import generate_private_key, public_key, to_base64
from wgpy.lab.netns import (
    WG_PORT,
    Namespace,
    ip_up,
    namespace,
    unique_ifname,
    veth_pair,
    wait_until,
)

IMPLEMENTATIONS = ("wgpy", "wireguard-go")
SIZES = (1_000, 10_000, 100_000)
WG_TIMEOUT = 600.0  # for one wg command; wgpy.lab.netns's 30 s is short for 100,000 peers
CHANGED_EVERY = 100  # 1% of the peers change in a syncconf
REPEATS = 3  # dumps, syncconfs, handshake runs
# The handshake figure.
RESPONDER_PEERS = 10_000
INITIATORS = 1_000
ROUNDS = 8
SOURCE_PORTS = 64
IN_FLIGHT = 32
WALL = 1_700_000_000.0
# The pause figure: a size each side of nothing, and the most wireguard-go takes.
PAUSE_SIZES = (10_000, 60_000)
PING_INTERVAL = 0.001
TUNNEL = ("198.19.0.1", "198.19.0.2")

Figures = dict[str, float]


class Refused(Exception):
    """The daemon hung up on a set (wg dies of SIGPIPE): wireguard-go past its MaxPeers."""


# -- configurations ----------------------------------------------------------------------------


def peer_keys(count: int) -> list[str]:
    """Public keys as wg(8) reads them; any 32 bytes serve a daemon without a private key."""
    return [base64.b64encode(os.urandom(32)).decode() for _ in range(count)]


def peer_section(key: str, index: int, *, changed: bool = False, keepalive: bool = True) -> str:
    ipv4 = ipaddress.IPv4Address((10 << 24) + index + (1 << 23 if changed else 0))
    ipv6 = ipaddress.IPv6Address((0xFD00 << 112) + index)
    endpoint = f"198.18.{index >> 8 & 255}.{index & 255}:{WG_PORT + changed}"
    return (
        f"[Peer]\nPublicKey = {key}\nEndpoint = {endpoint}\n"
        + ("PersistentKeepalive = 25\n" if keepalive else "")
        + f"AllowedIPs = {ipv4}/32, {ipv6}/128\n"
    )


def configuration(keys: Sequence[str], changed: AbstractSet[int] = frozenset()) -> str:
    sections = (peer_section(key, n, changed=n in changed) for n, key in enumerate(keys))
    return f"[Interface]\nListenPort = {WG_PORT}\n" + "".join(sections)


def link(private_key: bytes, peer: bytes, endpoint: str, allowed_ip: str) -> str:
    """An interface with a key and one peer."""
    return (
        f"[Interface]\nPrivateKey = {to_base64(private_key)}\nListenPort = {WG_PORT}\n"
        f"[Peer]\nPublicKey = {to_base64(peer)}\nEndpoint = {endpoint}\nAllowedIPs = {allowed_ip}\n"
    )


# -- daemons -----------------------------------------------------------------------------------


@contextmanager
def daemon(
    ns: Namespace, implementation: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """`implementation` serving a new interface in `ns`; yields its name and pid."""
    ifname = unique_ifname("scale")
    process = throughput.start_daemon(ns, implementation, ifname, env)
    try:
        yield ifname, process.pid
    finally:
        ns.stop(process)


def wg(ns: Namespace, *args: str, text: str | None = None) -> float:
    """Run wg(8) in `ns` (the configuration, if any, on stdin); return its wall time."""
    command = ["ip", "netns", "exec", ns.name, "wg", *args]
    if text is not None:
        command.append("/dev/stdin")
    started = time.perf_counter()
    result = subprocess.run(
        command, input=text, capture_output=True, text=True, timeout=WG_TIMEOUT, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode == -signal.SIGPIPE:
        raise Refused(f"wg {args[0]}: the daemon hung up")
    if result.returncode != 0:
        raise RuntimeError(f"wg {' '.join(args)} failed: {result.stderr.strip()}")
    return elapsed


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, timeout: float = 120.0) -> None:
    """Until the process spends under 5% of a CPU over a quarter second (its timers settled)."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_seconds(pid)
        if now - before < 0.0125:
            return
        before = now


# -- the configuration's costs -----------------------------------------------------------------


def measure_size(implementation: str, count: int) -> Figures | None:
    """The figures for `count` peers; None if the implementation refuses that many."""
    keys = peer_keys(count)
    original = configuration(keys)
    changed = configuration(keys, set(range(0, count, CHANGED_EVERY)))
    with namespace("scale") as ns, daemon(ns, implementation) as (ifname, pid):
        ns.run("ip", "link", "set", ifname, "up")
        wait_idle(pid)
        before = proc_kib(pid, "VmRSS")
        try:
            setconf = wg(ns, "setconf", ifname, text=original)
        except Refused:
            return None
        wait_idle(pid)
        added = proc_kib(pid, "VmRSS") - before
        dumps = [wg(ns, "show", ifname, "dump") for _ in range(REPEATS)]
        syncs = [
            wg(ns, "syncconf", ifname, text=(changed, original)[n % 2]) for n in range(REPEATS)
        ]
        return {
            "setconf_s": setconf,
            "dump_s": statistics.median(dumps),
            "syncconf_s": statistics.median(syncs),
            "rss_per_peer_kib": added / count,
            "peak_rss_mb": proc_kib(pid, "VmHWM") / 1024,
        }


# -- handshakes --------------------------------------------------------------------------------


def initiations(private_keys: Sequence[bytes], responder: bytes, rounds: int) -> list[bytes]:
    """Handshake initiations to `responder`, a round after another, one per key in each, made by
    wgpy's sans-IO Device with a timestamp a second later each round (a responder takes only
    growing ones). An outbound packet that finds no session makes a device initiate."""
    packet = bytes([0x45, 0, 0, 20]) + bytes(12) + bytes([10, 0, 0, 1])  # IPv4, to 10.0.0.1
    devices = []
    for key in private_keys:
        device = Device(os.urandom, key)
        peer = device.add_peer(responder, endpoint=Endpoint("192.0.2.1", WG_PORT))
        device.allowed_ips.insert(ipaddress.ip_network("0.0.0.0/0"), peer)
        devices.append(device)
    messages = []
    for round_ in range(rounds):
        now, wall = 10.0 * (round_ + 1), WALL + round_
        for device in devices:
            messages += datagrams_of(device.handle_tun_packet(packet, now, wall))
    return messages


def initiate(messages_file: str, address: str, port: int) -> Figures:
    """The initiating process: send the initiations in `messages_file` (148 bytes each) to the
    responder, IN_FLIGHT at a time from SOURCE_PORTS ports, and count the responses."""
    data = Path(messages_file).read_bytes()
    messages = [data[start : start + 148] for start in range(0, len(data), 148)]
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOURCE_PORTS)]
    poller = select.poll()
    for sock in sockets:
        sock.setblocking(False)
        poller.register(sock, select.POLLIN)
    by_fd = {sock.fileno(): sock for sock in sockets}
    sent = received = lost = in_flight = 0
    started = last = time.perf_counter()
    while sent < len(messages) or in_flight:
        while in_flight < IN_FLIGHT and sent < len(messages):
            sockets[sent % SOURCE_PORTS].sendto(messages[sent], (address, port))
            sent += 1
            in_flight += 1
        ready = poller.poll(200)
        if not ready:  # What is still in flight was dropped.
            lost += in_flight
            in_flight = 0
        for fd, _ in ready:
            while True:
                try:
                    reply = by_fd[fd].recv(256)
                except BlockingIOError:
                    break
                if reply[:1] == b"\x02":  # a handshake response
                    received += 1
                    in_flight = max(0, in_flight - 1)
                    last = time.perf_counter()
    return {"handshakes": received, "lost": lost, "seconds": last - started}


def measure_handshakes(
    implementation: str, messages_file: str, initiators: list[str], responder: bytes, peers: int
) -> Figures:
    """Handshakes a second on a responder holding `peers` peers, the initiators among them."""
    keys = initiators + peer_keys(peers - len(initiators))
    interface = f"[Interface]\nPrivateKey = {to_base64(responder)}\nListenPort = {WG_PORT}\n"
    text = interface + "".join(
        f"[Peer]\nPublicKey = {key}\nAllowedIPs = {ipaddress.IPv4Address((10 << 24) + n)}/32\n"
        for n, key in enumerate(keys)
    )
    env = {"WGPY_UNDER_LOAD_THRESHOLD": str(10**9)}
    with veth_pair() as (ns_r, ns_i), daemon(ns_r, implementation, env) as (ifname, pid):
        wg(ns_r, "setconf", ifname, text=text)
        ns_r.run("ip", "link", "set", ifname, "up")
        wait_idle(pid)
        result = subprocess.run(
            ["ip", "netns", "exec", ns_i.name, sys.executable, __file__, "--initiate",
             messages_file, ns_r.ipv4, str(WG_PORT)],
            capture_output=True, text=True, timeout=WG_TIMEOUT, check=True,
            env={**os.environ, "PYTHONPATH": str(throughput.ROOT)},
        )  # fmt: skip
    figures: Figures = json.loads(result.stdout)
    figures["per_second"] = figures["handshakes"] / figures["seconds"]
    return figures


def handshake_rates(implementation: str) -> dict[int, Figures]:
    """Per responder size, the run of median rate among REPEATS, the sizes taking turns."""
    private_keys = [generate_private_key(os.urandom) for _ in range(INITIATORS)]
    responder = generate_private_key(os.urandom)
    initiators = [to_base64(public_key(key)) for key in private_keys]
    runs: dict[int, list[Figures]] = {RESPONDER_PEERS: [], INITIATORS: []}
    with tempfile.NamedTemporaryFile(suffix=".initiations") as messages:
        messages.write(b"".join(initiations(private_keys, public_key(responder), ROUNDS)))
        messages.flush()
        for _ in range(REPEATS):
            for peers, done in runs.items():
                done.append(
                    measure_handshakes(implementation, messages.name, initiators, responder, peers)
                )
    return {
        peers: sorted(done, key=lambda figures: figures["per_second"])[len(done) // 2]
        for peers, done in runs.items()
    }


# -- pauses ------------------------------------------------------------------------------------


def measure_pauses(implementation: str, count: int) -> Figures:
    """The longest gaps in a 1 ms ping through a tunnel whose far end is `implementation`, while
    wg addconf adds `count` peers to it and while wg show dump lists them."""
    keys = [generate_private_key(os.urandom) for _ in range(2)]
    more = "".join(
        peer_section(key, index, keepalive=False)
        for index, key in enumerate(peer_keys(count), start=2)
    )
    with veth_pair() as (ns_a, ns_b), tempfile.TemporaryFile("w+") as pings:
        with daemon(ns_a, implementation) as (if_a, _), daemon(ns_b, "wireguard-go") as (if_b, _):
            for index, (ns, other, ifname) in enumerate(((ns_a, ns_b, if_a), (ns_b, ns_a, if_b))):
                peer = public_key(keys[1 - index])
                endpoint, allowed_ip = f"{other.ipv4}:{WG_PORT}", f"{TUNNEL[1 - index]}/32"
                wg(ns, "setconf", ifname, text=link(keys[index], peer, endpoint, allowed_ip))
                ip_up(ns, ifname, f"{TUNNEL[index]}/24")
            if not wait_until(lambda: throughput.ping_ok(ns_b, TUNNEL[0]), 10.0):
                raise RuntimeError(f"no ping through {implementation}")
            ping = ns_b.popen("ping", "-D", "-n", "-i", str(PING_INTERVAL), TUNNEL[0], stdout=pings)
            time.sleep(1.0)
            started = time.time()
            wg(ns_a, "addconf", if_a, text=more)
            set_done = time.time()
            wg(ns_a, "show", if_a, "dump")
            get_done = time.time()
            time.sleep(1.0)
            ping.send_signal(signal.SIGINT)
            ping.wait(10)
        pings.seek(0)
        replies = [float(line[1:].split("]")[0]) for line in pings if line.startswith("[")]
    return {
        "set_ms": longest_gap(replies, started, set_done) * 1e3,
        "get_ms": longest_gap(replies, set_done, get_done) * 1e3,
        "set_s": set_done - started,
        "get_s": get_done - set_done,
    }


def longest_gap(replies: list[float], start: float, end: float) -> float:
    """The longest wait for a reply beyond the ping interval, over the gaps that overlap the
    time from `start` to `end`."""
    gaps = [b - a for a, b in itertools.pairwise(replies) if b > start and a < end]
    return max(0.0, max(gaps, default=math.nan) - PING_INTERVAL)


# -- the report --------------------------------------------------------------------------------

ROWS = (  # (key, label, unit)
    ("setconf_s", "setconf", "s"),
    ("dump_s", "dump", "s"),
    ("syncconf_s", "syncconf 1%", "s"),
    ("rss_per_peer_kib", "rss/peer", "KiB"),
    ("peak_rss_mb", "peak rss", "MB"),
)
TARGETS = (  # (figure, size, limit, what): the issue's
    ("setconf_s", 10_000, 1.0, "10,000 peers set in <= 1 s"),
    ("setconf_s", 100_000, 10.0, "100,000 peers set in <= 10 s"),
    ("rss_per_peer_kib", 10_000, 4.0, "<= 4 KiB of RSS per peer (10,000 peers)"),
    ("syncconf_s", 10_000, 0.2, "a 1% syncconf of 10,000 peers in <= 0.2 s"),
)


@dataclass
class Results:
    # size -> implementation -> figures (None: refused)
    sizes: dict[int, dict[str, Figures | None]] = field(default_factory=dict)
    # implementation -> peers held -> figures
    handshakes: dict[str, dict[int, Figures]] = field(default_factory=dict)
    # implementation -> peers added -> figures
    pauses: dict[str, dict[int, Figures]] = field(default_factory=dict)

    def table(self) -> str:
        lines = [
            f"{'':14}" + "".join(f"{f'{size:,} peers':>34}" for size in self.sizes),
            f"{'':14}" + f"{'wgpy':>12}{'wireguard-go':>14}{'ratio':>8}" * len(self.sizes),
        ]
        for key, label, unit in ROWS:
            cells = [self._cells(figures, key, unit) for figures in self.sizes.values()]
            lines.append(f"{label:14}" + "".join(cells))
        for implementation in IMPLEMENTATIONS:
            big, small = self.handshake_rates(implementation)
            pauses = ", ".join(
                f"{figures['set_ms']:.0f} ms adding {count:,}, {figures['get_ms']:.0f} ms listing"
                for count, figures in self.pauses[implementation].items()
            )
            lines.append(
                f"{implementation:14}handshakes/s {big:.0f} holding {RESPONDER_PEERS:,} peers, "
                f"{small:.0f} holding {INITIATORS:,} ({big / small:.2f}x); longest pauses "
                f"{pauses}"
            )
        return "\n".join(lines)

    @staticmethod
    def _cells(figures: dict[str, Figures | None], key: str, unit: str) -> str:
        ours, theirs = figures["wgpy"], figures["wireguard-go"]
        mine = f"{ours[key]:>9.3g} {unit:<3}" if ours else f"{'refused':>13}"
        if theirs is None:
            return f"{mine}{'refused':>14}{'':8}"
        ratio = f"{ours[key] / theirs[key]:>7.2f}x" if ours else f"{'':8}"
        return f"{mine}{theirs[key]:>10.3g} {unit:<3}{ratio}"

    def handshake_rates(self, implementation: str) -> tuple[float, float]:
        """Handshakes a second holding RESPONDER_PEERS peers, and holding INITIATORS."""
        rates = self.handshakes[implementation]
        return rates[RESPONDER_PEERS]["per_second"], rates[INITIATORS]["per_second"]

    def verdicts(self) -> list[str]:
        """wgpy against the issue's targets."""
        lines = []
        for key, size, limit, what in TARGETS:
            ours = self.sizes.get(size, {}).get("wgpy")
            if ours is not None:
                lines.append(verdict(ours[key] <= limit, f"{what}: {ours[key]:.3g}"))
        if 10_000 in self.sizes:
            ours, theirs = (self.sizes[10_000][name] for name in IMPLEMENTATIONS)
            if ours is not None and theirs is not None:
                mine, go = ours["dump_s"], theirs["dump_s"]
                what = f"10,000 peers dumped in <= wireguard-go's time: {mine:.3g} s, {go:.3g} s"
                lines.append(verdict(mine <= go, what))
        big, small = self.handshake_rates("wgpy")
        what = f"handshakes holding 10,000 peers within 10% of 1,000: {big:.0f}/s, {small:.0f}/s"
        lines.append(verdict(big >= 0.9 * small, what))
        for count, figures in self.pauses["wgpy"].items():
            worst = max(figures["set_ms"], figures["get_ms"])
            what = f"no data path pause over 50 ms adding or listing {count:,}: {worst:.0f} ms"
            lines.append(verdict(worst <= 50, what))
        return lines


def verdict(met: bool, what: str) -> str:
    return f"{'met' if met else 'MISSED':7}{what}"


def run(sizes: Sequence[int]) -> Results:
    results = Results()
    for size in sizes:
        for implementation in IMPLEMENTATIONS:
            started = time.monotonic()
            figures = measure_size(implementation, size)
            results.sizes.setdefault(size, {})[implementation] = figures
            shown = ", ".join(f"{k}={v:.3g}" for k, v in (figures or {"refused": 1}).items())
            took = time.monotonic() - started
            print(f"{size:,} peers, {implementation} ({took:.0f}s): {shown}", flush=True)
    for implementation in IMPLEMENTATIONS:
        results.handshakes[implementation] = handshake_rates(implementation)
        shown = ", ".join(
            f"{peers:,} peers {figures['per_second']:.0f}/s ({figures['lost']:.0f} lost)"
            for peers, figures in results.handshakes[implementation].items()
        )
        print(f"handshakes, {implementation}: {shown}", flush=True)
    for implementation in IMPLEMENTATIONS:
        for count in PAUSE_SIZES:
            figures = measure_pauses(implementation, count)
            results.pauses.setdefault(implementation, {})[count] = figures
            shown = ", ".join(f"{k}={v:.3g}" for k, v in figures.items())
            print(f"pauses, {implementation}, adding {count:,}: {shown}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", default=",".join(map(str, SIZES)), help="comma-separated")
    parser.add_argument("--json", type=Path, default=throughput.ROOT / "benchmarks" / "scale.json")
    parser.add_argument("--initiate", nargs=3, metavar=("FILE", "ADDRESS", "PORT"), help="internal")
    args = parser.parse_args(argv)
    if args.initiate:
        file, address, port = args.initiate
        print(json.dumps(initiate(file, address, int(port))))
        return 0
    missing = [t for t in ("ip", "wg", "wireguard-go", "ping") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        print(f"needs root and {', '.join(missing) or 'nothing else'}", file=sys.stderr)
        return 2

    # The interpreter moves wgpy's figures (see scripts/install-deps): say which one ran it.
    interpreter = f"Python {platform.python_version()} ({os.path.realpath(sys.executable)})"
    print(f"wgpy runs on {interpreter}", flush=True)
    results = run([int(size) for size in args.peers.split(",")])
    print(results.table())
    print("\n".join(results.verdicts()))
    args.json.write_text(
        json.dumps({"interpreter": interpreter, **asdict(results)}, indent=2) + "\n"
    )
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
