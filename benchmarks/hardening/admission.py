"""Admission flood: a storm of real handshake initiations from unknown keys at a wgpy daemon that
asks WGPY_PEER_HOOK about each unknown key (issue 20).

Unlike flood.py's garbage, each initiation here is a valid one (right mac1, a static key that
decrypts) from its own key and its own address, so every one that wgpy takes before it is under
load reaches the admission path and may ask for a hook. The hook is slow on purpose (it sleeps
HOOK_SECONDS, then refuses) and notes when it starts and ends. The promises: at most the limit
of hooks (WGPY_PEER_HOOK_LIMIT, 4) ever run at once; memory stays flat; and a listed peer
(wireguard-go) completes its handshake within 10 seconds while the flood goes on.

Two variants: `cookies` is wgpy as deployed, where past 128 handshake messages a second it asks
for cookies and the flood's initiations (which carry none) stop at the cookie check; `no
cookies` raises WGPY_UNDER_LOAD_THRESHOLD out of reach, standing for an attacker that holds a
cookie for each of its addresses: every initiation wgpy reads costs a Diffie-Hellman and reaches
the admission path, the worst case for the hooks' bounds. wgpy then reads ~2,000 initiations a
second and the kernel drops the rest on its full socket, the listed peer's among them: each of
its initiations (one each REKEY_TIMEOUT) gets through by chance, so it is promised a handshake
within HANDSHAKE_DEADLINES' wider bound.

Topology and flooder as in flood.py: wgpy in W (198.18.0.1), wireguard-go and the flooder in P.
"""

from __future__ import annotations

import ipaddress
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.hardening import Figure, lab
from benchmarks.hardening.flood import FLOOD_NET, RATE, ip_udp, start_flooder
from wgpy.core.admission import MAX_HELD
from wgpy.core.device import Device, datagrams_of
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.keys import from_base64, generate_private_key
from wgpy.io.peer_hook import DEFAULT_LIMIT
from wgpy.lab.netns import WG_PORT, ip, veth_pair

AREA = "admission"
VARIANTS = {"cookies": {}, "no cookies": {"WGPY_UNDER_LOAD_THRESHOLD": "1000000000"}}
HANDSHAKE_DEADLINES = {"cookies": 10.0, "no cookies": 25.0}
SOURCES = 4096  # distinct keys, each from its own address, 198.19.0.1 on
FULL_SECONDS, SHORT_SECONDS = 30.0, 14.0
HOOK_SECONDS = 0.5
# As flood.py's bound: state kept per initiation (hundreds of thousands of them) would break it.
RSS_GROWTH_BOUND_MIB = 8.0
HOOK_SETTLE = 2 * HOOK_SECONDS + 1.0  # for the last hooks to end after the flood


@dataclass
class Observed:
    variant: str
    sent: int
    seconds: float
    handshake: float | None
    flood_left: float
    hooks: int  # hook runs
    peak_hooks: int  # the most hooks running at once
    refused: int  # initiations dropped as from a refused key
    full: int  # initiations dropped as the held table was full
    unknown: int  # initiations that reached the admission path: held, refused or not
    baseline_rss: float
    sampler: lab.Sampler


def run(short: bool) -> list[Figure]:
    duration = SHORT_SECONDS if short else FULL_SECONDS
    variants = ["cookies"] if short else list(VARIANTS)
    return [figure for variant in variants for figure in figures(observe(duration, variant))]


def observe(duration: float, variant: str) -> Observed:
    with veth_pair() as (w, p), tempfile.TemporaryDirectory() as scratch:
        ip("-n", w.name, "route", "add", FLOOD_NET, "via", p.ipv4)
        log = Path(scratch) / "hooks"
        hook = write_hook(Path(scratch) / "hook", log)
        wgpy = lab.Daemon(w, lab.WGPY, lab.INNER[0])
        wgpy.env = {"WGPY_PEER_HOOK": str(hook), **VARIANTS[variant]}
        peer = lab.Daemon(p, lab.WIREGUARD_GO, lab.INNER[1])
        wgpy.peer_with(peer, "")
        peer.peer_with(wgpy, f"{w.ipv4}:{WG_PORT}")
        packets = Path(scratch) / "initiations"
        with lab.running(wgpy, peer):
            assert wgpy.process is not None
            pid = wgpy.process.pid
            size = write_initiations(packets, w.ipv4, from_base64(wgpy.keys.public))
            baseline_rss = lab.rss_mib(pid)
            before = wgpy.stats()
            with lab.Sampler(pid) as sampler:
                flooder = start_flooder(p, w.ipv4, duration, size, packets)
                flood_ends = time.monotonic() + duration
                time.sleep(1.0)  # the flood is on
                with lab.Probe(peer, wgpy) as probe:
                    handshake = probe.recovery(time.monotonic(), HANDSHAKE_DEADLINES[variant])
                flood_left = flood_ends - time.monotonic()
                output, _ = flooder.communicate(timeout=duration + 30)
                time.sleep(HOOK_SETTLE)
            after = wgpy.stats()
            marks = log.read_text().split() if log.exists() else []
    report = json.loads(output)

    def counted(reason: DropReason) -> int:
        return lab.drops(after, reason) - lab.drops(before, reason)

    hooks = marks.count("start")
    refused, full = counted(DropReason.PEER_REFUSED), counted(DropReason.ADMISSIONS_FULL)
    limited = counted(DropReason.ADMISSIONS_RATE_LIMITED)
    return Observed(
        variant, report["sent"], report["seconds"], handshake, flood_left, hooks,
        peak_running(marks), refused, full, hooks + refused + full + limited, baseline_rss,
        sampler,
    )  # fmt: skip


