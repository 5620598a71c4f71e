"""The device's send path (the kernel's send.c): inner packets routed to their peers, staged
while no session can carry them, sealed into transport messages, and the handshake initiations
and keepalives that sessions need.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from wgpy.core import ippacket, noise
from wgpy.core.actions import NOTHING, Action, SendDatagrams
from wgpy.core.bookkeeping import drop, observe_handshake, tell
from wgpy.core.constants import MAX_STAGED_PACKETS, REJECT_AFTER_MESSAGES
from wgpy.core.drops import DropReason
from wgpy.core.events import Event
from wgpy.core.indices import new_index, release_handshake
from wgpy.core.keypair import Keypair
from wgpy.core.keys import generate_private_key
from wgpy.core.observer import Direction
from wgpy.core.peer import Peer
from wgpy.core.transport import encrypt_packets
from wgpy.errors import ProtocolError

if TYPE_CHECKING:
    from wgpy.core.device import Device


def send_tun_packets(
    device: Device, packets: Iterable[bytes], now: float, wall: float
) -> list[Action]:
    """`Device.handle_tun_packets`: outbound inner packets, as one TUN read hands them over,
    each routed by its destination to a peer (the kernel's wg_xmit), each run of them to one
    peer sent together. (With a BatchCipher, a batch whose packets share a destination, as a
    TSO super-packet's segments do, is routed once.)"""
    if device.batch_cipher is not None:
        packets = list(packets)
        if len(packets) > 1:
            # A TSO super-packet's segments, routed at once when they can be sent: the loop
            # below counts the drop of each that cannot.
            destination = device.batch_cipher.common_destination(packets)
            peer = device.allowed_ips.lookup(destination) if destination is not None else None
            if peer is not None and peer.endpoint is not None:
                return stage_and_send(device, peer, packets, now, wall)
    actions: list[Action] = []
    run: Peer | None = None  # the peer of the current run of packets
    batch: list[bytes] = []  # the run's packets
    destination_seen: bytes | None = None
    peer = None
    for packet in packets:
        destination = ippacket.destination(packet)
        # A batch is mostly one flow: route it once. (A packet that cannot be sent is
        # routed, and its drop counted, each time.)
        if destination != destination_seen or peer is None:
            destination_seen = destination
            peer = route(device, destination)
            if peer is None:
                continue
        if peer is run:
            batch.append(packet)
            continue
        if run is not None:
            actions += stage_and_send(device, run, batch, now, wall)
        run, batch = peer, [packet]
    if run is not None:
        actions += stage_and_send(device, run, batch, now, wall)
    return actions


def route(device: Device, destination: bytes | None) -> Peer | None:
    """The peer whose allowed IPs hold `destination`, if it has an endpoint to send to; if
    not, None, and the drop counted (the kernel's wg_xmit)."""
    peer = device.allowed_ips.lookup(destination) if destination is not None else None
    if peer is None:
        drop(device, DropReason.NO_ROUTE)
    elif peer.endpoint is None:
        drop(device, DropReason.NO_ENDPOINT, peer)
        return None
    return peer


def stage_and_send(
    device: Device, peer: Peer, packets: list[bytes], now: float, wall: float
) -> list[Action]:
    """`packets` for `peer`, which has an endpoint, in order behind any staged before them
    (the kernel's wg_xmit stages them, then wg_packet_send_staged_packets sends)."""
    keypair = peer.keypairs.current
    # Nothing waits before them (the slot is read, not the property that makes the queue,
    # which costs a lone packet ~0.15 us): they go at once, without the staging queue. (On
    # a ping's lone packet, a cold CPU spends ~20 us more through the queue.)
    if not peer._staged and keypair is not None and keypair.can_send(now, len(packets)):
        actions = send_packets(device, peer, keypair, packets, now, wall)
        if keypair.needs_rekey_on_send(now):  # the kernel's keep_key_fresh
            actions += send_queued_handshake_initiation(device, peer, now, wall, is_retry=False)
        return actions
    actions = []
    staged = peer.staged
    for packet in packets:
        if len(staged) == MAX_STAGED_PACKETS:
            actions += send_staged(device, peer, now, wall)
            if len(staged) == MAX_STAGED_PACKETS:
                drop(device, DropReason.STAGED_OVERFLOW, peer)  # The oldest makes room.
        staged.append(packet)
    return actions + send_staged(device, peer, now, wall)


def send_staged(device: Device, peer: Peer, now: float, wall: float) -> list[Action]:
    """What waits for a session goes out on the current one, or a handshake makes one (the
    kernel's wg_packet_send_staged_packets)."""
    keypair = peer.keypairs.current
    if keypair is None or not keypair.can_send(now):
        return send_queued_handshake_initiation(device, peer, now, wall, is_retry=False)
    if peer.endpoint is None:
        for _ in range(len(peer.staged)):
            drop(device, DropReason.NO_ENDPOINT, peer)
        peer.staged.clear()
        return NOTHING
    staged = peer.staged
    count = min(len(staged), REJECT_AFTER_MESSAGES - keypair.send_counter)
    packets = [staged.popleft() for _ in range(count)]
    actions = send_packets(device, peer, keypair, packets, now, wall)
    if staged:  # The counter ran out mid-batch: the rest waits for a new session.
        return actions + send_queued_handshake_initiation(device, peer, now, wall, False)
    if keypair.needs_rekey_on_send(now):  # the kernel's keep_key_fresh
        actions += send_queued_handshake_initiation(device, peer, now, wall, is_retry=False)
    return actions


def send_packets(
    device: Device, peer: Peer, keypair: Keypair, packets: list[bytes], now: float, wall: float
) -> list[Action]:
    """Encrypt `packets` (an empty one is a keepalive) under `keypair`, which can send that
    many, to the peer's endpoint, which is known."""
    if len(packets) == 1 and device.lone_cipher is not None:
        messages = [device.lone_cipher.seal(keypair, packets[0], device.mtu)]
    elif device.batch_cipher is None or len(packets) == 1:  # one costs less without the call
        messages = encrypt_packets(keypair, packets, device.mtu)
    else:
        messages = device.batch_cipher.seal(keypair, packets, device.mtu)
    if device.observer is not None:
        observe_sent(device, peer, packets, wall)
    endpoint = peer.endpoint
    assert endpoint is not None
    actions: list[Action] = [SendDatagrams(messages, endpoint, peer.local)]
    peer.tx_bytes += sum(map(len, messages))
    timers = peer.timers
    timers.any_authenticated_packet_traversal(now)
    timers.any_authenticated_packet_sent()
    if any(packets):
        timers.data_sent(now, device._jitter)
    return actions


def send_keepalive(device: Device, peer: Peer, now: float, wall: float) -> list[Action]:
    """Send what is staged, or an empty packet when nothing is."""
    if not peer.staged:
        peer.staged.append(b"")
        tell(device, peer, Event.KEEPALIVE_SENT)
    return send_staged(device, peer, now, wall)


def send_queued_handshake_initiation(
    device: Device, peer: Peer, now: float, wall: float, is_retry: bool
) -> list[Action]:
    """A handshake initiation to the peer, unless one went out too recently (the kernel's
    wg_packet_send_queued_handshake_initiation); a first try starts the count of attempts."""
    if not is_retry:
        peer.timers.handshake_attempts = 0
    if device._static_private is None or not peer.handshake.may_initiate(now):
        return NOTHING
    indices = device._indices
    release_handshake(indices, peer)
    local_index = new_index(indices, device.rng, peer, None)
    ephemeral = generate_private_key(device.rng)
    initiator = noise.Initiator(
        device._static_private, peer.public_key, peer.preshared_key, ephemeral
    )
    try:
        message = peer.handshake.create_initiation(initiator, local_index, wall, now)
    except ProtocolError:  # The peer's public key is a low-order point.
        release_handshake(indices, peer)
        return drop(device, DropReason.HANDSHAKE_INVALID, peer)
    data = peer.cookie.add_macs(message.serialize(), now)
    if device.observer is not None:
        observe_handshake(device, peer, ephemeral, wall)
    peer.initiations_sent += 1
    timers = peer.timers
    timers.any_authenticated_packet_traversal(now)
    timers.any_authenticated_packet_sent()
    timers.handshake_initiated(now, device._jitter())
    tell(device, peer, Event.INITIATION_SENT)
    return send_handshake(peer, data)


def send_handshake(peer: Peer, data: bytes) -> list[Action]:
    """A handshake message to the peer's endpoint, if it has one."""
    if peer.endpoint is None:
        return NOTHING
    peer.tx_bytes += len(data)
    return [SendDatagrams([data], peer.endpoint, peer.local)]


def observe_sent(device: Device, peer: Peer, packets: list[bytes], wall: float) -> None:
    assert device.observer is not None
    for packet in packets:
        if packet:  # not a keepalive
            device.observer.inner_packet(peer.public_key, Direction.OUTBOUND, packet, wall)
