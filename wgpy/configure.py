"""Applying a configuration-protocol `set` to a device, and reading its state for `get`.

Pure, like the device: the I/O edge owns the listen port and fwmark (they are socket settings), so
it handles those and passes them in for `device_state`.
"""

from __future__ import annotations

from collections.abc import Mapping

from wgpy.core.device import Device
from wgpy.core.drops import DropReason
from wgpy.uapi import (
    ZERO_KEY,
    DeviceState,
    DeviceStats,
    DeviceUpdate,
    PeerState,
    PeerStats,
    PeerUpdate,
)


def apply_update(device: Device, update: DeviceUpdate, now: float) -> None:
    """Apply a parsed, already validated `set` request. It cannot fail half-way."""
    if update.private_key is not None:
        device.set_private_key(None if update.private_key == ZERO_KEY else update.private_key)
    if update.replace_peers:
        for public_key in list(device.peers):
            device.remove_peer(public_key)
    for change in update.peers:
        _apply_peer(device, change, now)


def _apply_peer(device: Device, change: PeerUpdate, now: float) -> None:
    if change.public_key == device.static_public:
        return  # Our own key cannot be a peer; wireguard-go ignores such a block.
    if change.remove:
        device.remove_peer(change.public_key)
        return
    peer = device.peers.get(change.public_key)
    if peer is None:
        if change.update_only:
            return
        peer = device.add_peer(change.public_key, now=now)
    if change.preshared_key is not None:
        peer.preshared_key = None if change.preshared_key == ZERO_KEY else change.preshared_key
    if change.endpoint is not None:
        # Sent to from the routing table's choice, as a configured endpoint is in the kernel.
        peer.endpoint, peer.local = change.endpoint, None
    if change.replace_allowed_ips:
        device.allowed_ips.remove_peer(peer)
    for network in change.removed_allowed_ips:
        device.allowed_ips.remove(network, peer)
    for network in change.allowed_ips:
        device.allowed_ips.insert(network, peer)
    if change.persistent_keepalive_interval is not None:
        device.set_persistent_keepalive(peer, change.persistent_keepalive_interval, now)


def device_state(device: Device, listen_port: int, fwmark: int) -> DeviceState:
    peers = []
    for peer in device.peers.values():
        wall = peer.last_handshake_wall
        seconds = int(wall) if wall is not None else 0
        nanoseconds = int((wall - seconds) * 1e9) if wall is not None else 0
        peers.append(
            PeerState(
                public_key=peer.public_key,
                preshared_key=peer.preshared_key,
                endpoint=peer.endpoint,
                last_handshake_time=(seconds, nanoseconds),
                tx_bytes=peer.tx_bytes,
                rx_bytes=peer.rx_bytes,
                persistent_keepalive_interval=peer.persistent_keepalive_interval,
                allowed_ips=device.allowed_ips.entries(peer),
            )
        )
    return DeviceState(device.private_key, listen_port, fwmark, peers)


def device_stats(device: Device, now: float) -> DeviceStats:
    """The device's counters, for wgpy's `stats=1` request."""
    peers = [
        PeerStats(
            peer.public_key,
            _by_name(peer.drops),
            peer.initiations_sent,
            peer.cookie_replies_received,
            now - peer.keypairs.current.created if peer.keypairs.current else None,
        )
        for peer in device.peers.values()
    ]
    return DeviceStats(_by_name(device.drops), device.cookie_replies_sent, peers)


def _by_name(drops: Mapping[DropReason, int]) -> dict[str, int]:
    return {reason.name.lower(): count for reason, count in drops.items()}
