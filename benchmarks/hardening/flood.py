"""Flood: a storm of handshake initiations from thousands of addresses at a wgpy daemon.

The initiations carry a valid mac1 for wgpy's public key and garbage behind it, so each passes
the cheap check and would cost a Diffie-Hellman if wgpy took it at face value. Past 128 of them
in a second wgpy is under load (whitepaper section 5.3, "DoS mitigation") and answers each with
a cookie reply instead. The promises, each a bound that a regression would break: that mode
engages and answers (nearly) every initiation after it engaged; only the initiations before it
engaged cost a Diffie-Hellman; the kernel drops none of the flood on wgpy's socket; the daemon's
CPU stays near what was measured and its memory flat; and a legitimate peer (wireguard-go; in the
full run a second wgpy too) whose first initiation meets a cookie reply still completes its
handshake within 10 seconds, while the flood goes on.

Topology: wgpy in W (198.18.0.1), the legitimate peer and the flooder in P (198.18.0.2). The flooder
sends through a raw socket from 198.19.0.0/16, which W routes back to P, where the cookie replies
end: P does not forward.
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.hardening import Figure
from benchmarks.hardening.lab import (
    INNER,
    WGPY,
    WIREGUARD_GO,
    Daemon,
    Probe,
    Sampler,
    cpu_seconds,
    drops,
    module_command,
    python_env,
    rcvbuf_errors,
    rss_mib,
    running,
    seconds,
)
from wgpy.core.cookie import mac1_key
from wgpy.core.crypto import mac
from wgpy.core.drops import DropReason
from wgpy.core.keys import from_base64
from wgpy.lab.netns import WG_PORT, Namespace, ip, veth_pair, wait_until
from wgpy.uapi import DeviceStats

AREA = "flood"
PEERS = {"wireguard-go": WIREGUARD_GO, "wgpy": WGPY}
RATE = 10_000  # initiations per second
SOURCES = 4096  # distinct source addresses, 198.19.0.1 on
FLOOD_NET = "198.19.0.0/16"
FULL_SECONDS, SHORT_SECONDS = 30.0, 14.0
HANDSHAKE_DEADLINE = 10.0
ENGAGE_TIMEOUT = 5.0
# Every initiation that arrives under load gets a cookie reply; the 1% allows for initiations
# lost on the way (the veth's backlog), none of which went missing in the runs measured.
REPLY_SHARE = 0.99
# The initiations in a second that put wgpy under load (its UNDER_LOAD_THRESHOLD; the kernel
# allows 512 queued): only those before the mode engaged may cost a Diffie-Hellman.
DIFFIE_HELLMAN_BOUND = 128
# Measured at 10,000/s: a mean of 27-29% of a core (28-29 us an initiation), on a quiet machine
# and on one shared with other tests alike. The bound leaves about twice that for noise, and no
# more: a Diffie-Hellman per initiation, or a cookie path twice as slow, breaks it. It holds on a
# machine like that one: the 2-core VMs of 2026-12-07, about half as fast, measured 60-89%. So the
# CI run (tests/netns/test_hardening_flood.py) reports this row but does not hold it.
CPU_BOUND_PERCENT = 60.0
# Measured: +1.1 to +1.3 MiB over the 30 s flood. A cookie reply keeps no state, so growth is the
# allocator's; state kept per initiation (300,000 of them) would break it.
RSS_GROWTH_BOUND_MIB = 8.0
# A full receive buffer holds about a second of the flood.
DRAIN_INTERVAL, DRAIN_CHECKS = 0.5, 10

INITIATION_HEADER = b"\x01\x00\x00\x00"  # type 1, reserved zero
MAC1_OFFSET = 116  # mac1 covers the initiation up to here (whitepaper section 5.4.4)
UDP_CHECKSUM_NONE = b"\x00\x00"  # optional over IPv4 (RFC 768)


@dataclass
class Observed:
    """What one flood run saw."""

    peer: str  # the legitimate peer: "wireguard-go" or "wgpy"
    sent: int  # initiations the flooder sent
    send_errors: int
    seconds: float  # how long it sent
    engaged: bool  # cookie replies seen within ENGAGE_TIMEOUT
    handshake: float | None  # seconds the legitimate peer took, None if it did not finish
    peer_cookies: int | None  # cookie replies the peer took, if it is wgpy and tells
    flood_left: float  # seconds of flood still to come when the handshake was done
    cookie_replies: int  # wgpy's, once it worked off its backlog
    diffie_hellmans: int  # initiations that failed to authenticate: a DH each, then a drop
    kernel_drops: int  # datagrams the kernel dropped on wgpy's full receive buffer
    cpu_seconds: float  # wgpy's, from the flood's start to the end of its backlog
    baseline_rss: float  # MiB, before the flood
    sampler: Sampler


def run(short: bool) -> list[Figure]:
    if short:
        return figures(observe(SHORT_SECONDS, "wireguard-go"))
    return [figure for peer in PEERS for figure in figures(observe(FULL_SECONDS, peer))]


def observe(duration: float, peer_name: str) -> Observed:
    with veth_pair() as (w, p):
        ip("-n", w.name, "route", "add", FLOOD_NET, "via", p.ipv4)
        wgpy = Daemon(w, WGPY, INNER[0])
        peer = Daemon(p, PEERS[peer_name], INNER[1])
        # wgpy knows no endpoint: only the peer can start the handshake.
        wgpy.peer_with(peer, "")
        peer.peer_with(wgpy, f"{w.ipv4}:{WG_PORT}")
        with running(wgpy, peer), tempfile.TemporaryDirectory() as scratch:
            assert wgpy.process is not None
            pid = wgpy.process.pid
            packets = Path(scratch) / "initiations"
            size = write_initiations(packets, w.ipv4, from_base64(wgpy.keys.public))
            baseline_rss, cpu_before = rss_mib(pid), cpu_seconds(pid)
            before, kernel_drops_before = wgpy.stats(), rcvbuf_errors(w)
            with Sampler(pid) as sampler:
                flooder = start_flooder(p, w.ipv4, duration, size, packets)
                flood_ends = time.monotonic() + duration
                engaged = wait_until(lambda: under_load(wgpy), ENGAGE_TIMEOUT, interval=0.2)
                with Probe(peer, wgpy) as probe:
                    handshake = probe.recovery(time.monotonic(), HANDSHAKE_DEADLINE + 5)
                flood_left = flood_ends - time.monotonic()
                output, _ = flooder.communicate(timeout=duration + 30)
            after = drained(wgpy)
            peer_cookies = peer.stats().peers[0].cookie_replies_received if peer.is_wgpy else None
            cpu = cpu_seconds(pid) - cpu_before
            kernel_drops = rcvbuf_errors(w) - kernel_drops_before
    report = json.loads(output)
    cookie_replies = after.cookie_replies_sent - before.cookie_replies_sent
    invalid = DropReason.HANDSHAKE_INVALID
    diffie_hellmans = drops(after, invalid) - drops(before, invalid)
    return Observed(
        peer_name, report["sent"], report["errors"], report["seconds"], engaged, handshake,
        peer_cookies, flood_left, cookie_replies, diffie_hellmans, kernel_drops, cpu,
        baseline_rss, sampler,
    )  # fmt: skip


def start_flooder(
    ns: Namespace, destination: str, duration: float, size: int, packets: Path
) -> subprocess.Popen[bytes]:
    """flooder.py in `ns`, sending the `size`-byte packets of the file `packets` to
    `destination` at RATE a second for `duration` seconds; it prints its report on stdout."""
    command = module_command("benchmarks.hardening.flooder", destination, str(RATE),
                             str(duration), str(size), str(packets))  # fmt: skip
    return ns.popen(*command, env=python_env(), stdout=subprocess.PIPE)


def under_load(wgpy: Daemon) -> bool:
    return wgpy.stats().cookie_replies_sent > 0


def drained(wgpy: Daemon) -> DeviceStats:
    """wgpy's counters once it has worked off the datagrams queued in its socket."""
    last = wgpy.stats()
    for _ in range(DRAIN_CHECKS):
        time.sleep(DRAIN_INTERVAL)
        stats = wgpy.stats()
        if stats.cookie_replies_sent == last.cookie_replies_sent:
            break
        last = stats
    return last


