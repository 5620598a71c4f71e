"""`wgpy proxy`'s figures: throughput through its relay, connection setup, memory per connection.

    python benchmarks/proxy.py                 # both stacks, about two minutes
    python benchmarks/proxy.py --stack userspace --json proxy.json

Each stack in its lab (wgpy/lab/proxy.py): `kernel` runs the proxy beside the services on this
machine's own stack, so its figures are the proxy's own cost with no tunnel; `userspace` runs it
on wgpy.tunnel through a wireguard-go server, as a rootless user would (issue 17's targets). The
figures: iperf3 through a `-L` forward (the relay SOCKS5 CONNECT uses too; iperf3 speaks no
SOCKS) with one flow each way and with 16 flows; a SOCKS5 CONNECT plus the first echoed byte
(and, on the kernel stack, a direct connect to the same echo service beside it); the proxy's
RSS with 1,000 idle SOCKS5 connections open. The machine is shared: alternate runs to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from wgpy.cli.proxy import raise_open_files_limit
from wgpy.lab.proxy import SERVICE_V4, TCP_ECHO, ProxyLab, proxy_lab, rootless_lab, socks5_open
from wgpy.proxy.relay import close_quietly

SOCKS, FORWARD, IPERF = 1100, 5202, 5201
SECONDS = 5
CONNECTS = 200
IDLE_CONNECTIONS = 1000


def iperf(lab: ProxyLab, *options: str) -> float:
    """Mbit/s received, as iperf3's JSON says."""
    out = lab.client.run("iperf3", "-c", "127.0.0.1", "-p", str(FORWARD), "-t", str(SECONDS), "-J",
                     *options).stdout  # fmt: skip
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e6


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
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def measure(stack: str) -> list[tuple[str, float, str]]:
    raise_open_files_limit()  # this process holds the 1,000 idle connections' client ends
    with proxy_lab() if stack == "kernel" else rootless_lab() as lab:
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
            if stack == "kernel":
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", choices=("kernel", "userspace", "both"), default="both")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    stacks = ("kernel", "userspace") if args.stack == "both" else (args.stack,)
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
