"""Tunnel throughput, latency and cost: wgpy against Debian's wireguard-go, over a veth pair.

    python benchmarks/throughput.py            # 3 rounds of 10-second runs: about 12 minutes
    python benchmarks/throughput.py --quick    # 1 round of 3-second runs: about 1.5 minutes

Needs root, iproute2, wg(8), wireguard-go and iperf3 (scripts/install-deps installs them). Two
fresh network namespaces are joined by a veth pair (wgpy/lab/netns.py); a WireGuard peer runs in
each, side A and side B. Every pair of implementations gets fresh namespaces and fresh processes
in every round, and the pairs take turns within a round, in an order rotated by one every round,
so that a drift of the machine within a round falls on each of them in turn.

The implementations: wgpy with its offloads (TUN TSO, UDP GSO and GRO) and its data path as
built (WGPY_PURE=1 in the environment measures the pure-Python one); wgpy with the offloads off
(WGPY_OFFLOADS=0, one packet per system call each way); and Debian's wireguard-go, labelled "no
offloads": version 0.0.20220316 predates wireguard-go's TUN TSO/GRO and UDP GSO/GRO. The two
baselines separate what wgpy gains by its offloads from what it gains by its implementation.

The figures, each the median over the rounds:
  tcp A->B, tcp B->A   iperf3, one TCP flow (A's peer encrypts in A->B)
  tcp x4               iperf3, four TCP flows A->B
  bidir                iperf3 --bidir, one flow each way, both added up
  udp pps              iperf3 UDP, 64-byte payloads, unlimited rate: packets per second received
  ping A->B, B->A      median round trip through an idle tunnel, pings 20 ms apart from A's
                       side to B's and then back: 50 each way on each of 3 fresh tunnels per
                       pair and round, the pairs taking turns within seconds (a round trip
                       varies more between tunnels, and between minutes, than between
                       implementations; one tunnel a round was too few to tell). Between two
                       implementations the ways differ: one answers, the other waits
  rss                  peak resident memory (VmHWM) of side A's implementation under this load
                       (of wgpy where it takes part; the larger of two like processes)
  cpu s/GB             CPU seconds both tunnel processes spent per GB delivered in the TCP runs
  machine cpu s/GB     the same from /proc/stat, the whole machine's busy time: offloads move
                       work into the kernel (segmentation, checksums), out of the daemons' own
                       counters; on a shared machine it counts everyone else's work too
Every figure is also given as a ratio to each baseline's: the median of the ratios of each round
(a pair and its baseline measured minutes apart), not a ratio of medians. Everything, with the
figures of each round, is written as JSON (--json, benchmarks/throughput.json by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from wgpy.client import socket_path
from wgpy.io.uapi_server import is_live
from wgpy.lab.netns import (
    STARTUP_TIMEOUT,
    WG_PORT,
    Namespace,
    configure,
    one_peer_config,
    unique_ifname,
    veth_pair,
    wait_until,
    wg_genkey,
)

ROOT = Path(__file__).resolve().parent.parent


# Tunnel addresses of side A and side B, inside 198.18.0.0/15 (RFC 2544, for benchmarks).
TUNNEL = ("198.19.0.1", "198.19.0.2")
TUNNEL_PREFIX = 24
IPERF_PORT = 5201
PING_INTERVAL = 0.02
PING_COUNT = 50  # per tunnel
PING_TUNNELS = 3  # per pair and round
UDP_PAYLOAD = 64

WGPY = (sys.executable, "-m", "wgpy.cli.wgpy", "-f")
# Each implementation's command line and what it adds to the environment.
IMPLEMENTATIONS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "wgpy": (WGPY, {}),
    "wgpy-offloads-off": (WGPY, {"WGPY_OFFLOADS": "0"}),
    "wgpy-pure": (WGPY, {"WGPY_PURE": "1"}),  # not in PAIRS: for --pairs
    # Likewise: the data path's writer threads (wgpy/io/writers.py) for the TUN, both, none.
    "wgpy-writers-tun": (WGPY, {"WGPY_WRITERS": "tun"}),
    "wgpy-writers-both": (WGPY, {"WGPY_WRITERS": "tun,udp"}),
    "wgpy-writers-off": (WGPY, {"WGPY_WRITERS": "none"}),
    "wireguard-go": (("wireguard-go", "-f"), {}),
}
PAIRS = (
    ("wgpy", "wgpy"),
    ("wgpy", "wireguard-go"),
    ("wgpy-offloads-off", "wgpy-offloads-off"),
    ("wireguard-go", "wireguard-go"),
)
# The ratios' denominators: Debian's wireguard-go, and wgpy without its offloads.
BASELINES = (("wireguard-go", "wireguard-go"), ("wgpy-offloads-off", "wgpy-offloads-off"))


Pair = tuple[str, str]
T = TypeVar("T")
Figures = dict[str, dict[str, float]]  # per pair, per metric


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool


METRICS = (
    Metric("tcp_ab", "tcp A->B", "Gbit/s", True),
    Metric("tcp_ba", "tcp B->A", "Gbit/s", True),
    Metric("tcp_x4", "tcp x4", "Gbit/s", True),
    Metric("bidir", "bidir", "Gbit/s", True),
    Metric("udp_pps", "udp pps", "kpps", True),
    Metric("ping_ms", "ping A->B", "ms", False),
    Metric("ping_ba_ms", "ping B->A", "ms", False),
    Metric("rss_mb", "rss", "MB", False),
    Metric("cpu_s_per_gb", "cpu s/GB", "s", False),
    Metric("machine_cpu_s_per_gb", "machine cpu s/GB", "s", False),
)
TCP_METRICS = ("tcp_ab", "tcp_ba", "tcp_x4", "bidir")


@dataclass
class Side:
    implementation: str
    namespace: Namespace
    process: subprocess.Popen[bytes]
    address: str

    def cpu_seconds(self) -> float:
        """User plus system time of the tunnel process so far (fields 14 and 15 of stat)."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) / 1024 if match else float("nan")


