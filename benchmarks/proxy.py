"""`wgpy proxy`'s figures: throughput through its relay, connection setup, memory per connection;
and `wgpy run`'s beside root TUN mode.

    python benchmarks/proxy.py                 # every stack and wgpy run, about fifteen minutes
    python benchmarks/proxy.py --stack userspace --json proxy.json

Each stack in its lab (wgpy/lab/proxy.py): `host` runs the proxy beside the services on this
machine's own stack, so its figures are the proxy's own cost with no tunnel; `kernel` and
`userspace` run it through a wireguard-go server, on Linux's stack in a namespace of its own with
a TUN and on wgpy.tunnel, as a rootless user would (issues 18 and 17). The figures: iperf3
through a `-L` forward (the relay SOCKS5 CONNECT uses too; iperf3 speaks no SOCKS) with one flow
each way and with 16 flows; a SOCKS5 CONNECT plus the first echoed byte; the proxy's RSS (with
the kernel stack's namespace process) with 1,000 idle SOCKS5 connections open. Beside each
stack's figures, the same flows and connects without the proxy: straight to the services on the
host stack, and through wgpy on a TUN (TUN mode, as root, the server's second peer) for the
others. The machine's state drifts over a run, so the two take turns, in an order that
alternates as benchmarks/throughput.py's pairs do: the flows ROUNDS rounds; the connects
CONNECT_ROUNDS rounds, and within each, BLOCK connects at a time, with both up. Each figure is a
median, and each comparison the median of the rounds' own ratios.

`run`: iperf3 one flow each way as `wgpy run CONFIG -- iperf3` (nobody, no capability) and in
TUN mode in the same namespace to the same server, alternated ROUNDS times; the medians, and
run's share of TUN mode's. The machine is shared: alternate runs to compare. Each flow through
the proxy also gives the share of a core the proxy used, and so its Mbit/s per core: what it
would carry with a core to itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import throughput  # benchmarks/throughput.py, beside this script: its turns

from wgpy import compiled
from wgpy.cli.proxy import raise_open_files_limit
from wgpy.lab.proxy import (
    NOBODY,
    SERVICE_V4,
    TCP_ECHO,
    UNPRIVILEGED,
    ProxyLab,
    proxy_lab,
    rootless_lab,
    socks5_open,
    tun_mode,
)
from wgpy.proxy.relay import close_quietly

SOCKS, FORWARD, IPERF = 1100, 5202, 5201
Row = tuple[str, float, str]  # figure, value, how measured
SECONDS = 5
ROUNDS = 3
# The connects' rounds, each with a fresh proxy and TUN mode: where each process lands among
# 2 CPUs decides each wake-up's cost. On the VM measured, one round's back-to-back ratio ranged
# from 1.2x to 1.65x with the two side by side (0.6x to 3.5x with one after the other, as the
# host's load drifted), and the median of five moved by 0.3x between runs: it takes fifteen.
CONNECT_ROUNDS = 15
STACKS = ("host", "kernel", "userspace", "run")
CONNECTS = 200
WARM_UP = 20  # connects first, not counted: a fresh proxy's, or TUN mode's handshake
# How connects follow each other: back to back, each after the last one's close (so each also
# meets the previous connection's teardown: ~0.4 ms of the proxy's work that TUN mode leaves to
# the kernel on the other core), and idle, 20 ms apart, as pings are spaced in
# benchmarks/throughput.py (each meets cold caches, in TUN mode too).
CONNECT_SPACINGS = {"back to back": 0.0, "idle": 0.02}
# The proxy and TUN mode run side by side (two peers of the server) and take turns this many
# connects at a time (and one before them, not counted), so that both meet the machine's state
# of the same moment; between turns, a pause for the last connection's end and the other side's
# polling. Taking turns costs both sides alike on the rootless stacks (+4% a connect through the
# proxy, +3% through TUN mode, against 200 in a row), but not on the host stack, where a connect
# without the proxy (~0.4 ms) takes 35% longer and one through it 10%: there the back-to-back
# ratio reads ~0.3x lower than with each side's connects in a row.
BLOCK = 20
BLOCK_PAUSE = 0.005
IDLE_CONNECTIONS = 1000


def iperf(
    lab: ProxyLab, host: str, port: int, *options: str, wrapper: tuple[str, ...] = ()
) -> float:
    """Mbit/s received, as iperf3's JSON says, from a client in the proxy's namespace (run by
    `wrapper`, if any). A server still busy with the last test is asked again."""
    for _ in range(3):
        out = lab.client.run(*wrapper, "iperf3", "-c", host, "-p", str(port), "-t", str(SECONDS),
                             "-J", *options, check=False).stdout  # fmt: skip
        result = json.loads(out)
        if "error" not in result:
            return float(result["end"]["sum_received"]["bits_per_second"]) / 1e6
        time.sleep(1)
    raise RuntimeError(f"iperf3 {' '.join(options)} to {host}:{port}: {result['error']}")


WGPY = (sys.executable, "-m", "wgpy.cli.wgpy")
FLOWS = (("one flow, up", ()), ("one flow, down", ("-R",)), ("16 flows, up", ("-P", "16")))


def flow_rows(lab: ProxyLab, stack: str) -> list[Row]:
    """Each of FLOWS through the proxy's -L forward and without the proxy, taking turns for
    ROUNDS rounds as the connects do (one flow's Mbit/s moved by a quarter between runs minutes
    apart); the medians, the proxy's share of a core and the median of the rounds' ratios; and
    the memory figures, of the last round's proxy after its flows."""
    label = direct_label(stack)
    rates: dict[tuple[bool, str], list[float]] = {}
    shares: dict[str, list[float]] = {}
    rss: tuple[float, float] = (0.0, 0.0)
    for number in range(ROUNDS):
        for direct in throughput.rotated((False, True), number):
            if direct:
                with without_proxy(lab, stack):
                    for name, options in FLOWS:
                        rate = iperf(lab, SERVICE_V4, IPERF, *options)
                        rates.setdefault((True, name), []).append(rate)
                continue
            proxy = lab.start_proxy("--socks5", str(SOCKS),
                                    "-L", f"tcp:{FORWARD}:{SERVICE_V4}:{IPERF}")  # fmt: skip
            for name, options in FLOWS:
                started, cpu = time.monotonic(), cpu_seconds(proxy.pid)
                rate = iperf(lab, "127.0.0.1", FORWARD, *options)
                rates.setdefault((False, name), []).append(rate)
                shares.setdefault(name, []).append(
                    (cpu_seconds(proxy.pid) - cpu) / (time.monotonic() - started)
                )
            if number == ROUNDS - 1:
                with lab.client.entered():
                    rss = asyncio.run(idle_rss(proxy.pid))
            lab.client.stop(proxy)
    how = f"median of {ROUNDS} alternated"
    rows: list[Row] = []
    for name, options in FLOWS:
        proxied, straight = rates[(False, name)], rates[(True, name)]
        rate, share = statistics.median(proxied), statistics.median(shares[name])
        command = " ".join(("iperf3", *options))
        rows += [
            (f"{stack}: {name} (Mbit/s)", rate, f"{command} through -L, {how}"),
            (f"{stack}: {name}, proxy CPU (% of a core)", share * 100,
             f"{rate / share:,.0f} Mbit/s per core"),
            (f"{label}: {name} (Mbit/s)", statistics.median(straight), f"{command}, {how}"),
            ratio_row(f"{stack}: {name} against {label} (x)", proxied, straight),
        ]  # fmt: skip
    before, with_idle = rss
    return [
        *rows,
        (f"{stack}: RSS idle proxy (MB)", before, "after its flows"),
        (f"{stack}: RSS with {IDLE_CONNECTIONS:,} idle connections (MB)", with_idle,
         f"{(with_idle - before) * 1024 / IDLE_CONNECTIONS:.1f} KB per connection"),
    ]  # fmt: skip


