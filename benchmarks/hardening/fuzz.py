"""Fuzzing (issue 8): garbage datagrams, configuration requests and configuration files.

- Datagrams (fuzz_tunnel.py, fuzz_datagrams.py): generated garbage at a running wgpy's port while
  a legitimate peer streams through it, first paced on wgpy's count (its rate is what wgpy
  absorbed), then offered at a fixed rate. Promise: no crash, no traceback in the daemon's debug
  log, the stream intact, and the network-side drops counted in `stats=1` rising by exactly the
  number of garbage datagrams that reached wgpy's socket.
- Configuration requests (fuzz_uapi.py): in process through the server's framing, and over a live
  daemon's socket. Promise: no crash, every reply ends in an errno, and a rejected `set` changes
  nothing `get` shows.
- Proxy requests (fuzz_proxy.py, issue 17): garbage SOCKS5 and HTTP requests in process and at a
  live `wgpy proxy`. Promise: no crash, a protocol error reply or a close for each, the proxy
  serving on, a legitimate connection unharmed.
- Configuration files (fuzz_config.py). Promise: no crash, and every rejection is a ConfigError
  naming the file and a line of it; an accepted file reads back unchanged from `serialize`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from benchmarks.hardening import Figure, fuzz_proxy
from benchmarks.hardening.fuzz_config import ConfigFuzzResult, fuzz_config_files
from benchmarks.hardening.fuzz_tunnel import (
    FLIGHT,
    OFFERED_RATE,
    OfferedLoad,
    TunnelFuzzResult,
    fuzz_tunnel,
)
from benchmarks.hardening.fuzz_uapi import UapiFuzzResult, fuzz_in_process, fuzz_lone_daemon

AREA = "fuzz"
SEED = 8  # issue 8; every run makes the same inputs
# Offered at 50,000/s, under half of what wgpy absorbed paced (80,000-133,000/s), nothing was lost
# in the runs measured: its 7 MiB socket buffer holds a good tenth of a second of it. A wgpy
# slower than the offered rate would lose the difference, far more than this.
OFFERED_LOSS_BOUND = 0.01


@dataclass(frozen=True)
class Sizes:
    datagrams: int  # paced on wgpy's count
    offered: int  # at OFFERED_RATE
    requests_in_process: int
    requests_live: int
    config_files: int
    proxy_in_process: int
    proxy_live: int


FULL = Sizes(datagrams=1_000_000, offered=10 * OFFERED_RATE, requests_in_process=100_000,
             requests_live=10_000, config_files=100_000, proxy_in_process=100_000,
             proxy_live=100_000)  # fmt: skip
SHORT = Sizes(datagrams=20_000, offered=OFFERED_RATE, requests_in_process=10_000,
              requests_live=1_000, config_files=10_000, proxy_in_process=10_000,
              proxy_live=2_000)  # fmt: skip


def run(short: bool) -> list[Figure]:
    sizes = SHORT if short else FULL
    started = time.monotonic()
    tunnel = fuzz_tunnel(sizes.datagrams, sizes.offered, SEED)
    in_process = fuzz_in_process(sizes.requests_in_process, SEED)
    live = fuzz_lone_daemon(sizes.requests_live, SEED)
    files = fuzz_config_files(sizes.config_files, SEED)
    proxy = fuzz_proxy.run(sizes.proxy_in_process, sizes.proxy_live, SEED)
    for finding in [*in_process.crashes, *live.crashes, *files.crashes]:
        print(f"fuzz finding:\n{finding}\n", file=sys.stderr)
    if tunnel.log_faults or not tunnel.daemon_alive:
        print(f"fuzz: the daemon's log ends:\n{tunnel.log_tail}", file=sys.stderr)
    print(f"fuzz: {time.monotonic() - started:.0f} s in all", file=sys.stderr)
    return [
        *datagram_figures(tunnel, sizes.datagrams),
        offered_figure(tunnel.offered, sizes.offered),
        *request_figures(in_process, live, sizes),
        *file_figures(files, sizes.config_files),
        *proxy,
    ]


def datagram_figures(result: TunnelFuzzResult, target: int) -> list[Figure]:
    rate = result.sent / result.seconds if result.seconds else 0.0
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in result.by_reason.items())
    return [
        Figure(
            AREA, "garbage datagrams sent, paced on wgpy's count",
            f"{result.sent:,} ({rate:,.0f}/s absorbed)",
            result.sent >= target and result.arrived == result.sent,
            f"at wgpy's port during a transfer, never more than {FLIGHT:,} ahead of what wgpy "
            "had counted: the rate is what wgpy absorbed, not an offered load; "
            f"{result.arrived:,} arrived (nftables)",
        ),
        Figure(
            AREA, "daemon crashes", str(int(not result.daemon_alive) + result.log_faults),
            result.daemon_alive and not result.log_faults,
            "daemon alive at the end, no traceback or error in its LOG_LEVEL=debug log"
            + (f"; run aborted: {result.aborted}" if result.aborted else ""),
        ),
        Figure(
            AREA, "drops counted / garbage sent", f"{result.counted:,} / {result.sent:,}",
            result.counted_as_sent,
            f"network-side drops in stats=1: {reasons}; socket buffer overflows "
            f"{result.kernel_dropped}; legitimate handshake messages {result.legit_handshakes}; "
            f"TUN-side drops (not counted here) {result.tun_side_drops}",
        ),
        Figure(
            AREA, "transfer through the garbage", f"{result.stream_received / 1e6:,.1f} MB",
            result.stream_intact,
            f"TCP from the {result.legitimate_peer} peer, SHA-256 equal at both ends",
        ),
    ]  # fmt: skip


def offered_figure(offered: OfferedLoad, target: int) -> Figure:
    lost = offered.kernel_dropped
    return Figure(
        AREA, f"garbage offered at {OFFERED_RATE:,}/s",
        f"{offered.sent:,} in {offered.seconds:.1f} s: {lost:,} lost to a full socket buffer "
        f"({lost / max(offered.sent, 1):.2%})",
        offered.sent >= target and offered.arrived == offered.sent
        and offered.counted_as_arrived and lost <= OFFERED_LOSS_BOUND * offered.sent,
        f"sent at a fixed rate whatever wgpy made of it: at most {OFFERED_LOSS_BOUND:.0%} lost, "
        f"and every datagram that reached its socket dropped and counted: {offered.counted:,} "
        f"counted, {offered.arrived:,} arrived (nftables), legitimate handshake messages "
        f"{offered.legit_handshakes}",
    )  # fmt: skip


def request_figures(in_process: UapiFuzzResult, live: UapiFuzzResult, sizes: Sizes) -> list[Figure]:
    figures = []
    for result, where, target in (
        (in_process, "in process", sizes.requests_in_process),
        (live, "live socket", sizes.requests_live),
    ):
        figures.append(
            Figure(
                AREA, f"configuration requests ({where})",
                f"{result.requests:,}; {result.rejected:,} errno replies; "
                f"{len(result.crashes)} crashes",
                result.held and result.requests >= target,
                "random and mutated get/set/stats: every reply ends in errno=N, "
                f"{result.unchanged_after_rejected_set:,} of {result.rejected_sets:,} rejected "
                "sets left get as it was",
            )
        )  # fmt: skip
    return figures


def file_figures(result: ConfigFuzzResult, target: int) -> list[Figure]:
    with_line = f"{result.rejected_with_line:,} / {result.rejected:,}"
    round_trips = f"{result.round_trips:,} / {result.accepted:,}"
    return [
        Figure(
            AREA, "configuration files", f"{result.files:,}; {len(result.crashes)} crashes",
            not result.crashes and result.files >= target,
            "generated and mutated wg and wg-quick files",
        ),
        Figure(
            AREA, "rejections with file:line", with_line,
            result.rejected_with_line == result.rejected,
            f"ConfigError naming file and line; {result.rejected_with_key:,} name the key too",
        ),
        Figure(
            AREA, "accepted files re-read unchanged", round_trips,
            result.round_trips == result.accepted,
            "parse(serialize(config)) == config",
        ),
    ]  # fmt: skip
