"""`wgpy proxy`'s figures: throughput through its relay, connection setup, memory per connection;
and `wgpy run`'s beside root TUN mode.

    python benchmarks/proxy.py                 # every stack and wgpy run, about four minutes
    python benchmarks/proxy.py --stack userspace --json proxy.json

Each stack in its lab (wgpy/lab/proxy.py): `host` runs the proxy beside the services on this
machine's own stack, so its figures are the proxy's own cost with no tunnel; `kernel` and
`userspace` run it through a wireguard-go server, on Linux's stack in a namespace of its own with
a TUN and on wgpy.tunnel, as a rootless user would (issues 17 and 18). The figures: iperf3
through a `-L` forward (the relay SOCKS5 CONNECT uses too; iperf3 speaks no SOCKS) with one flow
each way and with 16 flows; a SOCKS5 CONNECT plus the first echoed byte (and, on the host stack,
a direct connect to the same echo service beside it); the proxy's RSS (with the kernel stack's
namespace process) with 1,000 idle SOCKS5 connections open.

`run`: iperf3 one flow each way as `wgpy run CONFIG -- iperf3` (nobody, no capability) and
through wgpy as root in TUN mode in the same namespace to the same server, alternated ROUNDS
times; the medians, and run's share of TUN mode's. The machine is shared: alternate runs to
compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from wgpy import config as wgconfig
from wgpy.cli.proxy import raise_open_files_limit
from wgpy.lab.netns import configured_daemon, unique_ifname
from wgpy.lab.proxy import (
    CLIENT_TUNNEL,
    NOBODY,
    SERVICE_V4,
    TCP_ECHO,
    UNPRIVILEGED,
    ProxyLab,
    proxy_lab,
    rootless_lab,
    socks5_open,
)
from wgpy.proxy.relay import close_quietly

SOCKS, FORWARD, IPERF = 1100, 5202, 5201
SECONDS = 5
ROUNDS = 3
STACKS = ("host", "kernel", "userspace", "run")
WGPY = (sys.executable, "-m", "wgpy.cli.wgpy")
CONNECTS = 200
IDLE_CONNECTIONS = 1000


def iperf(lab: ProxyLab, *options: str) -> float:
    """Mbit/s received, as iperf3's JSON says."""
    out = lab.client.run("iperf3", "-c", "127.0.0.1", "-p", str(FORWARD), "-t", str(SECONDS), "-J",
                     *options).stdout  # fmt: skip
    return received_mbits(out)


def received_mbits(iperf_json: str) -> float:
    return float(json.loads(iperf_json)["end"]["sum_received"]["bits_per_second"]) / 1e6


async def connect_time(direct: bool) -> float:
    """Median milliseconds of a connect and one echoed byte: through a SOCKS5 CONNECT, or
    `direct` to the echo service."""

    async def once() -> None:
        if direct:
            reader, writer = await asyncio.open_connection(SERVICE_V4, TCP_ECHO)
        else:
            reader, writer, _ = await socks5_open(("127.0.0.1", SOCKS), SERVICE_V4, TCP_ECHO)
        writer.write(b"x")
        await reader.readexactly(1)
        await close_quietly(writer)

    times = []
    for _ in range(CONNECTS):
        started = time.perf_counter()
        await once()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


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