def write_initiations(path: Path, destination: str, responder_public_key: bytes) -> int:
    """Write SOURCES IPv4 packets, each an initiation from its own address; return their size.

    An initiation is 148 bytes: type and sender index, then ephemeral key, encrypted static key
    and encrypted timestamp (random here), mac1 (right), mac2 (zero: no cookie).
    """
    rng = random.Random(SOURCES)
    key = mac1_key(responder_public_key)
    packets = bytearray()
    for index in range(1, SOURCES + 1):
        body = INITIATION_HEADER + rng.randbytes(MAC1_OFFSET - len(INITIATION_HEADER))
        initiation = body + mac(key, body) + bytes(16)
        source = bytes([198, 19, index >> 8, index & 0xFF])
        packets += ip_udp(source, destination, rng.randrange(1024, 65536), initiation)
    path.write_bytes(packets)
    return len(packets) // SOURCES


def ip_udp(source: bytes, destination: str, source_port: int, payload: bytes) -> bytes:
    """An IPv4 header (checksum, id and length left for the kernel) and a UDP header."""
    udp_length = 8 + len(payload)
    header = (
        bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0])
        + source
        + bytes(int(part) for part in destination.split("."))
    )
    udp = (
        source_port.to_bytes(2, "big")
        + WG_PORT.to_bytes(2, "big")
        + udp_length.to_bytes(2, "big")
        + UDP_CHECKSUM_NONE
    )
    return header + udp + payload