def write_hook(path: Path, log: Path) -> Path:
    """A hook that notes its start and end in `log`, takes HOOK_SECONDS, and refuses."""
    path.write_text(
        f"#!/bin/sh\necho start >> {log}\nsleep {HOOK_SECONDS}\necho end >> {log}\nexit 1\n"
    )
    path.chmod(0o755)
    return path


def peak_running(marks: list[str]) -> int:
    running_now = peak = 0
    for mark in marks:
        running_now += 1 if mark == "start" else -1
        peak = max(peak, running_now)
    return peak


def write_initiations(path: Path, destination: str, responder_public_key: bytes) -> int:
    """Write SOURCES IPv4 packets, each a valid initiation from its own new key and address, to
    the responder at `destination`; return their size."""
    rng = random.Random(SOURCES).randbytes
    responder = Endpoint(destination, WG_PORT)
    packets = bytearray()
    for index in range(1, SOURCES + 1):
        device = Device(rng, generate_private_key(rng))
        peer = device.add_peer(responder_public_key, endpoint=responder)
        device.allowed_ips.insert(ipaddress.ip_network("0.0.0.0/0"), peer)
        first = ipv4_packet("192.0.2.9", "192.0.2.1", b"")
        (initiation,) = datagrams_of(device.handle_tun_packet(first, 0.0, time.time()))
        source = bytes([198, 19, index >> 8, index & 0xFF])
        packets += ip_udp(source, destination, 40000 + index % 20000, initiation)
    path.write_bytes(packets)
    return len(packets) // SOURCES


def figures(seen: Observed) -> list[Figure]:
    tag = f" ({seen.variant})"
    rate = seen.sent / seen.seconds
    growth = seen.sampler.peak_rss_mib - seen.baseline_rss
    handshake = seen.handshake
    deadline = HANDSHAKE_DEADLINES[seen.variant]
    in_time = handshake is not None and handshake <= deadline and seen.flood_left > 0
    # Each hook answers a held initiation; a refused key is held again only after REFUSAL_TIME,
    # and MAX_HELD at a time wait: the hooks in a run are bounded by the keys the table let in.
    return [
        Figure(
            AREA, f"unknown-key flood sent{tag}",
            f"{rate:,.0f} initiations/s ({seen.sent:,} in {seen.seconds:.1f} s)",
            rate >= 0.95 * RATE,
            f"target {RATE:,}/s, each a valid initiation (mac1 right, static key decrypts) from "
            f"its own unknown key and address, {SOURCES:,} of them; {seen.unknown:,} reached the "
            "admission path",
        ),
        Figure(
            AREA, f"peer hooks at once{tag}", f"{seen.peak_hooks} (of {seen.hooks:,} run)",
            seen.peak_hooks <= DEFAULT_LIMIT,
            f"at most WGPY_PEER_HOOK_LIMIT ({DEFAULT_LIMIT}) hook processes at once, each "
            f"{HOOK_SECONDS} s long and refusing; {seen.refused:,} initiations dropped as from "
            f"a refused key, {seen.full:,} as the held table ({MAX_HELD}) was full",
        ),
        Figure(
            AREA, f"legitimate handshake under unknown-key flood{tag}", lab.seconds(handshake),
            in_time,
            f"wireguard-go, a listed peer, completes its handshake with wgpy within "
            f"{deadline:.0f} s while the flood runs",
        ),
        Figure(
            AREA, f"wgpy peak RSS under unknown-key flood{tag}",
            f"{seen.sampler.peak_rss_mib:.1f} MiB (+{growth:.1f})",
            growth <= RSS_GROWTH_BOUND_MIB,
            f"memory flat: grows at most {RSS_GROWTH_BOUND_MIB:.0f} MiB over the "
            f"{seen.baseline_rss:.1f} MiB before the flood",
        ),
    ]  # fmt: skip