def measure(stack: str) -> list[tuple[str, float, str]]:
    if stack == "run":
        return measure_run()
    raise_open_files_limit()  # this process holds the 1,000 idle connections' client ends
    with proxy_lab() if stack == "host" else rootless_lab(stack) as lab:
        lab.ns.popen("iperf3", "-s", "-B", SERVICE_V4, "-p", str(IPERF),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        proxy = lab.start_proxy("--socks5", str(SOCKS),
                                "-L", f"tcp:{FORWARD}:{SERVICE_V4}:{IPERF}")  # fmt: skip
        time.sleep(0.5)  # iperf3's server
        rows = [
            (f"{stack}: one flow, up (Mbit/s)", iperf(lab), "iperf3 through -L"),
            (f"{stack}: one flow, down (Mbit/s)", iperf(lab, "-R"), "iperf3 -R through -L"),
            (f"{stack}: 16 flows, up (Mbit/s)", iperf(lab, "-P", "16"), "iperf3 -P 16 through -L"),
        ]
        with lab.client.entered():
            rows.append(
                (
                    f"{stack}: SOCKS5 connect + echo (ms)",
                    asyncio.run(connect_time(direct=False)),
                    f"median of {CONNECTS}",
                )
            )
            if stack == "host":
                rows.append(
                    (
                        f"{stack}: direct connect + echo (ms)",
                        asyncio.run(connect_time(direct=True)),
                        f"median of {CONNECTS}",
                    )
                )
            before, with_idle = asyncio.run(idle_rss(proxy.pid))
        rows += [
            (f"{stack}: RSS idle proxy (MB)", before, ""),
            (f"{stack}: RSS with {IDLE_CONNECTIONS:,} idle connections (MB)", with_idle,
             f"{(with_idle - before) * 1024 / IDLE_CONNECTIONS:.1f} KB per connection"),
        ]  # fmt: skip
        lab.client.stop(proxy)
    return rows


def measure_run() -> list[tuple[str, float, str]]:
    """`wgpy run -- iperf3` and root TUN mode, one flow each way, alternated."""
    with rootless_lab("kernel") as lab:
        lab.ns.popen("iperf3", "-s", "-B", SERVICE_V4, "-p", str(IPERF),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        runtime = lab.files / "runtime"
        runtime.mkdir()
        os.chown(runtime, NOBODY, NOBODY)
        config = wgconfig.load(lab.config)
        ifname = unique_ifname("wgb")
        figures: dict[str, list[float]] = {}
        time.sleep(0.5)  # iperf3's server
        for _ in range(ROUNDS):
            with configured_daemon(lab.client, WGPY, ifname, wgconfig.strip(config),
                                   f"{CLIENT_TUNNEL}/32"):  # fmt: skip
                lab.client.run("ip", "route", "add", f"{SERVICE_V4}/32", "dev", ifname)
                for direction in ("up", "down"):
                    figures.setdefault(f"tun {direction}", []).append(
                        received_mbits(lab.client.run(*_iperf_to_service(direction)).stdout)
                    )
            for direction in ("up", "down"):
                command = [*UNPRIVILEGED, *WGPY, "run", str(lab.config), "--",
                           *_iperf_to_service(direction)]  # fmt: skip
                out = subprocess.run(
                    ["ip", "netns", "exec", lab.client.name, *command], capture_output=True,
                    text=True, check=True, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
                ).stdout  # fmt: skip
                figures.setdefault(f"run {direction}", []).append(received_mbits(out))
    rows = []
    for direction in ("up", "down"):
        tun = statistics.median(figures[f"tun {direction}"])
        run = statistics.median(figures[f"run {direction}"])
        how = f"iperf3 one flow, median of {ROUNDS} alternated"
        rows += [
            (f"root TUN mode: one flow, {direction} (Mbit/s)", tun, how),
            (f"wgpy run: one flow, {direction} (Mbit/s)", run, f"{how}; {run / tun:.2f}x TUN mode"),
        ]
    return rows


def _iperf_to_service(direction: str) -> list[str]:
    reverse = ["-R"] if direction == "down" else []
    return ["iperf3", "-c", SERVICE_V4, "-p", str(IPERF), "-t", str(SECONDS), "-J", *reverse]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", choices=(*STACKS, "all"), default="all")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    stacks = STACKS if args.stack == "all" else (args.stack,)
    rows = [row for stack in stacks for row in measure(stack)]
    print("| figure | value | how |\n|---|---|---|")
    for name, value, how in rows:
        print(f"| {name} | {value:,.1f} | {how} |")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("figure", "value", "how"), row, strict=True))
                                         for row in rows], indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
