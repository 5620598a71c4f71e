"""The device's handshake messages received (the kernel's receive.c wg_receive_handshake_packet):
cookie replies, initiations and responses, their MACs checked and, under load, their cookies; an
initiation from an unknown key held for admission when the device asks about such keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wgpy.core import noise
from wgpy.core.actions import NOTHING, Action, PeerWanted, SendDatagrams
from wgpy.core.admission import Asked
from wgpy.core.bookkeeping import drop, handshake_complete, observe_handshake, set_endpoint, tell
from wgpy.core.constants import (
    INITIATION_SIZE,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_TRANSPORT,
    RESPONSE_SIZE,
    UNDER_LOAD_AFTER_TIME,
)
from wgpy.core.cookie import MacState
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint, Local, source_bytes
from wgpy.core.events import Event
from wgpy.core.indices import add_keypair, new_index, release_handshake
from wgpy.core.keypair import Keypair
from wgpy.core.keys import generate_private_key
from wgpy.core.messages import CookieReply, Initiation, Response, message_type
from wgpy.core.peer import Peer
from wgpy.core.send import send_handshake, send_keepalive
from wgpy.errors import ProtocolError

if TYPE_CHECKING:
    from wgpy.core.device import Device

# Why an initiation from an unknown key was not held, when it was not.
_NOT_ASKED = {
    Asked.REFUSED: DropReason.PEER_REFUSED,
    Asked.FULL: DropReason.ADMISSIONS_FULL,
    Asked.RATE_LIMITED: DropReason.ADMISSIONS_RATE_LIMITED,
}


def receive_handshake_packet(
    device: Device, data: bytes, source: Endpoint, local: Local | None, now: float, wall: float
) -> list[Action]:
    """Any datagram but a transport message: a cookie reply, an initiation or a response
    (the kernel's wg_receive_handshake_packet), or a drop for the wrong length or type (as
    its prepare_skb_header)."""
    kind = message_type(data)
    if kind == MESSAGE_COOKIE_REPLY:
        return receive_cookie_reply(device, data, now)
    if kind is None:
        return drop(device, DropReason.UNKNOWN_TYPE)
    if kind == MESSAGE_TRANSPORT:  # shorter than its header and tag
        return drop(device, DropReason.BAD_LENGTH)
    if len(data) != (INITIATION_SIZE if kind == MESSAGE_INITIATION else RESPONSE_SIZE):
        return drop(device, DropReason.BAD_LENGTH)
    checker = device._cookie_checker
    if checker is None:
        return drop(device, DropReason.NO_PRIVATE_KEY)
    load = under_load(device, now)
    source_id = source_bytes(source)
    state = checker.check(data, source_id, now, check_cookie=load)
    if state is MacState.INVALID_MAC:
        return drop(device, DropReason.INVALID_MAC)
    if load:
        if state is MacState.VALID_MAC_BUT_NO_COOKIE:
            sender = int.from_bytes(data[4:8], "little")
            reply = checker.make_reply(data, sender, source_id, now)
            device.cookie_replies_sent += 1
            drop(device, DropReason.COOKIE_REQUIRED)
            return [SendDatagrams([reply.serialize()], source, local)]
        if not device._ratelimiter.allow(source_id[:-2], now):
            return drop(device, DropReason.RATE_LIMITED)
    if kind == MESSAGE_INITIATION:
        return receive_initiation(device, Initiation.parse(data), source, local, now, wall)
    return receive_response(device, Response.parse(data), source, local, now, wall)


def under_load(device: Device, now: float) -> bool:
    """Under load while the last `threshold` handshake messages arrived within one second,
    and for UNDER_LOAD_AFTER_TIME after that (the kernel's and wireguard-go's rule)."""
    recent = device._recent_handshakes
    recent.append(now)
    if len(recent) == recent.maxlen and now - recent[0] < 1.0:
        device._last_under_load = now
        return True
    return now - device._last_under_load < UNDER_LOAD_AFTER_TIME


def receive_initiation(
    device: Device,
    message: Initiation,
    source: Endpoint,
    local: Local | None,
    now: float,
    wall: float,
) -> list[Action]:
    """An initiation whose MACs passed: answered with a response and a new session, the
    peer's next keypair until the initiator sends on it."""
    assert device._static_private is not None
    ephemeral = generate_private_key(device.rng)
    responder = noise.Responder(device._static_private, ephemeral)
    try:
        static, timestamp = responder.read_initiation(message.noise_body)
    except ProtocolError:
        return drop(device, DropReason.HANDSHAKE_INVALID)
    peer = device.peers.get(static)
    if peer is None:
        return unknown_peer(device, static, message, source, local, now, wall)
    rejected = peer.handshake.check_initiation(timestamp, now)
    if rejected is not None:
        return drop(device, rejected, peer)
    try:
        body, keys = responder.write_response(peer.preshared_key)
    except ProtocolError:
        return drop(device, DropReason.HANDSHAKE_INVALID, peer)
    if device.observer is not None:
        observe_handshake(device, peer, ephemeral, wall)
    set_endpoint(device, peer, source, local)
    tell(device, peer, Event.INITIATION_RECEIVED)
    # Answering replaces any initiation of ours in flight, as in the kernel.
    indices = device._indices
    release_handshake(indices, peer)
    keypair = Keypair.from_keys(keys, 0, message.sender, False, now)
    keypair.local_index = new_index(indices, device.rng, peer, keypair)
    response = Response(keypair.local_index, message.sender, body[:32], body[32:])
    data = peer.cookie.add_macs(response.serialize(), now)
    add_keypair(indices, peer, keypair)
    peer.handshake.last_sent = now
    timers = peer.timers
    timers.session_derived(now)
    timers.any_authenticated_packet_traversal(now)
    timers.any_authenticated_packet_sent()
    authenticated_handshake_received(peer, INITIATION_SIZE, now)
    tell(device, peer, Event.RESPONSE_SENT)
    return send_handshake(peer, data)


