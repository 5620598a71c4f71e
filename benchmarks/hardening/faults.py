"""Faults: a wgpy tunnel keeps its promises across a network that loses, reorders, duplicates,
and across restarts and a change of address.

Every scenario runs wgpy in A and a peer in B (wireguard-go; in the full run wgpy too), which
reach each other only through the router M (lab.routed), where the fault is imposed:

- loss: nftables in M drops 5% of the UDP it forwards (`numgen random mod 100 < 5`: this kernel
  has no netem); a TCP blob from A to B arrives whole, its sha256 equal at both ends.
- reordering and duplication: the peers talk through a relay in M (relay.py) that holds back
  and replays datagrams; a blob from B to A arrives whole, and wgpy counts every replayed
  transport message as a replay (REPLAYED_COUNTER).
- a restart of the peer, and of wgpy (SIGKILL, then the same command and configuration), nobody
  acting: with datagrams flowing both ways the restarted side's first one starts a handshake;
  with the survivor alone sending, its timers must notice the silence and start one. The
  figure is the time from the restart until datagrams got through again.
- an endpoint change: wgpy's outer address moves from 198.18.1.1 to 198.18.1.3; the peer
  follows on the first authenticated datagram from the new address.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NamedTuple

from benchmarks.hardening import Figure
from benchmarks.hardening.lab import (
    INNER,
    LINK,
    WGPY,
    WIREGUARD_GO,
    Daemon,
    Probe,
    drops,
    module_command,
    nft,
    nft_counter_packets,
    python_env,
    rcvbuf_errors,
    routed,
    running,
    seconds,
)
from wgpy.core.drops import DropReason
from wgpy.lab.netns import STOP_TIMEOUT, WG_PORT, Namespace, can_ping, ip, transfer, wait_until

AREA = "faults"
PEERS = {"wireguard-go": WIREGUARD_GO, "wgpy": WGPY}
SHORT_BLOB, FULL_BLOB = 4 * 1024 * 1024, 64 * 1024 * 1024
LOSS_PERCENT = 5
# Each datagram is dropped with probability 5%, so the count dropped of n is binomial: within
# LOSS_SIGMAS standard deviations (sqrt(n p (1 - p))) of 5% of n but once in a million runs.
# That is +-1.5 points of n for the short blob's ~5,000 datagrams, +-0.4 for the full one's ~60,000;
# a rule that dropped one way only (2.5% of both) breaks it.
LOSS_SIGMAS = 5
# The whitepaper's timers (section 6.1): Keepalive-Timeout 10 s, Rekey-Timeout 5 s. A side that
# sent and heard nothing back for Keepalive-Timeout + Rekey-Timeout starts a new handshake
# (section 6.5, "Passive Keepalive"), and an initiation that goes unanswered is sent again after
# Rekey-Timeout (section 6.4): the bound on a recovery that waits on timers, with one initiation
# lost. Datagrams flowing both ways make it quicker.
KEEPALIVE_TIMEOUT, REKEY_TIMEOUT = 10, 5
RECOVERY_DEADLINE = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + REKEY_TIMEOUT
HANDSHAKE_TIMEOUT = 10
ROAMED_ADDRESS = "198.18.1.3"
# How long wgpy may take to read the last datagrams a stopped relay sent, polled this often.
SETTLE_SECONDS, SETTLE_POLL = 2.0, 0.05
# The relay answers for B on M's address towards A, and for A on M's address towards B.
RELAY_A_SIDE, RELAY_B_SIDE = f"198.18.1.2:{WG_PORT}", f"198.18.2.2:{WG_PORT}"

LOSS_TABLE = "wgpy_faults"
LOSS_RULESET = f"""
table inet {LOSS_TABLE} {{
    counter lost {{}}
    counter passed {{}}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        meta l4proto udp numgen random mod 100 < {LOSS_PERCENT} counter name lost drop
        meta l4proto udp counter name passed
    }}
}}
"""


def run(short: bool) -> list[Figure]:
    peers = ["wireguard-go"] if short else list(PEERS)
    blob = SHORT_BLOB if short else FULL_BLOB
    figures: list[Figure] = []
    for peer in peers:
        figures += lossy_transfer(peer, blob)
        figures += reordered_duplicated_transfer(peer, blob)
        figures += restart(peer, restarted="peer")
        figures += restart(peer, restarted="wgpy")
        figures += restart(peer, restarted="peer", survivor_alone=True)
        if not short:
            figures += restart(peer, restarted="wgpy", survivor_alone=True)
        figures += endpoint_change(peer)
    return figures


class Relay:
    """relay.py running in the router; `counts()` ends it and returns what it did."""

    def __init__(self, middle: Namespace, b_endpoint: str) -> None:
        command = module_command(
            "benchmarks.hardening.relay", RELAY_A_SIDE, RELAY_B_SIDE, b_endpoint
        )
        self.process = middle.popen(*command, env=python_env(), stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the relay did not start")

    def counts(self) -> dict[str, dict[str, int]]:
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=STOP_TIMEOUT)
        counts: dict[str, dict[str, int]] = json.loads(output)
        return counts


class Tunnel(NamedTuple):
    a: Namespace
    middle: Namespace
    b: Namespace
    wgpy: Daemon
    peer: Daemon
    relay: Relay | None


@contextmanager
def tunnel(peer: str, *, relayed: bool = False) -> Iterator[Tunnel]:
    """wgpy in A and `peer` in B across M, handshake done; `relayed`: through M's relay."""
    with routed() as (a, middle, b):
        relay = Relay(middle, f"{b.ipv4}:{WG_PORT}") if relayed else None
        wgpy = Daemon(a, WGPY, INNER[0])
        other = Daemon(b, PEERS[peer], INNER[1])
        wgpy.peer_with(other, RELAY_A_SIDE if relayed else f"{b.ipv4}:{WG_PORT}")
        other.peer_with(wgpy, RELAY_B_SIDE if relayed else f"{a.ipv4}:{WG_PORT}")
        with running(other, wgpy):
            if not can_ping(a, other.inner, deadline=HANDSHAKE_TIMEOUT):
                raise RuntimeError(f"no handshake between wgpy and {peer}")
            yield Tunnel(a, middle, b, wgpy, other, relay)


