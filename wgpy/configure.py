"""Applying a configuration-protocol `set` to a device, and writing its state for `get`.

Pure, like the device: the I/O edge owns the listen port and fwmark (they are socket settings), so
it handles those and passes them in for the `get` reply. Both go a bounded piece at a time
(`update_steps`, `format_peers`), so that an edge whose data path shares the device can let it
have the device between the pieces: a set or get of 100,000 peers takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from wgpy import uapi
from wgpy.core.allowedips import AllowedIPs
from wgpy.core.device import Device
from wgpy.core.drops import DropReason
from wgpy.core.peer import Peer
from wgpy.uapi import ZERO_KEY, DeviceStats, DeviceUpdate, PeerStats, PeerUpdate

# The changes one step of `update_steps` makes: each peer added, changed or removed, and each
# allowed IP inserted or removed, counts one. 256 take ~6 ms on the 2-core machines measured.
STEP_CHANGES: Final = 256


def apply_update(device: Device, update: DeviceUpdate, now: float) -> None:
    """Apply a parsed, already validated `set` request at once."""
    for _ in update_steps(device, update, now):
        pass


def update_steps(device: Device, update: DeviceUpdate, now: float) -> Iterator[None]:
    """Apply a parsed, already validated `set` request, pausing after every STEP_CHANGES
    changes, when the I/O edge lets its data path have the device. `update.peers` is emptied
    as its changes are applied.

    It cannot fail half-way: the whole request was checked before the first step, which is how a
    `set` that fails anywhere applies nothing. Between steps the device is partly updated, as
    wireguard-go's is while it applies a set line by line, and the edge answers no other
    request until the last step.
    """
    for count, _ in enumerate(_changes(device, update, now), start=1):
        if count % STEP_CHANGES == 0:
            yield


def _changes(device: Device, update: DeviceUpdate, now: float) -> Iterator[None]:
    """Apply `update`, yielding after each change."""
    if update.private_key is not None:
        device.set_private_key(None if update.private_key == ZERO_KEY else update.private_key)
        yield
    if update.replace_peers:
        for public_key in list(device.peers):
            device.remove_peer(public_key)
            yield
    for change in _taken(update.peers):
        yield from _apply_peer(device, change, now)


def _taken(changes: list[PeerUpdate]) -> Iterator[PeerUpdate]:
    """The changes in order, each taken out of the list as it is given: so each is freed once
    applied, a step at a time. Freed at once when the request ends, the changes of 60,000
    peers held the interpreter for 23 ms, a pause of the data path."""
    changes.reverse()
    while changes:
        yield changes.pop()


def _apply_peer(device: Device, change: PeerUpdate, now: float) -> Iterator[None]:
    if change.public_key == device.static_public:
        return  # Our own key cannot be a peer; wireguard-go ignores such a block.
    if change.remove:
        device.remove_peer(change.public_key)
        yield
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
    if change.persistent_keepalive_interval is not None:
        device.set_persistent_keepalive(peer, change.persistent_keepalive_interval, now)
    yield
    yield from _change_allowed_ips(device.allowed_ips, peer, change)


def _change_allowed_ips(table: AllowedIPs[Peer], peer: Peer, change: PeerUpdate) -> Iterator[None]:
    if change.replace_allowed_ips:
        if not change.removed_allowed_ips and table.prefixes(peer) == [
            (prefix.network_address.packed, prefix.prefixlen) for prefix in change.allowed_ips
        ]:
            # The prefixes the peer has, in the same order: replacing them would change nothing.
            # (`wg syncconf` sends every peer so, changed or not.)
            return
        table.remove_peer(peer)
        yield
    for prefix in change.removed_allowed_ips:
        table.remove(prefix, peer)
        yield
    for prefix in change.allowed_ips:
        table.insert(prefix, peer)
        yield


# get ----------------------------------------------------------------------------------------------


def get_reply(device: Device, listen_port: int, fwmark: int) -> str:
    """The whole reply to `get=1` at once, for callers that share the device with nothing."""
    head = format_device(device, listen_port, fwmark)
    return head + format_peers(device, device.peers.values()) + uapi.format_errno(0)


def format_device(device: Device, listen_port: int, fwmark: int) -> str:
    """The lines of the reply to `get=1` before the peers'."""
    return uapi.format_device_state(device.private_key, listen_port, fwmark)


def format_peers(device: Device, peers: Iterable[Peer]) -> str:
    """The lines of the reply to `get=1` for `peers`, in order; an edge writes a large device's
    reply in slices of its peers, letting its data path have the device between them."""
    prefixes = device.allowed_ips.prefixes
    return "".join(
        [
            uapi.format_peer_state(
                peer.public_key,
                preshared_key=peer.preshared_key,
                endpoint=peer.endpoint,
                last_handshake_time=_seconds_and_nanoseconds(peer.last_handshake_wall),
                tx_bytes=peer.tx_bytes,
                rx_bytes=peer.rx_bytes,
                persistent_keepalive_interval=peer.persistent_keepalive_interval,
                allowed_ips=[uapi.format_packed_prefix(*prefix) for prefix in prefixes(peer)],
            )
            for peer in peers
        ]
    )


def _seconds_and_nanoseconds(wall: float | None) -> tuple[int, int]:
    if wall is None:
        return 0, 0
    seconds = int(wall)
    return seconds, int((wall - seconds) * 1e9)


# stats --------------------------------------------------------------------------------------------


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