def unknown_peer(
    device: Device,
    public_key_: bytes,
    message: Initiation,
    source: Endpoint,
    local: Local | None,
    now: float,
    wall: float,
) -> list[Action]:
    """Hold the initiation and ask about its key, if the device asks about unknown keys."""
    admissions = device._admissions
    if admissions is None:
        return drop(device, DropReason.UNKNOWN_PEER)
    asked = admissions.hold(public_key_, message, source, local, now)
    if asked is not Asked.NEW:
        return drop(device, _NOT_ASKED[asked]) if asked in _NOT_ASKED else NOTHING
    if device._peer_lookup is None:
        return [PeerWanted(public_key_, source)]
    settings = device._peer_lookup(public_key_, source)
    if settings is not None:
        try:
            return device.admit_peer(public_key_, settings, now, wall)
        except ValueError:
            pass
    device.refuse_peer(public_key_, now)
    return drop(device, DropReason.PEER_REFUSED)


def receive_response(
    device: Device,
    message: Response,
    source: Endpoint,
    local: Local | None,
    now: float,
    wall: float,
) -> list[Action]:
    """A response to our initiation in flight: its session becomes the current one, confirmed
    to the responder by what was staged or a keepalive."""
    entry = device._indices.get(message.receiver)
    if entry is None or entry[1] is not None or not entry[0].handshake.answers(message):
        return drop(device, DropReason.UNKNOWN_INDEX)
    peer = entry[0]
    try:
        keys = peer.handshake.consume_response(message)
    except ProtocolError:
        return drop(device, DropReason.HANDSHAKE_INVALID, peer)
    set_endpoint(device, peer, source, local)
    tell(device, peer, Event.RESPONSE_RECEIVED)
    keypair = Keypair.from_keys(keys, message.receiver, message.sender, True, now)
    device._indices[message.receiver] = (peer, keypair)
    add_keypair(device._indices, peer, keypair)
    peer.timers.session_derived(now)
    handshake_complete(device, peer, wall)
    authenticated_handshake_received(peer, RESPONSE_SIZE, now)
    # Either the staged packets or a keepalive confirm the session to the responder.
    return send_keepalive(device, peer, now, wall)


def authenticated_handshake_received(peer: Peer, size: int, now: float) -> None:
    peer.rx_bytes += size
    peer.timers.any_authenticated_packet_received()
    peer.timers.any_authenticated_packet_traversal(now)


def receive_cookie_reply(device: Device, data: bytes, now: float) -> list[Action]:
    """A cookie reply to our handshake message: its cookie goes on our next one's mac2."""
    try:
        reply = CookieReply.parse(data)
    except ProtocolError:
        return drop(device, DropReason.BAD_LENGTH)
    entry = device._indices.get(reply.receiver)
    if entry is None:
        return drop(device, DropReason.UNKNOWN_INDEX)
    if not entry[0].cookie.consume_reply(reply, now):
        return drop(device, DropReason.INVALID_COOKIE_REPLY, entry[0])
    entry[0].cookie_replies_received += 1
    return NOTHING