# -- loss ------------------------------------------------------------------------------------


def lossy_transfer(peer: str, size: int) -> list[Figure]:
    with tunnel(peer) as bench:
        nft(bench.middle, LOSS_RULESET)
        result = transfer(bench.a, bench.b, bench.peer.inner, size)
        lost = nft_counter_packets(bench.middle, LOSS_TABLE, "lost")
        passed = nft_counter_packets(bench.middle, LOSS_TABLE, "passed")
    total, share = lost + passed, LOSS_PERCENT / 100
    expected = share * total
    tolerance = LOSS_SIGMAS * math.sqrt(total * share * (1 - share))
    name = f"{LOSS_PERCENT}% loss, wgpy to {peer}"
    return [
        Figure(
            AREA, f"{name}: bytes verified",
            f"{result.received_bytes:,} of {result.sent_bytes:,} in {result.seconds:.1f} s",
            result.intact,
            "a TCP transfer through the tunnel loses or corrupts 0 bytes (sha256 at both ends)",
        ),
        Figure(
            AREA, f"{name}: datagrams dropped",
            f"{lost:,} of {total:,} ({lost / max(total, 1):.2%})",
            total > 0 and abs(lost - expected) <= tolerance,
            f"nftables in the router drops {LOSS_PERCENT}% of the WireGuard datagrams, both "
            f"ways: {expected:,.0f} +- {tolerance:,.0f} ({LOSS_SIGMAS} standard deviations of a "
            "binomial count)",
        ),
    ]  # fmt: skip


# -- reordering and duplication --------------------------------------------------------------