def figures(seen: Observed) -> list[Figure]:
    rate = seen.sent / seen.seconds
    replies, diffie_hellmans = seen.cookie_replies, seen.diffie_hellmans
    # Every initiation of the flood that cost no Diffie-Hellman arrived under load.
    under_load = seen.sent - diffie_hellmans
    sampler = seen.sampler
    growth = sampler.peak_rss_mib - seen.baseline_rss
    handshake = seen.handshake
    in_time = handshake is not None and handshake <= HANDSHAKE_DEADLINE and seen.flood_left > 0
    # wgpy as the peer tells whether a cookie reply met it: it must have, the flood being on.
    cookie_met = seen.peer_cookies is None or seen.peer_cookies > 0
    met = "" if seen.peer_cookies is None else f"; cookie replies it took: {seen.peer_cookies}"
    tag = f" ({seen.peer} peer)"
    return [
        Figure(
            AREA, f"flood sent{tag}",
            f"{rate:,.0f} initiations/s ({seen.sent:,} in {seen.seconds:.1f} s)",
            rate >= 0.95 * RATE,
            f"target {RATE:,}/s from {SOURCES:,} addresses, valid mac1, garbage inside; "
            f"{seen.send_errors:,} sends failed",
        ),
        Figure(
            AREA, f"cookie replies sent{tag}",
            f"{replies:,} ({replies / max(under_load, 1):.1%} of the {under_load:,} initiations "
            "after under-load engaged)",
            seen.engaged and replies >= REPLY_SHARE * under_load,
            f"under-load mode engages within {ENGAGE_TIMEOUT:.0f} s and answers at least "
            f"{REPLY_SHARE:.0%} of the flood after it with a cookie reply (stats=1 "
            "cookie_replies_sent, which counts the one the legitimate peer met too)",
        ),
        Figure(
            AREA, f"Diffie-Hellmans for the flood{tag}", f"{diffie_hellmans:,}",
            diffie_hellmans <= DIFFIE_HELLMAN_BOUND,
            "handshake work only before under-load engaged: at most the "
            f"{DIFFIE_HELLMAN_BOUND} initiations a second that engage it fail to authenticate "
            "(stats=1 handshake_invalid), the rest are answered without one",
        ),
        Figure(
            AREA, f"flood dropped by the kernel{tag}", f"{seen.kernel_drops:,}",
            seen.kernel_drops == 0,
            "wgpy keeps up: none of the flood is lost to its full receive buffer (RcvbufErrors "
            "in its namespace)",
        ),
        Figure(
            AREA, f"legitimate handshake under flood{tag}", seconds(handshake),
            in_time and cookie_met,
            f"{seen.peer} completes its handshake with wgpy within {HANDSHAKE_DEADLINE:.0f} s "
            f"while the flood runs (first datagram through both ways){met}",
        ),
        Figure(
            AREA, f"wgpy peak RSS{tag}", f"{sampler.peak_rss_mib:.1f} MiB (+{growth:.1f})",
            growth <= RSS_GROWTH_BOUND_MIB,
            f"memory flat: grows at most {RSS_GROWTH_BOUND_MIB:.0f} MiB over the "
            f"{seen.baseline_rss:.1f} MiB before the flood",
        ),
        Figure(
            AREA, f"wgpy CPU{tag}",
            f"mean {sampler.mean_cpu_percent:.0f}%, peak {sampler.peak_cpu_percent:.0f}% of a core",
            sampler.mean_cpu_percent <= CPU_BOUND_PERCENT,
            f"CPU near what was measured: at most {CPU_BOUND_PERCENT:.0f}% of a core on average "
            f"at {RATE:,}/s; {1e6 * seen.cpu_seconds / max(seen.sent, 1):.0f} us per flood "
            "initiation",
        ),
    ]  # fmt: skip
