"""An interface's state and counters as Prometheus metrics, in the text exposition format. Pure.

https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format. The per-peer
names and labels are those of MindFlavor/prometheus_wireguard_exporter (src/wireguard.rs:
wireguard_sent_bytes_total, wireguard_received_bytes_total, wireguard_latest_handshake_seconds,
labelled interface, public_key, allowed_ips), so its dashboards work unchanged; the info metrics
follow mdlayher/wireguard_exporter (collector.go: wireguard_device_info, wireguard_peer_info).
The endpoint is a label of wireguard_peer_info only: on a counter it would start a new series
each time the peer roams, and rate() over the old one would end. wgpy's own counters, from the
`stats=1` extension, are named wgpy_*; a device without it (wireguard-go) has none of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from wgpy.core.drops import DropReason
from wgpy.core.keys import public_key, to_base64
from wgpy.uapi import DeviceState, DeviceStats, PeerState, format_prefix

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge"]
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    labels: Labels
    value: float


@dataclass(slots=True)
class Family:
    """One metric: its HELP and TYPE lines, then a line per sample."""

    name: str
    kind: Kind
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append(Sample(tuple(labels.items()), value))


def families(interface: str, state: DeviceState, stats: DeviceStats | None) -> list[Family]:
    """Every metric of one interface; `stats` is None for a device without wgpy's extension."""
    found = _standard(interface, state)
    if stats is not None:
        found += _wgpy_stats(interface, state, stats)
    return found


def _standard(interface: str, state: DeviceState) -> list[Family]:
    device = Family("wireguard_device_info", "gauge", "The interface and its public key.")
    device_key = to_base64(public_key(state.private_key)) if state.private_key else ""
    device.add(1, interface=interface, public_key=device_key, listen_port=str(state.listen_port))
    peers = Family("wireguard_peers", "gauge", "Peers configured on the interface.")
    peers.add(len(state.peers), interface=interface)
    info = Family("wireguard_peer_info", "gauge", "A peer's endpoint; the value is always 1.")
    sent = Family("wireguard_sent_bytes_total", "counter", "Bytes sent to the peer.")
    received = Family("wireguard_received_bytes_total", "counter", "Bytes received from the peer.")
    handshake = Family(
        "wireguard_latest_handshake_seconds",
        "gauge",
        "Unix time of the latest handshake with the peer; 0 before the first.",
    )
    for peer in state.peers:
        labels = _peer_labels(interface, peer)
        endpoint = str(peer.endpoint) if peer.endpoint is not None else ""
        info.add(1, **labels, endpoint=endpoint)
        sent.add(peer.tx_bytes, **labels)
        received.add(peer.rx_bytes, **labels)
        seconds, nanoseconds = peer.last_handshake_time
        handshake.add(seconds + nanoseconds / 1e9, **labels)
    return [device, peers, info, sent, received, handshake]


def _peer_labels(interface: str, peer: PeerState) -> dict[str, str]:
    allowed_ips = ",".join(format_prefix(prefix) for prefix in peer.allowed_ips)
    return {
        "interface": interface,
        "public_key": to_base64(peer.public_key),
        "allowed_ips": allowed_ips,
    }


def _wgpy_stats(interface: str, state: DeviceState, stats: DeviceStats) -> list[Family]:
    drops = Family(
        "wgpy_drops_total", "counter", "Packets the interface dropped, by reason (all peers)."
    )
    # Every reason this wgpy knows, at 0 until it happens, so a rate() has a series from the start.
    device_drops = dict.fromkeys((reason.name.lower() for reason in DropReason), 0)
    for reason, count in (device_drops | stats.drops).items():
        drops.add(count, interface=interface, reason=reason)
    cookies_sent = Family(
        "wgpy_cookie_replies_sent_total", "counter", "Cookie replies sent while under load."
    )
    cookies_sent.add(stats.cookie_replies_sent, interface=interface)
    peer_drops = Family(
        "wgpy_peer_drops_total", "counter", "Packets dropped after the peer was known, by reason."
    )
    attempts = Family(
        "wgpy_handshake_attempts_total", "counter", "Handshake initiations sent to the peer."
    )
    cookies_received = Family(
        "wgpy_cookie_replies_received_total", "counter", "Cookie replies received from the peer."
    )
    keypair_age = Family(
        "wgpy_keypair_age_seconds", "gauge", "Age of the current session; absent without one."
    )
    configured = {peer.public_key for peer in state.peers}
    for peer in stats.peers:
        if peer.public_key not in configured:
            continue  # Removed between the two requests.
        labels = {"interface": interface, "public_key": to_base64(peer.public_key)}
        for reason, count in peer.drops.items():
            peer_drops.add(count, **labels, reason=reason)
        attempts.add(peer.handshake_attempts, **labels)
        cookies_received.add(peer.cookie_replies_received, **labels)
        if peer.keypair_age is not None:
            keypair_age.add(peer.keypair_age, **labels)
    return [drops, cookies_sent, peer_drops, attempts, cookies_received, keypair_age]


# The exposition format ----------------------------------------------------------------------------


def exposition(metrics: Iterable[Family]) -> str:
    """The text a scrape returns. A family without samples still gets its HELP and TYPE."""
    lines = []
    for family in metrics:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        lines += [
            f"{family.name}{_format_labels(sample.labels)} {format_value(sample.value)}"
            for sample in family.samples
        ]
    return "".join(f"{line}\n" for line in lines)


def render(interface: str, state: DeviceState, stats: DeviceStats | None) -> str:
    return exposition(families(interface, state, stats))


def escape_label_value(value: str) -> str:
    """A label value between double quotes: backslash, double quote and line feed escaped."""
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and line feed escaped (a double quote stands as it is)."""
    return text.replace("\\", r"\\").replace("\n", r"\n")


def format_value(value: float) -> str:
    """Whole numbers without a fraction, other floats as Python's shortest repr (which Go's
    ParseFloat reads), NaN and infinities as the format spells them."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)
    return "{" + inner + "}"
