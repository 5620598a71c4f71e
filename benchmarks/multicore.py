"""One wgpy daemon serving two peers, two TCP flows at once: how its threads use the cores, with
the data path's writer threads for the TUN, for the TUN and the sockets, and none, and what a
16-core machine would make of it.

    python benchmarks/multicore.py                       # 3 rounds of 10-second runs
    python benchmarks/multicore.py --rounds 2 --seconds 5

Three fresh network namespaces in every round and setting: a hub joined by a veth pair to each
of two peers. The hub runs the wgpy daemon under test with each setting of WGPY_WRITERS in
turn (tun, tun,udp, none: the order is rotated every round); each peer runs a wgpy daemon with
its writers off, the same in every run. Two iperf3 flows run at once, one to each peer:
  out   from the hub to the peers: the hub's daemon reads its TUN, seals and sends
  in    the peers to the hub (iperf3 -R): the hub's daemon receives, opens and writes its TUN

For each, the hub's daemon is measured over the flows' time:
  Gbit/s          both flows' received throughput, added up
  CPU per thread  utime + stime of /proc/PID/task/TID/stat, in CPU-seconds per second (1.0 is
                  a whole core), named by the name the kernel knows the thread by (wgpy-data,
                  wgpy-tun-writer, wgpy-udp-writer: wgpy/io/thread_name.py; main is the
                  interface's thread: timers and configuration)
  GIL per thread  the seconds per second in which the thread holds the GIL: py-spy record
                  --gil --nonblocking at RATE samples a second, a thread's samples over the rate
                  (both settings are sampled alike, so py-spy's own CPU falls on both; on a
                  loaded machine a holder waiting for a CPU still holds the GIL, so a thread's
                  GIL time may pass its CPU time: the share is capped at 1)
Each figure is the median over the rounds.

From these it estimates what one daemon would do on 16 cores, with the peers, iperf3 and the
kernel's share of the flows on other cores (assumed: work scales linearly with the bytes, and a
GIL handed over between more threads costs nothing more), two bounds:
  threads as built  each of the daemon's threads at most one core: the busiest reaches 1.0
  GIL               the GIL is one: its holders together reach 1.0 CPU-second per second
and Amdahl's law for a daemon that split the busiest thread's work over 16 workers, with the
share of it that holds the GIL serial: speedup 1 / (share + (1 - share) / 16) on that thread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import throughput  # benchmarks/throughput.py, beside this script: its daemons and iperf3 runs

from wgpy.lab.netns import (
    STARTUP_TIMEOUT,
    WG_PORT,
    Namespace,
    WgKeys,
    configure,
    ip_up,
    link,
    namespace,
    unique_ifname,
    wait_operational,
    wait_until,
    wg_genkey,
)

ROOT = Path(__file__).resolve().parent.parent
# py-spy comes with wgpy[dev]: on the PATH, or beside the interpreter running this.
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))

SETTINGS = {
    "writers tun": "wgpy-writers-tun",
    "writers both": "wgpy-writers-both",
    "writers off": "wgpy-writers-off",
}
PEER = "wgpy-writers-off"
DIRECTIONS = {"out": (), "in": ("-R",)}
# Underlay: the hub's veth to peer n is 198.18.n.1, the peer's end 198.18.n.2 (RFC 2544 space).
HUB_TUNNEL = "198.19.0.1"
PEER_TUNNELS = ("198.19.0.2", "198.19.0.3")
RATE = 200  # py-spy samples a second
CORES = 16


@dataclass
class Figures:
    """One run's (or the rounds' medians): Gbit/s, the machine's busy share, and per thread
    CPU-seconds and GIL-held seconds per second."""

    gbps: float
    machine: float
    cpu: dict[str, float]
    gil: dict[str, float]


@dataclass
class Hub:
    namespace: Namespace
    pid: int
    peers: list[Namespace]


# -- the topology ----------------------------------------------------------------------------


@contextmanager
def hub_and_peers(implementation: str) -> Iterator[Hub]:
    """A hub's daemon (`implementation`) and two peers' (PEER), the handshakes done."""
    with namespace("w19hub") as hub, namespace("w19p1") as p1, namespace("w19p2") as p2:
        peers = [p1, p2]
        for number, peer in enumerate(peers, 1):
            link(hub, f"veth{number}", peer, "veth0")
            ip_up(hub, f"veth{number}", f"198.18.{number}.1/24")
            ip_up(peer, "veth0", f"198.18.{number}.2/24")
        wait_operational([(hub, "veth1"), (hub, "veth2"), (p1, "veth0"), (p2, "veth0")])
        keys = [wg_genkey() for _ in range(3)]
        ifname = unique_ifname("w19hub")
        process = throughput.start_daemon(hub, implementation, ifname)
        configure(hub, ifname, hub_config(keys), f"{HUB_TUNNEL}/24")
        for number, peer in enumerate(peers, 1):
            throughput.start_peer(
                peer, PEER, keys[number].private, keys[0].public, f"198.18.{number}.1:{WG_PORT}",
                PEER_TUNNELS[number - 1], HUB_TUNNEL,
            )  # fmt: skip
        if not wait_until(
            lambda: all(throughput.ping_ok(hub, a) for a in PEER_TUNNELS), STARTUP_TIMEOUT
        ):
            raise RuntimeError(f"no handshake with {PEER_TUNNELS}")
        yield Hub(hub, process.pid, peers)


def hub_config(keys: list[WgKeys]) -> str:
    lines = ["[Interface]", f"PrivateKey = {keys[0].private}", f"ListenPort = {WG_PORT}"]
    for number in (1, 2):
        lines += ["", "[Peer]", f"PublicKey = {keys[number].public}"]
        lines += [f"AllowedIPs = {PEER_TUNNELS[number - 1]}/32"]
        lines += [f"Endpoint = 198.18.{number}.2:{WG_PORT}"]
    return "\n".join(lines) + "\n"


# -- the measurements ------------------------------------------------------------------------


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU-seconds so far of each of `pid`'s threads, by the kernel's name for it (the main
    thread as main), like-named threads added up."""
    seconds: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # a thread that just ended
            continue
        name = "main" if task.name == str(pid) else stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rpartition(")")[2].split()
        seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return seconds