def reordered_duplicated_transfer(peer: str, size: int) -> list[Figure]:
    with tunnel(peer, relayed=True) as bench:
        assert bench.relay is not None
        result = transfer(bench.b, bench.a, bench.wgpy.inner, size)
        # The closing segments still pass the relay: end it first, so that every replay it
        # counts is on its way to wgpy, then give wgpy the time to read them.
        counts = bench.relay.counts()
        sent = counts["to_a"]["duplicated"]
        replays, kernel_drops = replays_counted(bench, sent)
    reordered = counts["to_a"]["reordered"] + counts["to_b"]["reordered"]
    all_counted = sent > 0 and sent - kernel_drops <= replays <= sent
    name = f"reordered and duplicated, {peer} to wgpy"
    return [
        Figure(
            AREA, f"{name}: bytes verified",
            f"{result.received_bytes:,} of {result.sent_bytes:,} in {result.seconds:.1f} s",
            result.intact,
            f"a TCP transfer arrives intact; the relay reordered {reordered:,} datagrams",
        ),
        Figure(
            AREA, f"{name}: replays dropped", f"{replays:,} of {sent:,}",
            all_counted,
            "every transport message the relay replays to wgpy is dropped and counted as "
            f"replayed_counter ({kernel_drops:,} datagrams lost to a full receive buffer)",
        ),
    ]  # fmt: skip


def replays_counted(bench: Tunnel, sent: int) -> tuple[int, int]:
    """wgpy's REPLAYED_COUNTER drops, once they reach the `sent` replays or SETTLE_SECONDS
    pass, and the datagrams A's kernel dropped on a full receive buffer (a replay dropped
    there never reached wgpy). Totals since the start: the relay replays the handshake's
    ping too."""

    def counted() -> tuple[int, int]:
        return drops(bench.wgpy.stats(), DropReason.REPLAYED_COUNTER), rcvbuf_errors(bench.a)

    def settled() -> bool:
        replays, kernel_drops = counted()
        return replays >= sent - kernel_drops

    wait_until(settled, SETTLE_SECONDS, interval=SETTLE_POLL)
    return counted()


# -- restarts and roaming --------------------------------------------------------------------


def restart(
    peer: str, *, restarted: Literal["peer", "wgpy"], survivor_alone: bool = False
) -> list[Figure]:
    """`survivor_alone`: only the side that was not restarted sends, so the session recovers
    on its timers (the new process, having sent nothing, starts no handshake)."""
    with tunnel(peer) as bench:
        daemon, survivor = (
            (bench.peer, bench.wgpy) if restarted == "peer" else (bench.wgpy, bench.peer)
        )
        with Probe(survivor, daemon, both_ways=not survivor_alone) as probe:
            if probe.recovery(time.monotonic(), HANDSHAKE_TIMEOUT) is None:
                raise RuntimeError("no datagrams through the tunnel before the restart")
            daemon.kill()
            killed = time.monotonic()
            daemon.start()
            back = time.monotonic() - killed
            recovery = probe.recovery(killed, RECOVERY_DEADLINE + back)
    who = f"peer {peer}" if restarted == "peer" else f"wgpy (peer {peer})"
    survivor_name = "wgpy" if restarted == "peer" else peer
    senders = f"{survivor_name} alone sends" if survivor_alone else "both send"
    return [
        Figure(
            AREA, f"{who} restarted, {senders}: recovery", seconds(recovery),
            recovery is not None and recovery - back <= RECOVERY_DEADLINE,
            f"killed and started again with the same configuration ({back:.2f} s of that to "
            "start and configure it), the session recovers with nobody acting: datagrams "
            f"through {'again' if survivor_alone else 'both ways again'} within "
            f"{RECOVERY_DEADLINE} s of the restart",
        ),
    ]  # fmt: skip


def endpoint_change(peer: str) -> list[Figure]:
    with tunnel(peer) as bench, Probe(bench.wgpy, bench.peer) as probe:
        if probe.recovery(time.monotonic(), HANDSHAKE_TIMEOUT) is None:
            raise RuntimeError("no datagrams through the tunnel before the address change")
        ip("-n", bench.a.name, "address", "add", f"{ROAMED_ADDRESS}/24", "dev", LINK)
        ip("-n", bench.a.name, "address", "delete", f"{bench.a.ipv4}/24", "dev", LINK)
        moved = time.monotonic()
        recovery = probe.recovery(moved, RECOVERY_DEADLINE)
        seen = bench.peer.endpoint()
    followed = seen == f"{ROAMED_ADDRESS}:{WG_PORT}"
    return [
        Figure(
            AREA, f"wgpy's address changed, {peer} follows: recovery", seconds(recovery),
            recovery is not None and followed,
            f"wgpy's outer address moves to {ROAMED_ADDRESS}; the peer sends to it ({seen}) "
            "after the first datagram from there: datagrams through both ways again",
        ),
    ]  # fmt: skip
