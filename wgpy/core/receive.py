"""The device's receive path (the kernel's receive.c): datagrams from the network, each
transport message opened, replay-checked and routed to the TUN (wg_packet_consume_data and
wg_packet_consume_data_done), anything else handed to receive_handshake.py. With a BatchCipher,
a batch is opened in one call: at once, when it is one in-order run under one live keypair
(`open_run`, `accept_run`), or ahead of the loop that checks each message (`open_ahead`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, NamedTuple

from wgpy.core import ippacket
from wgpy.core.actions import NOTHING, Action, WriteTun
from wgpy.core.bookkeeping import drop, handshake_complete, set_endpoint
from wgpy.core.constants import MESSAGE_TRANSPORT, TRANSPORT_MIN_SIZE
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint, Local
from wgpy.core.events import Event
from wgpy.core.indices import retire
from wgpy.core.keypair import Keypair
from wgpy.core.messages import TRANSPORT_HEADER
from wgpy.core.observer import Direction
from wgpy.core.peer import Peer
from wgpy.core.receive_handshake import receive_handshake_packet
from wgpy.core.send import send_queued_handshake_initiation, send_staged
from wgpy.core.transport import BatchCipher, decrypt_packet

if TYPE_CHECKING:
    from wgpy.core.device import Device

# The transport header's fields for a datagram too short to be a transport message.
_SHORT = (None, 0, 0)
# `receive_datagrams`' messages opened ahead, without a BatchCipher: none.
_NOT_AHEAD = repeat((None, None))


class OpenedRun(NamedTuple):
    """A batch of transport messages to `peer` under `keypair`, from `counter` on in turn, as
    `open_run` opened them: each plaintext, or None where it failed to authenticate."""

    peer: Peer
    keypair: Keypair
    counter: int
    opened: list[bytes | None]


def receive_datagrams(
    device: Device,
    datagrams: Iterable[bytes | memoryview],
    source: Endpoint,
    now: float,
    wall: float,
    local: Local | None = None,
) -> list[Action]:
    """`Device.handle_datagrams`: datagrams from one source to one `local` address, as one
    UDP_GRO receive hands them over, each in turn: a transport message is opened, checked and
    routed, anything else is a handshake message (receive_handshake.py). The bookkeeping that
    follows authenticated transport messages (endpoint and local, timers, byte count, key
    freshness) is done once for each run of them from one peer, which ends before anything else
    is handled. With a BatchCipher, a batch that is one in-order run of them is taken at once
    where the loop would take each (`open_run`, `accept_run`). Whatever the datagrams hold, it
    never raises."""
    actions: list[Action] = []
    packets: list[bytes] = []  # for the TUN
    source_seen: bytes | None = None  # the last inner source looked up,
    owner: Peer | None = None  # and the peer whose allowed IPs hold it
    live: Keypair | None = None  # the last keypair found within its lifetime
    run: Peer | None = None  # the peer of the current run of authenticated messages
    octets = data_packets = 0  # what the run holds
    observer, events, indices = device.observer, device.events, device._indices
    lone = device.lone_cipher  # opens what no batch opened ahead: a lone datagram, mostly
    ahead: Iterable[tuple[Keypair | None, bytes | None]] = _NOT_AHEAD
    if device.batch_cipher is not None:
        datagrams = list(datagrams)
        # A lone datagram (ping, a handshake) costs less opened in line than looked ahead.
        if len(datagrams) > 1:
            opened_run = open_run(device, device.batch_cipher, datagrams, now)
            if opened_run is None:
                ahead = open_ahead(device, device.batch_cipher, datagrams)
            else:
                accepted = accept_run(device, opened_run, datagrams, source, local, now, wall)
                if accepted is not None:
                    return accepted
                ahead = zip(repeat(opened_run.keypair), opened_run.opened)
    for data, (opened_with, opened) in zip(datagrams, ahead, strict=False):
        # The type's word holds its three reserved zero bytes too, as the kernel reads it.
        kind, receiver, counter = (
            TRANSPORT_HEADER.unpack_from(data) if len(data) >= TRANSPORT_MIN_SIZE else _SHORT
        )
        if kind != MESSAGE_TRANSPORT:
            if run is not None:
                actions += settle_run(device, run, octets, data_packets, source, local, now, wall)
                run = None
            actions += receive_handshake_packet(device, bytes(data), source, local, now, wall)
            continue
        peer, keypair = indices.get(receiver, (None, None))
        if peer is None or keypair is None:
            drop(device, DropReason.UNKNOWN_INDEX)
            continue
        if keypair is not live:
            if not keypair.can_receive(now):
                drop(device, DropReason.KEYPAIR_EXPIRED, peer)
                continue
            live = keypair
        if keypair is opened_with:
            plaintext = opened
        elif lone is not None:
            plaintext = lone.open(keypair, data)
        else:
            plaintext = decrypt_packet(keypair, counter, data[16:])
        if plaintext is None:
            drop(device, DropReason.DECRYPT_FAILED, peer)
            continue
        if not keypair.replay.validate(counter):
            drop(device, DropReason.REPLAYED_COUNTER, peer)
            continue
        if peer is not run or keypair is peer.keypairs.next:
            if run is not None:
                actions += settle_run(device, run, octets, data_packets, source, local, now, wall)
            run, octets, data_packets = peer, 0, 0
            if keypair is peer.keypairs.next:
                actions += received_with_next_keypair(device, peer, source, local, now, wall)
        octets += len(data)
        if not plaintext:  # A keepalive.
            if events is not None:
                events(peer.public_key, Event.KEEPALIVE_RECEIVED)
            continue
        data_packets += 1
        found = ippacket.inner_length_and_source(plaintext)
        if found is None:
            drop(device, DropReason.INVALID_INNER_PACKET, peer)
            continue
        length, inner_source = found
        packet = plaintext[:length]  # without its padding (or itself, if it has none)
        # A batch is mostly one flow, or runs of one (a TSO super-packet each), as the
        # sending side: look each run's source up once. (A dict of them cost a lone
        # datagram ~1.5% more CPU instructions.)
        if inner_source != source_seen:
            source_seen, owner = inner_source, device.allowed_ips.lookup(inner_source)
        if owner is not peer:
            drop(device, DropReason.DISALLOWED_SOURCE, peer)
            continue
        if observer is not None:
            observer.inner_packet(peer.public_key, Direction.INBOUND, packet, wall)
        packets.append(packet)
    if run is not None:
        actions += settle_run(device, run, octets, data_packets, source, local, now, wall)
    if packets:
        actions.append(WriteTun(packets))
    return actions


def open_run(
    device: Device, cipher: BatchCipher, datagrams: Sequence[bytes | memoryview], now: float
) -> OpenedRun | None:
    """A batch that is one run of transport messages (`transport_run`) under a live keypair
    that is its peer's current one, whose counters are the next its replay window expects:
    opened in one call, to be taken at once. None for any other batch."""
    count, receiver, counter = cipher.transport_run(datagrams)
    if count != len(datagrams):
        return None
    peer, keypair = device._indices.get(receiver, (None, None))
    if (
        peer is None
        or keypair is None
        or keypair is peer.keypairs.next
        or not keypair.can_receive(now)
        or not keypair.replay.in_order(counter, count)
    ):
        return None
    return OpenedRun(peer, keypair, counter, cipher.open_all(keypair, datagrams))


def accept_run(
    device: Device,
    run: OpenedRun,
    datagrams: Sequence[bytes | memoryview],
    source: Endpoint,
    local: Local | None,
    now: float,
    wall: float,
) -> list[Action] | None:
    """What the loop of `receive_datagrams` does with an opened run in which every message
    is authentic and carries a packet from an address its peer owns, done for the run at
    once: the counters marked seen, the run settled, the packets written. None, with
    nothing done, when one of them needs the loop: a forgery, a keepalive, a malformed or
    disallowed packet."""
    assert device.batch_cipher is not None
    inner = device.batch_cipher.inner_packets(run.opened)
    if inner is None:
        return None
    packets, sources = inner
    peer, lookup = run.peer, device.allowed_ips.lookup
    if any(lookup(inner_source) is not peer for inner_source in sources):
        return None
    # In order, as open_run found, and nothing since has moved the window: it takes them.
    if not run.keypair.replay.validate_run(run.counter, len(packets)):
        return None
    if device.observer is not None:
        for packet in packets:
            device.observer.inner_packet(peer.public_key, Direction.INBOUND, packet, wall)
    octets = sum(map(len, datagrams))
    actions = settle_run(device, peer, octets, len(packets), source, local, now, wall)
    return [*actions, WriteTun(packets)]


def open_ahead(
    device: Device, cipher: BatchCipher, datagrams: Sequence[bytes | memoryview]
) -> list[tuple[Keypair | None, bytes | None]]:
    """Each transport message of `datagrams` opened under its receiver index's keypair, all
    in one call, beside that keypair. `receive_datagrams` takes a result only if it finds the
    same keypair for the message: a handshake earlier in the batch may change the indices."""
    keypairs: list[Keypair | None] = []
    for data in datagrams:
        keypair = None
        if len(data) >= TRANSPORT_MIN_SIZE:
            kind, receiver, _ = TRANSPORT_HEADER.unpack_from(data)
            if kind == MESSAGE_TRANSPORT:
                keypair = device._indices.get(receiver, (None, None))[1]
        keypairs.append(keypair)
    return list(zip(keypairs, cipher.open(keypairs, datagrams), strict=True))


def received_with_next_keypair(
    device: Device, peer: Peer, source: Endpoint, local: Local | None, now: float, wall: float
) -> list[Action]:
    """The initiator sent on our `next` keypair, so it has the keys: the keypair becomes
    current, and what waited for a session goes out on it, to where the initiator now is
    (the kernel's wg_noise_received_with_keypair and what follows it)."""
    set_endpoint(device, peer, source, local)
    retire(device._indices, peer.keypairs.promote_next())
    handshake_complete(device, peer, wall)
    return send_staged(device, peer, now, wall)


def settle_run(
    device: Device,
    peer: Peer,
    octets: int,
    data_packets: int,
    source: Endpoint,
    local: Local | None,
    now: float,
    wall: float,
) -> list[Action]:
    """The bookkeeping of wg_packet_consume_data_done, once for a run of authenticated
    transport messages from `peer` (`octets` long, `data_packets` of them not keepalives).
    Two calls of `data_received` stand for any more: the second only sets
    need_another_keepalive, and so does every one after it."""
    set_endpoint(device, peer, source, local)
    timers = peer.timers
    keypair = peer.keypairs.current
    actions = NOTHING
    if (
        not timers.sent_lastminute_handshake
        and keypair is not None
        and keypair.needs_rekey_on_receive(now)
    ):  # keep_key_fresh: one handshake, the last minute's
        timers.sent_lastminute_handshake = True
        actions = send_queued_handshake_initiation(device, peer, now, wall, is_retry=False)
    timers.any_authenticated_packet_received()
    timers.any_authenticated_packet_traversal(now)
    peer.rx_bytes += octets
    if data_packets:
        timers.data_received(now)
        if data_packets > 1:
            timers.data_received(now)
    return actions