def gil_seconds(raw: str, pid: int) -> dict[str, float]:
    """py-spy's raw --gil --threads output as GIL-held seconds per thread name: a sample's line
    starts `thread (TID): NAME;` (without a name, by TID), the main thread's TID is `pid`."""
    names = {
        task.name: _kernel_name(pid, task.name) for task in Path(f"/proc/{pid}/task").iterdir()
    }
    held: dict[str, float] = {}
    for line in raw.splitlines():
        match = re.match(r"thread \((\d+)\)", line)
        if match is None:
            continue
        tid = match.group(1)
        name = "main" if tid == str(pid) else names.get(tid, tid)
        held[name] = held.get(name, 0.0) + int(line.rsplit(" ", 1)[1]) / RATE
    return held


def _kernel_name(pid: int, tid: str) -> str:
    try:
        return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    except FileNotFoundError:
        return tid


def machine_busy() -> float:
    return throughput.machine_cpu_seconds()


def listening(ns: Namespace) -> bool:
    return throughput.port_listening(ns, throughput.IPERF_PORT)


def measure(hub: Hub, direction: str, seconds: int) -> Figures:
    """Two iperf3 flows at once, hub to peers (out) or back (in), the hub's daemon watched."""
    servers = [
        p.popen("iperf3", "-s", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in hub.peers
    ]
    if not wait_until(lambda: all(listening(p) for p in hub.peers), STARTUP_TIMEOUT):
        raise RuntimeError("iperf3 server did not start")
    with tempfile.NamedTemporaryFile(prefix="w19-gil-", suffix=".raw") as raw:
        spy = subprocess.Popen(
            [PY_SPY, "record", "--gil", "--nonblocking", "--threads", "-r", str(RATE),
             "-d", str(seconds), "-f", "raw", "-o", raw.name, "--pid", str(hub.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cpu_before, machine_before, started = thread_cpu(hub.pid), machine_busy(), time.monotonic()
        options = ("-t", str(seconds), "-J", *DIRECTIONS[direction])
        clients = [
            hub.namespace.popen("iperf3", "-c", address, *options, stdout=subprocess.PIPE)
            for address in PEER_TUNNELS
        ]
        reports = [json.loads(c.communicate()[0]) for c in clients]
        wall = time.monotonic() - started
        cpu_after, machine_after = thread_cpu(hub.pid), machine_busy()
        spy.wait()
        gil = gil_seconds(Path(raw.name).read_text(), hub.pid)
    for server in servers:
        server.terminate()
        server.wait()
    bits = sum(r["end"]["sum_received"]["bits_per_second"] for r in reports)
    spied = min(wall, seconds)  # py-spy's duration
    return Figures(
        gbps=bits / 1e9,
        machine=(machine_after - machine_before) / wall / (os.cpu_count() or 1),
        cpu={n: (cpu_after[n] - cpu_before.get(n, 0.0)) / wall for n in cpu_after},
        gil={n: s / spied for n, s in gil.items()},
    )


# -- the estimate ----------------------------------------------------------------------------


def estimate(figures: Figures) -> dict[str, float]:
    """What one daemon would move on CORES cores, from a run's figures (see the docstring)."""
    gbps, cpu, gil = figures.gbps, figures.cpu, figures.gil
    busiest = max(cpu, key=cpu.__getitem__)
    share = min(1.0, gil.get(busiest, 0.0) / cpu[busiest]) if cpu[busiest] else 1.0
    gil_total = sum(gil.values())
    threads_bound = gbps / cpu[busiest] if cpu[busiest] else float("inf")
    gil_bound = gbps / gil_total if gil_total else float("inf")
    amdahl = 1 / (share + (1 - share) / CORES)
    return {
        "busiest_cpu": cpu[busiest],
        "gil_share_of_busiest": share,
        "gil_total": gil_total,
        "threads_bound_gbps": threads_bound,
        "gil_bound_gbps": gil_bound,
        "as_built_gbps": min(threads_bound, gil_bound),
        "amdahl_speedup": amdahl,
        "workers_gbps": min(threads_bound * amdahl, gil_bound),
    }


def medians(runs: list[Figures]) -> Figures:
    """Each figure's median over `runs` (a thread missing from a run counts 0 there)."""

    def per_thread(of: list[dict[str, float]]) -> dict[str, float]:
        names = sorted({n for r in of for n in r})
        return {n: statistics.median(r.get(n, 0.0) for r in of) for n in names}

    return Figures(
        gbps=statistics.median(r.gbps for r in runs),
        machine=statistics.median(r.machine for r in runs),
        cpu=per_thread([r.cpu for r in runs]),
        gil=per_thread([r.gil for r in runs]),
    )


def report(summary: dict[str, dict[str, Figures]]) -> str:
    lines = []
    for setting, directions in summary.items():
        for direction, figures in directions.items():
            cpu, gil = figures.cpu, figures.gil
            threads = ", ".join(
                f"{n} {cpu[n]:.2f} (GIL {gil.get(n, 0.0):.2f})"
                for n in sorted(cpu, key=cpu.__getitem__, reverse=True)
                if cpu[n] >= 0.01
            )
            e = estimate(figures)
            indent = " " * 18
            lines += [
                f"{setting:12} {direction:4} {figures.gbps:.2f} Gbit/s; hub CPU s/s "
                f"{sum(cpu.values()):.2f}: {threads}; machine busy {figures.machine:.0%}",
                f"{indent}busiest thread {e['busiest_cpu']:.2f} core, "
                f"{e['gil_share_of_busiest']:.0%} of it holding the GIL; "
                f"the GIL held {e['gil_total']:.2f} s/s in all",
                f"{indent}{CORES} cores: as built <= {e['as_built_gbps']:.2f} Gbit/s (threads "
                f"{e['threads_bound_gbps']:.2f}, GIL {e['gil_bound_gbps']:.2f}); "
                f"with {CORES} workers (Amdahl x{e['amdahl_speedup']:.2f}) "
                f"<= {e['workers_gbps']:.2f} Gbit/s",
            ]
    lines.append(
        f"assumed for {CORES} cores: the peers, iperf3 and the kernel's share on other cores; "
        "work linear in bytes; GIL handovers free"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="length of each iperf3 run")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "multicore.json")
    args = parser.parse_args(argv)
    missing = [t for t in ("ip", "wg", "iperf3", "ping", PY_SPY) if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        print(f"needs root and {', '.join(missing) or 'nothing else'}", file=sys.stderr)
        return 2
    runs: dict[str, dict[str, list[Figures]]] = {s: {d: [] for d in DIRECTIONS} for s in SETTINGS}
    for number in range(args.rounds):
        for setting in throughput.rotated(tuple(SETTINGS), number):
            with hub_and_peers(SETTINGS[setting]) as hub:
                for direction in DIRECTIONS:
                    figures = measure(hub, direction, args.seconds)
                    runs[setting][direction].append(figures)
                    print(f"round {number + 1} {setting} {direction}: {figures}", flush=True)
    summary = {s: {d: medians(r) for d, r in by.items()} for s, by in runs.items()}
    print(f"load before the last round's end: {os.getloadavg()}; {os.cpu_count()} CPUs")
    print(report(summary))
    args.json.write_text(
        json.dumps(
            {
                "seconds": args.seconds,
                "runs": {
                    s: {d: [asdict(r) for r in rs] for d, rs in by.items()}
                    for s, by in runs.items()
                },
                "medians": {s: {d: asdict(f) for d, f in by.items()} for s, by in summary.items()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