def ratio_row(figure: str, proxied: list[float], straight: list[float]) -> Row:
    """`figure`: the median of the rounds' ratios, each round's proxied figure to its straight
    one, all of them listed."""
    ratios = [a / b for a, b in zip(proxied, straight, strict=True)]
    return (figure, statistics.median(ratios),
            "median of the rounds' ratios: " + ", ".join(f"{r:.2f}" for r in ratios))  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of `pid` so far (proc(5): fields 14 and 15 of stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def connect_times(direct: bool, spacing: float, count: int) -> list[float]:
    """Milliseconds each of `count` connects and one echoed byte took: through a SOCKS5
    CONNECT, or `direct` to the echo service; `spacing` seconds between one's close and the
    next."""

    async def once() -> None:
        if direct:
            reader, writer = await asyncio.open_connection(SERVICE_V4, TCP_ECHO)
        else:
            reader, writer, _ = await socks5_open(("127.0.0.1", SOCKS), SERVICE_V4, TCP_ECHO)
        writer.write(b"x")
        await reader.readexactly(1)
        await close_quietly(writer)

    times = []
    for _ in range(count):
        await asyncio.sleep(spacing)
        started = time.perf_counter()
        await once()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def connect_time(direct: bool, spacing: float, count: int) -> float:
    """The median of `connect_times`."""
    return statistics.median(await connect_times(direct, spacing, count))


async def idle_rss(pid: int) -> tuple[float, float]:
    """The proxy's RSS in MB before and with IDLE_CONNECTIONS open SOCKS5 connections."""
    before = _rss_mb(pid)
    opened = []
    for _ in range(IDLE_CONNECTIONS):
        opened.append(await socks5_open(("127.0.0.1", SOCKS), SERVICE_V4, TCP_ECHO))
    await asyncio.sleep(1)
    with_idle = _rss_mb(pid)
    for _, writer, _ in opened:
        await close_quietly(writer)
    return before, with_idle


def _rss_mb(pid: int) -> float:
    """The RSS of `pid` and its children (the kernel stack's namespace process)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(_own_rss_mb(process) for process in [pid, *map(int, children)])


def _own_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def measure(stack: str) -> list[Row]:
    if stack == "run":
        return measure_run()
    raise_open_files_limit()  # this process holds the 1,000 idle connections' client ends
    with proxy_lab() if stack == "host" else rootless_lab(stack) as lab:
        lab.ns.popen("iperf3", "-s", "-B", SERVICE_V4, "-p", str(IPERF),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.5)  # iperf3's server
        return flow_rows(lab, stack) + connect_rows(lab, stack)


def direct_label(stack: str) -> str:
    return "no proxy" if stack == "host" else f"TUN mode beside {stack}"


def without_proxy(lab: ProxyLab, stack: str) -> contextlib.AbstractContextManager[object]:
    """The way to the services with no proxy: the host's own stack, or TUN mode (as root, a
    peer of the server's beside the proxy)."""
    return contextlib.nullcontext() if stack == "host" else tun_mode(lab)


def connect_rows(lab: ProxyLab, stack: str) -> list[Row]:
    """Issue 17's figure at each of CONNECT_SPACINGS: connects through a SOCKS5 CONNECT and
    without the proxy, both ways up together and taking turns BLOCK connects at a time, for
    CONNECT_ROUNDS rounds, each with a fresh proxy and a fresh TUN mode; each side's median of
    the rounds' medians, the proxy's CPU per connect (steadier than the time on a shared
    machine) and the median of the rounds' ratios (the target: within 1.5x of TUN mode)."""
    label = direct_label(stack)
    medians: dict[tuple[bool, str], list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for number in range(CONNECT_ROUNDS):
        proxy = lab.start_proxy("--socks5", str(SOCKS))
        with without_proxy(lab, stack), lab.client.entered():
            figures = asyncio.run(connect_medians(proxy.pid, number))
        lab.client.stop(proxy)
        for spacing, (proxied, straight, used) in figures.items():
            medians.setdefault((False, spacing), []).append(proxied)
            medians.setdefault((True, spacing), []).append(straight)
            cpu.setdefault(spacing, []).append(used)
    how = f"median of {CONNECT_ROUNDS} rounds' medians of {CONNECTS}"
    rows: list[Row] = []
    for spacing in CONNECT_SPACINGS:
        proxied, straight = medians[(False, spacing)], medians[(True, spacing)]
        rows += [
            (f"{stack}: SOCKS5 connect + echo, {spacing} (ms)", statistics.median(proxied),
             f"{how}; proxy CPU {statistics.median(cpu[spacing]):,.0f} us each"),
            (f"{label}: connect + echo, {spacing} (ms)", statistics.median(straight), how),
            ratio_row(f"{stack}: SOCKS5 connect against {label}, {spacing} (x)", proxied,
                      straight),
        ]  # fmt: skip
    return rows


async def connect_medians(proxy: int, turn: int) -> dict[str, tuple[float, float, float]]:
    """At each of CONNECT_SPACINGS, in the namespace entered, after WARM_UP connects each way
    not counted (they meet a fresh process, or a handshake): the median connect in ms through
    the `proxy` (its pid) and without it, the two taking turns BLOCK connects at a time (the
    first rotated by `turn`); and the microseconds of CPU the proxy spent per connect."""
    for direct in (False, True):
        await connect_times(direct, 0.0, WARM_UP)
    turns = CONNECTS // BLOCK
    figures = {}
    for spacing, seconds in CONNECT_SPACINGS.items():
        times: dict[bool, list[float]] = {False: [], True: []}
        used = 0  # ns
        for _ in range(turns):
            for direct in throughput.rotated((False, True), turn):
                await asyncio.sleep(BLOCK_PAUSE)
                started = cpu_nanoseconds(proxy)
                # (The turn's first connect follows the pause, not another: left out.)
                times[direct] += (await connect_times(direct, seconds, BLOCK + 1))[1:]
                if not direct:
                    used += cpu_nanoseconds(proxy) - started
        proxied, straight = statistics.median(times[False]), statistics.median(times[True])
        figures[spacing] = proxied, straight, used / (turns * (BLOCK + 1)) / 1000
    return figures


def cpu_nanoseconds(pid: int) -> int:
    """The time `pid`'s main thread has run (its schedstat's first field, in ns): clock ticks
    (cpu_seconds) are too coarse for a connect's ~1 ms."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def measure_run() -> list[Row]:
    """`wgpy run -- iperf3` as nobody and TUN mode as root, one flow each way, alternated."""
    with rootless_lab("kernel") as lab:
        lab.ns.popen("iperf3", "-s", "-B", SERVICE_V4, "-p", str(IPERF),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        runtime = lab.files / "runtime"
        runtime.mkdir()
        os.chown(runtime, NOBODY, NOBODY)
        run = ("env", f"XDG_RUNTIME_DIR={runtime}", *UNPRIVILEGED, *WGPY, "run", str(lab.config),
               "--")  # fmt: skip
        figures: dict[str, list[float]] = {}
        time.sleep(0.5)  # iperf3's server
        for _ in range(ROUNDS):
            with tun_mode(lab):
                for direction, options in (("up", ()), ("down", ("-R",))):
                    figures.setdefault(f"tun {direction}", []).append(
                        iperf(lab, SERVICE_V4, IPERF, *options)
                    )
            for direction, options in (("up", ()), ("down", ("-R",))):
                figures.setdefault(f"run {direction}", []).append(
                    iperf(lab, SERVICE_V4, IPERF, *options, wrapper=run)
                )
    rows = []
    how = f"iperf3 one flow, median of {ROUNDS} alternated"
    for direction in ("up", "down"):
        tun = statistics.median(figures[f"tun {direction}"])
        run_figure = statistics.median(figures[f"run {direction}"])
        rows += [
            (f"TUN mode: one flow, {direction} (Mbit/s)", tun, how),
            (f"wgpy run: one flow, {direction} (Mbit/s)", run_figure,
             f"{how}; {run_figure / tun:.2f}x TUN mode"),
        ]  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", choices=(*STACKS, "all"), default="all")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    stacks = STACKS if args.stack == "all" else (args.stack,)
    # What the figures depend on most: the proxies inherit this environment, WGPY_PURE with it.
    print(f"wgpy proxy's user-space stack: {compiled.stack_path()}", flush=True)
    rows = [row for stack in stacks for row in measure(stack)]
    print("| figure | value | how |\n|---|---|---|")
    for name, value, how in rows:
        print(f"| {name} | {value:,.{2 if name.endswith(('(ms)', '(x)')) else 1}f} | {how} |")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("figure", "value", "how"), row, strict=True))
                                         for row in rows], indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