def machine_cpu_seconds() -> float:
    """Busy time of every CPU of the machine so far: /proc/stat's user, nice, system, irq,
    softirq and steal (guest time is within user)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    busy = user + nice + system + irq + softirq + steal
    return busy / os.sysconf("SC_CLK_TCK")


def describe(implementation: str) -> str:
    """What the table and the JSON say an implementation is."""
    if implementation == "wireguard-go":
        version = subprocess.run(
            ["wireguard-go", "--version"], capture_output=True, text=True, check=False
        ).stdout.split("\n", 1)[0]
        return f"{version or 'wireguard-go'}: no offloads (predates TUN TSO/GRO, UDP GSO/GRO)"
    from wgpy.io import accel  # the daemons inherit this environment, WGPY_PURE with it

    if implementation == "wgpy-offloads-off":
        return f"wgpy, offloads off, data path {accel.path()}"
    if implementation == "wgpy-pure":
        return "wgpy, offloads on, data path pure Python (WGPY_PURE=1)"
    if implementation.startswith("wgpy-writers-"):
        writers = IMPLEMENTATIONS[implementation][1]["WGPY_WRITERS"]
        return f"wgpy, offloads on, WGPY_WRITERS={writers}, data path {accel.path()}"
    return f"wgpy, offloads on, data path {accel.path()}"


# -- the tunnel ------------------------------------------------------------------------------


@contextmanager
def tunnel(implementations: tuple[str, str]) -> Iterator[tuple[Side, Side]]:
    """Two namespaces on a veth pair, a WireGuard peer in each, the handshake done."""
    with veth_pair() as (ns_a, ns_b):
        keys = wg_genkey(), wg_genkey()
        sides = []
        for index, (ns, implementation) in enumerate(
            zip((ns_a, ns_b), implementations, strict=True)
        ):
            other = (ns_b, ns_a)[index]
            sides.append(
                start_peer(ns, implementation, keys[index].private, keys[1 - index].public,
                           f"{other.ipv4}:{WG_PORT}", TUNNEL[index], TUNNEL[1 - index])
            )  # fmt: skip
        a, b = sides
        if not wait_until(lambda: ping_ok(a.namespace, b.address), STARTUP_TIMEOUT):
            raise RuntimeError(f"no handshake between {implementations}")
        yield a, b


def start_peer(
    ns: Namespace,
    implementation: str,
    private_key: str,
    peer_public_key: str,
    peer_endpoint: str,
    address: str,
    peer_address: str,
) -> Side:
    ifname = unique_ifname("bench")
    process = start_daemon(ns, implementation, ifname)
    config = one_peer_config(private_key, peer_public_key, f"{peer_address}/32", peer_endpoint)
    configure(ns, ifname, config, f"{address}/{TUNNEL_PREFIX}")
    return Side(implementation, ns, process, address)


def start_daemon(
    ns: Namespace, implementation: str, ifname: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`implementation` serving `ifname` in `ns`, once its configuration socket is there; `env`
    adds to the environment."""
    command, own_env = IMPLEMENTATIONS[implementation]
    # From the repository, so that `python -m wgpy` runs this copy of wgpy.
    process = ns.popen(
        *command, ifname, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "error", **own_env, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if not wait_until(lambda: is_live(socket_path(ifname)), STARTUP_TIMEOUT):
        ns.stop(process)
        raise RuntimeError(f"{implementation} did not start on {ifname}")
    return process


def ping_ok(ns: Namespace, address: str) -> bool:
    return ns.run("ping", "-c", "1", "-W", "1", address, check=False).returncode == 0


# -- the measurements ------------------------------------------------------------------------


def iperf(client: Side, server: Side, seconds: float, *options: str) -> dict[str, object]:
    """iperf3's report; a run that fails (on a loaded machine its control connection is
    sometimes reset) is tried once more, saying so."""
    for attempt in range(2):
        result = client.namespace.run(
            "iperf3", "-c", server.address, "-t", str(seconds), "-J", *options, check=False
        )
        report: dict[str, object] = json.loads(result.stdout)
        if "error" not in report:
            break
        if attempt == 0:
            print(f"iperf3 {' '.join(options)}: {report['error']}; once more", file=sys.stderr)
    else:
        raise RuntimeError(f"iperf3 {' '.join(options)}: {report['error']}")
    return report


def tcp_bits_per_second(report: dict[str, object], *sums: str) -> tuple[float, float]:
    """(bits per second, bytes) received, added up over the named sums of the report."""
    end = report["end"]
    assert isinstance(end, dict)
    bits = sum(end[name]["bits_per_second"] for name in sums)
    octets = sum(end[name]["bytes"] for name in sums)
    return bits, octets


def udp_packets_per_second(report: dict[str, object]) -> float:
    end = report["end"]
    assert isinstance(end, dict)
    total = end["sum"]
    return (total["packets"] - total["lost_packets"]) / total["seconds"]


def round_trips(
    ns: Namespace, address: str, count: int, interval: float = PING_INTERVAL
) -> list[float]:
    """Round trips in milliseconds of `count` pings `interval` seconds apart."""
    output = ns.run("ping", "-c", str(count), "-i", str(interval), address, check=False).stdout
    return [float(t) for t in re.findall(r"time=([\d.]+) ms", output)]


def rotated(items: tuple[T, ...], by: int) -> tuple[T, ...]:
    """`items` taking turns from the `by`th on (modulo their number)."""
    by %= len(items)
    return items[by:] + items[:by]


def idle_round_trips(pairs: tuple[Pair, ...]) -> dict[str, dict[str, float]]:
    """Per pair, the median round trip each way (ping_ms from A, ping_ba_ms from B) through
    PING_TUNNELS fresh idle tunnels, the pairs taking turns, in an order rotated by one every
    tunnel."""
    trips: dict[str, dict[str, list[float]]] = {
        pair_name(pair): {"ping_ms": [], "ping_ba_ms": []} for pair in pairs
    }
    for turn in range(PING_TUNNELS):
        for pair in rotated(pairs, turn):
            with tunnel(pair) as (a, b):
                ways = trips[pair_name(pair)]
                ways["ping_ms"] += round_trips(a.namespace, b.address, PING_COUNT)
                ways["ping_ba_ms"] += round_trips(b.namespace, a.address, PING_COUNT)
    return {
        name: {way: statistics.median(t) if t else float("nan") for way, t in ways.items()}
        for name, ways in trips.items()
    }


def measure(a: Side, b: Side, seconds: float) -> dict[str, float]:
    """One round of every figure but ping's on a tunnel that is up."""
    b_server = b.namespace.popen(
        "iperf3", "-s", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if not wait_until(lambda: port_listening(b.namespace, IPERF_PORT), STARTUP_TIMEOUT):
        raise RuntimeError("iperf3 server did not start")
    figures: dict[str, float] = {}
    runs: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        "tcp_ab": ((), ("sum_received",)),
        "tcp_ba": (("-R",), ("sum_received",)),
        "tcp_x4": (("-P", "4"), ("sum_received",)),
        "bidir": (("--bidir",), ("sum_received", "sum_received_bidir_reverse")),
    }
    cpu_before = a.cpu_seconds() + b.cpu_seconds()
    machine_before = machine_cpu_seconds()
    moved = 0.0
    for key, (options, sums) in runs.items():
        bits, octets = tcp_bits_per_second(iperf(a, b, seconds, *options), *sums)
        figures[key] = bits / 1e9
        moved += octets
    cpu = a.cpu_seconds() + b.cpu_seconds() - cpu_before
    figures["cpu_s_per_gb"] = cpu / (moved / 1e9)
    figures["machine_cpu_s_per_gb"] = (machine_cpu_seconds() - machine_before) / (moved / 1e9)
    udp = iperf(a, b, seconds, "-u", "-b", "0", "-l", str(UDP_PAYLOAD))
    figures["udp_pps"] = udp_packets_per_second(udp) / 1e3
    figures["rss_mb"] = max(s.peak_rss_mb() for s in (a, b) if s.implementation == a.implementation)
    b.namespace.stop(b_server)
    return figures


def port_listening(ns: Namespace, port: int) -> bool:
    return f":{port} " in ns.run("ss", "-Hltn", check=False).stdout


# -- the report ------------------------------------------------------------------------------


def pair_name(pair: Pair) -> str:
    return f"{pair[0]}<->{pair[1]}"


def parse_pair(name: str) -> Pair:
    a, _, b = name.partition("<->")
    if a not in IMPLEMENTATIONS or b not in IMPLEMENTATIONS:
        raise SystemExit(f"unknown pair {name!r}: implementations are {', '.join(IMPLEMENTATIONS)}")
    return a, b


def summarize(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per pair, the median of each figure over the rounds."""
    names = rounds[0].keys()
    return {
        name: {
            metric.key: statistics.median(r[name][metric.key] for r in rounds) for metric in METRICS
        }
        for name in names
    }


def ratios(
    rounds: list[dict[str, dict[str, float]]], baseline: Pair
) -> dict[str, dict[str, float]]:
    """Per pair, each figure's median over the rounds of its ratio to `baseline`'s in the same
    round; nothing when the baseline was not run."""
    base = pair_name(baseline)
    if base not in rounds[0]:
        return {}
    return {
        name: {
            m.key: statistics.median(r[name][m.key] / r[base][m.key] for r in rounds)
            for m in METRICS
            if all(r[base][m.key] for r in rounds)
        }
        for name in rounds[0]
    }


def offloads(pair: Pair) -> str:
    on = [side for side in pair if side.startswith("wgpy") and side != "wgpy-offloads-off"]
    return "both" if len(on) == 2 else "wgpy's" if on else "none"


def table(
    medians: dict[str, dict[str, float]], relative: dict[str, dict[str, dict[str, float]]]
) -> str:
    """The medians, each with its ratios to the baselines run, in the order of BASELINES."""
    names = list(medians)
    width = max(30, *(len(n) + 2 for n in names))
    lines = [f"{'':18}" + "".join(f"{n:>{width}}" for n in names)]
    lines.append(f"{'offloads':18}" + "".join(f"{offloads(parse_pair(n)):>{width}}" for n in names))
    for metric in METRICS:
        cells = []
        for name in names:
            shown = [
                f"{r[name][metric.key]:.2f}x" for r in relative.values() if metric.key in r[name]
            ]
            suffix = f" ({', '.join(shown)})" if shown else ""
            cells.append(f"{medians[name][metric.key]:.3g} {metric.unit}{suffix}".rjust(width))
        lines.append(f"{metric.label:18}" + "".join(cells))
    if relative:
        lines.append(
            f"ratios (medians of each round's) are to {' and to '.join(relative)}; "
            "ping, rss and cpu: lower is better"
        )
    return "\n".join(lines)


def run(
    pairs: tuple[Pair, ...],
    rounds: int,
    seconds: float,
    log: Callable[[str], None],
) -> list[dict[str, dict[str, float]]]:
    results = []
    for number in range(1, rounds + 1):
        started = time.monotonic()
        pings = idle_round_trips(pairs)
        shown = ", ".join(
            f"{name}={ways['ping_ms']:.3g}/{ways['ping_ba_ms']:.3g}" for name, ways in pings.items()
        )
        log(f"round {number} ping_ms A->B/B->A ({time.monotonic() - started:.0f}s): {shown}")
        this_round = {}
        for pair in rotated(pairs, number - 1):
            started = time.monotonic()
            with tunnel(pair) as (a, b):
                figures = {**pings[pair_name(pair)], **measure(a, b, seconds)}
            this_round[pair_name(pair)] = figures
            shown = ", ".join(f"{k}={v:.3g}" for k, v in figures.items())
            log(f"round {number} {pair_name(pair)} ({time.monotonic() - started:.0f}s): {shown}")
        results.append({pair_name(pair): this_round[pair_name(pair)] for pair in pairs})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 3-second runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each iperf3 run")
    parser.add_argument(
        "--pairs",
        default=",".join(pair_name(p) for p in PAIRS),
        help="comma-separated, e.g. wgpy<->wgpy,wgpy-pure<->wgpy-pure,wireguard-go<->wireguard-go",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "throughput.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 3.0
    missing = [t for t in ("ip", "wg", "wireguard-go", "iperf3", "ping") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        print(f"needs root and {', '.join(missing) or 'nothing else'}", file=sys.stderr)
        return 2
    pairs = tuple(parse_pair(name) for name in args.pairs.split(","))

    # The interpreter moves wgpy's figures (see scripts/install-deps): say which one ran it.
    interpreter = f"Python {platform.python_version()} ({os.path.realpath(sys.executable)})"
    print(f"wgpy runs on {interpreter}", flush=True)
    results = run(pairs, args.rounds, args.seconds, lambda line: print(line, flush=True))
    medians = summarize(results)
    relative = {pair_name(b): ratios(results, b) for b in BASELINES}
    relative = {name: figures for name, figures in relative.items() if figures}
    implementations = {name: describe(name) for name in sorted({n for p in pairs for n in p})}
    for name, description in implementations.items():
        print(f"{name}: {description}")
    print(table(medians, relative))
    args.json.write_text(
        json.dumps(
            {
                "interpreter": interpreter,
                "implementations": implementations,
                "offloads": {pair_name(p): offloads(p) for p in pairs},
                "seconds": args.seconds,
                "rounds": results,
                "medians": medians,
                "ratios": relative,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
