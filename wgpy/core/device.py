"""The sans-IO WireGuard device: packets and datagrams in, actions out.

The I/O edge calls `handle_tun_packet`, `handle_datagram` and `handle_timer`, carries out the
actions they return, and sleeps until `next_timer()`. Every entry point takes `now` (monotonic
seconds) and `wall` (Unix seconds, for TAI64N and the last-handshake time); randomness comes from
the `rng` given at construction. Nothing from the network raises: every rejected datagram is counted
in `drops` by reason, and in the peer's own `drops` once the peer is known.

The flow follows the kernel's send.c, receive.c and timers.c, whose function names appear here.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from wgpy.core import ippacket, noise
from wgpy.core.allowedips import AllowedIPs
from wgpy.core.constants import (
    DEFAULT_MTU,
    INITIATION_SIZE,
    MAX_STAGED_PACKETS,
    MAX_TIMER_HANDSHAKES,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    REJECT_AFTER_MESSAGES,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_ON_RECEIVE_TIME,
    REKEY_TIMEOUT_JITTER_MAX,
    RESPONSE_SIZE,
    TRANSPORT_MIN_SIZE,
    UNDER_LOAD_AFTER_TIME,
    UNDER_LOAD_THRESHOLD,
)
from wgpy.core.cookie import CookieChecker, MacState
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint
from wgpy.core.keypair import Keypair
from wgpy.core.keys import generate_private_key, public_key
from wgpy.core.messages import TRANSPORT_HEADER, CookieReply, Initiation, Response, message_type
from wgpy.core.observer import Direction, HandshakeSecrets, Observer
from wgpy.core.peer import Peer
from wgpy.core.ratelimiter import RateLimiter
from wgpy.core.timers import Timer, TimerQueue
from wgpy.core.transport import decrypt_packet, encrypt_packets
from wgpy.errors import ProtocolError

Rng = Callable[[int], bytes]

# The most peers whose due timers one `handle_timer` call runs. What it runs may each be a
# handshake initiation, ~0.5 ms of Python: 32 of them hold the device for ~15 ms at most.
TIMER_PEERS_PER_CALL = 32


# Actions carry batches, as the I/O edges move them (a UDP_SEGMENT send per endpoint, coalesced
# writes to the TUN): a batch of packets makes one action, not one per packet, which saves the
# data path about 4% of its work per super-packet. They are NamedTuples, not frozen dataclasses,
# which are built several times slower.
class SendDatagrams(NamedTuple):
    """Send `datagrams` to `endpoint`, in order."""

    datagrams: list[bytes]
    endpoint: Endpoint


class WriteTun(NamedTuple):
    """Write `packets` to the TUN, in order."""

    packets: list[bytes]


Action = SendDatagrams | WriteTun
NOTHING: list[Action] = []


def datagrams_of(actions: Iterable[Action]) -> list[bytes]:
    """The datagrams `actions` send, in order, whatever their endpoints."""
    return [data for a in actions if isinstance(a, SendDatagrams) for data in a.datagrams]


def packets_of(actions: Iterable[Action]) -> list[bytes]:
    """The packets `actions` write to the TUN, in order."""
    return [packet for a in actions if isinstance(a, WriteTun) for packet in a.packets]


@dataclass(slots=True)
class _Received:
    """What a run of authenticated transport messages from one peer adds up to."""

    octets: int = 0
    data_packets: int = 0


def source_bytes(endpoint: Endpoint) -> bytes:
    """An endpoint as the cookie MAC covers it: address bytes, then the port big-endian."""
    return ipaddress.ip_address(endpoint[0]).packed + endpoint[1].to_bytes(2, "big")


class Device:
    def __init__(
        self,
        rng: Rng,
        private_key: bytes | None = None,
        *,
        mtu: int = DEFAULT_MTU,
        under_load_threshold: int = UNDER_LOAD_THRESHOLD,
    ) -> None:
        self.rng = rng
        # The timers' jitter keeps peers from rekeying in step; it needs no secrecy, so it
        # comes from a generator seeded once, not from a system call for every packet sent.
        self._jitter_source = random.Random(rng(8))
        self.mtu = mtu
        self.peers: dict[bytes, Peer] = {}
        self.allowed_ips: AllowedIPs[Peer] = AllowedIPs()
        self.drops: Counter[DropReason] = Counter()
        self.cookie_replies_sent = 0
        # Receiver index -> the peer and its keypair, or None for a handshake in flight.
        self._indices: dict[int, tuple[Peer, Keypair | None]] = {}
        self._static_private: bytes | None = None
        self.static_public: bytes | None = None
        self._cookie_checker: CookieChecker | None = None
        # Arrival times of the last `under_load_threshold` handshake messages: the backlog.
        self._recent_handshakes: deque[float] = deque(maxlen=max(1, under_load_threshold))
        self._last_under_load = float("-inf")
        self._ratelimiter = RateLimiter()
        self._timers = TimerQueue()
        # Sees every inner packet sent and received, and every handshake's secrets, while the
        # I/O edge runs a capture; None (one attribute check per batch) the rest of the time.
        self.observer: Observer | None = None
        self.set_private_key(private_key)

    # -- configuration ---------------------------------------------------------------------

    @property
    def private_key(self) -> bytes | None:
        return self._static_private

    def set_private_key(self, private_key: bytes | None) -> None:
        """A new identity invalidates every session; a peer with our own public key is removed,
        as in wireguard-go and the kernel."""
        if private_key == self._static_private:
            return
        self._static_private = private_key
        self.static_public = public_key(private_key) if private_key else None
        self._cookie_checker = (
            CookieChecker(self.static_public, self.rng) if self.static_public else None
        )
        if self.static_public in self.peers:
            self.remove_peer(self.static_public)
        for peer in self.peers.values():
            self._zero_key_material(peer)

    def add_peer(
        self,
        public_key_: bytes,
        *,
        preshared_key: bytes | None = None,
        endpoint: Endpoint | None = None,
        persistent_keepalive: int = 0,
        now: float = 0.0,
    ) -> Peer:
        peer = Peer(public_key_, self._timers, preshared_key, endpoint)
        self.peers[public_key_] = peer
        self.set_persistent_keepalive(peer, persistent_keepalive, now)
        return peer

    def set_persistent_keepalive(self, peer: Peer, seconds: int, now: float) -> None:
        """Turning it on sends a keepalive at once (at the next `handle_timer`), as the kernel."""
        peer.timers.set_persistent_keepalive(seconds, now)

    def remove_peer(self, public_key_: bytes) -> None:
        peer = self.peers.pop(public_key_, None)
        if peer is None:
            return
        self._zero_key_material(peer)
        self.allowed_ips.remove_peer(peer)
        peer.timers.stop()
        peer.staged.clear()

    # -- entry points ----------------------------------------------------------------------

    def handle_tun_packet(self, packet: bytes, now: float, wall: float) -> list[Action]:
        """An outbound inner packet: route it by destination to a peer, then encrypt or stage."""
        destination = ippacket.destination(packet)
        peer = self.allowed_ips.lookup(destination) if destination is not None else None
        if peer is None:
            return self._drop(DropReason.NO_ROUTE)
        if peer.endpoint is None:
            return self._drop(DropReason.NO_ENDPOINT, peer)
        keypair = peer.keypairs.current
        if not peer.staged and keypair is not None and keypair.can_send(now):
            # Nothing waits before it: the packet goes at once, without the staging queue. (It
            # is a ping's lone packet, on which a cold CPU spends ~20 us more through the queue.)
            actions = self._send_packets(peer, keypair, [packet], now, wall)
            return actions + self._keep_key_fresh_on_send(peer, keypair, now, wall)
        if len(peer.staged) == MAX_STAGED_PACKETS:
            self._drop(DropReason.STAGED_OVERFLOW, peer)
        peer.staged.append(packet)
        return self._send_staged(peer, now, wall)

    def handle_datagram(
        self, data: bytes, source: Endpoint, now: float, wall: float
    ) -> list[Action]:
        """A datagram from the network. Whatever it holds, it never raises."""
        kind = message_type(data)
        if kind == MESSAGE_TRANSPORT:
            return self._receive_transport(data, source, now, wall)
        if kind in (MESSAGE_INITIATION, MESSAGE_RESPONSE):
            return self._receive_handshake(data, kind, source, now, wall)
        if kind == MESSAGE_COOKIE_REPLY:
            return self._receive_cookie_reply(data, now)
        return self._drop(DropReason.UNKNOWN_TYPE)

    def handle_tun_packets(self, packets: Iterable[bytes], now: float, wall: float) -> list[Action]:
        """Outbound inner packets in a batch: as `handle_tun_packet` on each in turn, except that
        each peer's packets are staged first and sent together, so that its timers and the
        freshness of its key are looked at once per batch instead of once per packet."""
        actions: list[Action] = []
        ready: dict[Peer, None] = {}  # in order of first packet
        destination_seen: bytes | None = None
        peer: Peer | None = None
        for packet in packets:
            destination = ippacket.destination(packet)
            if destination != destination_seen:  # A batch is mostly one flow: route it once.
                destination_seen = destination
                peer = self.allowed_ips.lookup(destination) if destination is not None else None
            if peer is None:
                self._drop(DropReason.NO_ROUTE)
                continue
            if peer.endpoint is None:
                self._drop(DropReason.NO_ENDPOINT, peer)
                continue
            if len(peer.staged) == MAX_STAGED_PACKETS:
                actions += self._send_staged(peer, now, wall)
                if len(peer.staged) == MAX_STAGED_PACKETS:
                    self._drop(DropReason.STAGED_OVERFLOW, peer)
            peer.staged.append(packet)
            ready[peer] = None
        for peer in ready:
            actions += self._send_staged(peer, now, wall)
        return actions

    def handle_datagrams(
        self, datagrams: Iterable[bytes | memoryview], source: Endpoint, now: float, wall: float
    ) -> list[Action]:
        """Datagrams from one source in a batch, as one UDP_GRO receive hands them over: as
        `handle_datagram` on each in turn, except that the bookkeeping that follows each
        authenticated transport message (endpoint, timers, byte count, key freshness) is done
        once per peer for each run of them. Whatever they hold, it never raises."""
        actions: list[Action] = []
        packets: list[bytes] = []  # for the TUN, since the last action
        received: dict[Peer, _Received] = {}
        routes: dict[bytes, Peer | None] = {}  # inner source -> its peer, for the batch
        live: Keypair | None = None  # the last keypair found within its lifetime
        observer = self.observer
        for data in datagrams:
            peer = keypair = None
            if len(data) >= TRANSPORT_MIN_SIZE:
                # The type's word holds its three reserved zero bytes too, as the kernel reads it.
                kind, receiver, counter = TRANSPORT_HEADER.unpack_from(data)
                if kind == MESSAGE_TRANSPORT:
                    peer, keypair = self._indices.get(receiver, (None, None))
            if peer is None or keypair is None or keypair is peer.keypairs.next:
                # Anything else, and a first message on a new session, take the path of one.
                if packets:
                    actions.append(WriteTun(packets))
                    packets = []
                actions += self._settle_received(received, source, now, wall)
                actions += self.handle_datagram(bytes(data), source, now, wall)
                continue
            if keypair is not live:
                if not keypair.can_receive(now):
                    self._drop(DropReason.KEYPAIR_EXPIRED, peer)
                    continue
                live = keypair
            plaintext = decrypt_packet(keypair, counter, data[16:])
            if plaintext is None:
                self._drop(DropReason.DECRYPT_FAILED, peer)
                continue
            if not keypair.replay.validate(counter):
                self._drop(DropReason.REPLAYED_COUNTER, peer)
                continue
            tally = received.get(peer)
            if tally is None:
                tally = received[peer] = _Received()
            tally.octets += len(data)
            if not plaintext:
                continue  # A keepalive.
            tally.data_packets += 1
            found = ippacket.inner_length_and_source(plaintext)
            if found is None:
                self._drop(DropReason.INVALID_INNER_PACKET, peer)
                continue
            length, inner_source = found
            packet = plaintext[:length] if length < len(plaintext) else plaintext
            if inner_source not in routes:
                routes[inner_source] = self.allowed_ips.lookup(inner_source)
            if routes[inner_source] is not peer:
                self._drop(DropReason.DISALLOWED_SOURCE, peer)
                continue
            if observer is not None:
                observer.inner_packet(peer.public_key, Direction.INBOUND, packet, wall)
            packets.append(packet)
        if packets:
            actions.append(WriteTun(packets))
        actions += self._settle_received(received, source, now, wall)
        return actions

    def handle_timer(self, now: float, wall: float) -> list[Action]:
        """Run the timers due at `now`, of at most TIMER_PEERS_PER_CALL peers: the caller holds
        the device meanwhile, and a burst of due handshakes (a set of many peers turning on
        their keepalives) would hold it for seconds. `next_timer()` says when to call again,
        which for what is left is at once."""
        actions: list[Action] = []
        for _ in range(TIMER_PEERS_PER_CALL):
            timers = self._timers.pop_due(now)
            if timers is None:
                break
            peer = self.peers[timers.public_key]  # A removed peer's timers are off the queue.
            for timer in timers.expired(now):
                actions += self._on_timer(peer, timer, now, wall)
            timers.file()
        return actions

    def next_timer(self) -> float | None:
        return self._timers.next_deadline()

    # -- sending (the kernel's send.c) -----------------------------------------------------

    def _send_staged(self, peer: Peer, now: float, wall: float) -> list[Action]:
        keypair = peer.keypairs.current
        if keypair is None or not keypair.can_send(now):
            return self._send_queued_handshake_initiation(peer, now, wall, is_retry=False)
        if peer.endpoint is None:
            for _ in range(len(peer.staged)):
                self._drop(DropReason.NO_ENDPOINT, peer)
            peer.staged.clear()
            return NOTHING
        staged = peer.staged
        count = min(len(staged), REJECT_AFTER_MESSAGES - keypair.send_counter)
        packets = [staged.popleft() for _ in range(count)]
        actions = self._send_packets(peer, keypair, packets, now, wall)
        if staged:  # The counter ran out mid-batch: the rest waits for a new session.
            return actions + self._send_queued_handshake_initiation(peer, now, wall, False)
        return actions + self._keep_key_fresh_on_send(peer, keypair, now, wall)

    def _send_packets(
        self, peer: Peer, keypair: Keypair, packets: list[bytes], now: float, wall: float
    ) -> list[Action]:
        """Encrypt `packets` (an empty one is a keepalive) under `keypair`, which can send that
        many, to the peer's endpoint, which is known."""
        messages = encrypt_packets(keypair, packets, self.mtu)
        if self.observer is not None:
            self._observe_sent(peer, packets, wall)
        endpoint = peer.endpoint
        assert endpoint is not None
        actions: list[Action] = [SendDatagrams(messages, endpoint)]
        peer.tx_bytes += sum(map(len, messages))
        timers = peer.timers
        timers.any_authenticated_packet_traversal(now)
        timers.any_authenticated_packet_sent()
        if any(packets):
            timers.data_sent(now, self._jitter)
        return actions

    def _keep_key_fresh_on_send(
        self, peer: Peer, keypair: Keypair, now: float, wall: float
    ) -> list[Action]:
        if keypair.send_counter > REKEY_AFTER_MESSAGES or (
            keypair.is_initiator and now - keypair.created >= REKEY_AFTER_TIME
        ):
            return self._send_queued_handshake_initiation(peer, now, wall, is_retry=False)
        return NOTHING

    def _send_keepalive(self, peer: Peer, now: float, wall: float) -> list[Action]:
        """Send what is staged, or an empty packet when nothing is."""
        if not peer.staged:
            peer.staged.append(b"")
        return self._send_staged(peer, now, wall)

    def _send_queued_handshake_initiation(
        self, peer: Peer, now: float, wall: float, is_retry: bool
    ) -> list[Action]:
        if not is_retry:
            peer.timers.handshake_attempts = 0
        if self._static_private is None or not peer.handshake.may_initiate(now):
            return NOTHING
        self._release_handshake(peer)
        local_index = self._new_index(peer, None)
        ephemeral = generate_private_key(self.rng)
        initiator = noise.Initiator(
            self._static_private, peer.public_key, peer.preshared_key, ephemeral
        )
        try:
            message = peer.handshake.create_initiation(initiator, local_index, wall, now)
        except ProtocolError:  # The peer's public key is a low-order point.
            self._release_handshake(peer)
            return self._drop(DropReason.HANDSHAKE_INVALID, peer)
        data = peer.cookie.add_macs(message.serialize(), now)
        if self.observer is not None:
            self._observe_handshake(peer, ephemeral, wall)
        peer.initiations_sent += 1
        timers = peer.timers
        timers.any_authenticated_packet_traversal(now)
        timers.any_authenticated_packet_sent()
        timers.handshake_initiated(now, self._jitter())
        return self._send_handshake(peer, data)

    def _send_handshake(self, peer: Peer, data: bytes) -> list[Action]:
        if peer.endpoint is None:
            return NOTHING
        peer.tx_bytes += len(data)
        return [SendDatagrams([data], peer.endpoint)]

    # -- receiving (the kernel's receive.c) ------------------------------------------------

    def _receive_handshake(
        self, data: bytes, kind: int, source: Endpoint, now: float, wall: float
    ) -> list[Action]:
        if len(data) != (INITIATION_SIZE if kind == MESSAGE_INITIATION else RESPONSE_SIZE):
            return self._drop(DropReason.BAD_LENGTH)
        checker = self._cookie_checker
        if checker is None:
            return self._drop(DropReason.NO_PRIVATE_KEY)
        under_load = self._under_load(now)
        source_id = source_bytes(source)
        state = checker.check(data, source_id, now, check_cookie=under_load)
        if state is MacState.INVALID_MAC:
            return self._drop(DropReason.INVALID_MAC)
        if under_load:
            if state is MacState.VALID_MAC_BUT_NO_COOKIE:
                sender = int.from_bytes(data[4:8], "little")
                reply = checker.make_reply(data, sender, source_id, now)
                self.cookie_replies_sent += 1
                self._drop(DropReason.COOKIE_REQUIRED)
                return [SendDatagrams([reply.serialize()], source)]
            if not self._ratelimiter.allow(source_id[:-2], now):
                return self._drop(DropReason.RATE_LIMITED)
        if kind == MESSAGE_INITIATION:
            return self._receive_initiation(Initiation.parse(data), source, now, wall)
        return self._receive_response(Response.parse(data), source, now, wall)

    def _under_load(self, now: float) -> bool:
        """Under load while the last `threshold` handshake messages arrived within one second,
        and for UNDER_LOAD_AFTER_TIME after that (the kernel's and wireguard-go's rule)."""
        recent = self._recent_handshakes
        recent.append(now)
        if len(recent) == recent.maxlen and now - recent[0] < 1.0:
            self._last_under_load = now
            return True
        return now - self._last_under_load < UNDER_LOAD_AFTER_TIME

    def _receive_initiation(
        self, message: Initiation, source: Endpoint, now: float, wall: float
    ) -> list[Action]:
        assert self._static_private is not None
        ephemeral = generate_private_key(self.rng)
        responder = noise.Responder(self._static_private, ephemeral)
        try:
            static, timestamp = responder.read_initiation(message.noise_body)
        except ProtocolError:
            return self._drop(DropReason.HANDSHAKE_INVALID)
        peer = self.peers.get(static)
        if peer is None:
            return self._drop(DropReason.UNKNOWN_PEER)
        rejected = peer.handshake.check_initiation(timestamp, now)
        if rejected is not None:
            return self._drop(rejected, peer)
        try:
            body, keys = responder.write_response(peer.preshared_key)
        except ProtocolError:
            return self._drop(DropReason.HANDSHAKE_INVALID, peer)
        if self.observer is not None:
            self._observe_handshake(peer, ephemeral, wall)
        peer.endpoint = source
        # Answering replaces any initiation of ours in flight, as in the kernel.
        self._release_handshake(peer)
        keypair = Keypair.from_keys(keys, 0, message.sender, False, now)
        keypair.local_index = self._new_index(peer, keypair)
        response = Response(keypair.local_index, message.sender, body[:32], body[32:])
        data = peer.cookie.add_macs(response.serialize(), now)
        self._add_keypair(peer, keypair)
        peer.handshake.last_sent = now
        timers = peer.timers
        timers.session_derived(now)
        timers.any_authenticated_packet_traversal(now)
        timers.any_authenticated_packet_sent()
        self._authenticated_handshake_received(peer, INITIATION_SIZE, now)
        return self._send_handshake(peer, data)

    def _receive_response(
        self, message: Response, source: Endpoint, now: float, wall: float
    ) -> list[Action]:
        entry = self._indices.get(message.receiver)
        if entry is None or entry[1] is not None or not entry[0].handshake.answers(message):
            return self._drop(DropReason.UNKNOWN_INDEX)
        peer = entry[0]
        try:
            keys = peer.handshake.consume_response(message)
        except ProtocolError:
            return self._drop(DropReason.HANDSHAKE_INVALID, peer)
        peer.endpoint = source
        keypair = Keypair.from_keys(keys, message.receiver, message.sender, True, now)
        self._indices[message.receiver] = (peer, keypair)
        self._add_keypair(peer, keypair)
        peer.timers.session_derived(now)
        self._handshake_complete(peer, wall)
        self._authenticated_handshake_received(peer, RESPONSE_SIZE, now)
        # Either the staged packets or a keepalive confirm the session to the responder.
        return self._send_keepalive(peer, now, wall)

    def _authenticated_handshake_received(self, peer: Peer, size: int, now: float) -> None:
        peer.rx_bytes += size
        peer.timers.any_authenticated_packet_received()
        peer.timers.any_authenticated_packet_traversal(now)

    def _receive_cookie_reply(self, data: bytes, now: float) -> list[Action]:
        try:
            reply = CookieReply.parse(data)
        except ProtocolError:
            return self._drop(DropReason.BAD_LENGTH)
        entry = self._indices.get(reply.receiver)
        if entry is None:
            return self._drop(DropReason.UNKNOWN_INDEX)
        if not entry[0].cookie.consume_reply(reply, now):
            return self._drop(DropReason.INVALID_COOKIE_REPLY, entry[0])
        entry[0].cookie_replies_received += 1
        return NOTHING

    def _receive_transport(
        self, data: bytes, source: Endpoint, now: float, wall: float
    ) -> list[Action]:
        if len(data) < TRANSPORT_MIN_SIZE:
            return self._drop(DropReason.BAD_LENGTH)
        _, receiver, counter = TRANSPORT_HEADER.unpack_from(data)
        peer, keypair = self._indices.get(receiver, (None, None))
        if peer is None or keypair is None:
            return self._drop(DropReason.UNKNOWN_INDEX)
        if not keypair.can_receive(now):
            return self._drop(DropReason.KEYPAIR_EXPIRED, peer)
        plaintext = decrypt_packet(keypair, counter, data[16:])
        if plaintext is None:
            return self._drop(DropReason.DECRYPT_FAILED, peer)
        if not keypair.replay.validate(counter):
            return self._drop(DropReason.REPLAYED_COUNTER, peer)
        peer.endpoint = source
        actions: list[Action] = []
        if keypair is peer.keypairs.next:
            self._retire(peer.keypairs.promote_next())
            self._handshake_complete(peer, wall)
            actions += self._send_staged(peer, now, wall)
        actions += self._keep_key_fresh_on_receive(peer, now, wall)
        timers = peer.timers
        timers.any_authenticated_packet_received()
        timers.any_authenticated_packet_traversal(now)
        peer.rx_bytes += len(data)
        if not plaintext:
            return actions  # A keepalive.
        timers.data_received(now)
        found = ippacket.inner_length_and_source(plaintext)
        if found is None:
            return actions + self._drop(DropReason.INVALID_INNER_PACKET, peer)
        length, inner_source = found
        packet = plaintext[:length]
        if self.allowed_ips.lookup(inner_source) is not peer:
            return actions + self._drop(DropReason.DISALLOWED_SOURCE, peer)
        if self.observer is not None:
            self.observer.inner_packet(peer.public_key, Direction.INBOUND, packet, wall)
        actions.append(WriteTun([packet]))
        return actions

    def _settle_received(
        self, received: dict[Peer, _Received], source: Endpoint, now: float, wall: float
    ) -> list[Action]:
        """The bookkeeping of `_receive_transport`, once for a run of messages per peer. Two
        calls of `data_received` stand for any more: the second only sets need_another_keepalive,
        and so does every one after it."""
        actions: list[Action] = []
        for peer, tally in received.items():
            peer.endpoint = source
            actions += self._keep_key_fresh_on_receive(peer, now, wall)
            timers = peer.timers
            timers.any_authenticated_packet_received()
            timers.any_authenticated_packet_traversal(now)
            peer.rx_bytes += tally.octets
            for _ in range(min(tally.data_packets, 2)):
                timers.data_received(now)
        received.clear()
        return actions

    def _keep_key_fresh_on_receive(self, peer: Peer, now: float, wall: float) -> list[Action]:
        """The initiator rekeys near the end of a session it only receives on, so the responder
        (who may not initiate for sending alone) never runs into REJECT_AFTER_TIME."""
        keypair = peer.keypairs.current
        if (
            peer.timers.sent_lastminute_handshake
            or keypair is None
            or not keypair.is_initiator
            or now - keypair.created < REKEY_ON_RECEIVE_TIME
        ):
            return NOTHING
        peer.timers.sent_lastminute_handshake = True
        return self._send_queued_handshake_initiation(peer, now, wall, is_retry=False)

    # -- timers (the kernel's timers.c expiry handlers) ------------------------------------

    def _on_timer(self, peer: Peer, timer: Timer, now: float, wall: float) -> list[Action]:
        timers = peer.timers
        if timer is Timer.RETRANSMIT_HANDSHAKE:
            if timers.handshake_attempts > MAX_TIMER_HANDSHAKES:
                # Give up: drop what waited for this handshake, and erase its residue later.
                timers.handshake_gave_up(now)
                for _ in range(len(peer.staged)):
                    self._drop(DropReason.HANDSHAKE_GAVE_UP, peer)
                peer.staged.clear()
                return NOTHING
            timers.handshake_attempts += 1
            return self._send_queued_handshake_initiation(peer, now, wall, is_retry=True)
        if timer is Timer.SEND_KEEPALIVE:
            actions = self._send_keepalive(peer, now, wall)
            if timers.need_another_keepalive:
                timers.need_another_keepalive = False
                timers.data_received(now)
            return actions
        if timer is Timer.NEW_HANDSHAKE:
            return self._send_queued_handshake_initiation(peer, now, wall, is_retry=False)
        if timer is Timer.ZERO_KEY_MATERIAL:
            self._zero_key_material(peer)
            return NOTHING
        if peer.persistent_keepalive_interval:
            return self._send_keepalive(peer, now, wall)
        return NOTHING

    # -- capture ---------------------------------------------------------------------------

    def _observe_sent(self, peer: Peer, packets: list[bytes], wall: float) -> None:
        assert self.observer is not None
        for packet in packets:
            if packet:  # not a keepalive
                self.observer.inner_packet(peer.public_key, Direction.OUTBOUND, packet, wall)

    def _observe_handshake(self, peer: Peer, ephemeral_private: bytes, wall: float) -> None:
        assert self.observer is not None and self._static_private is not None
        secrets = HandshakeSecrets(
            self._static_private, peer.public_key, ephemeral_private, peer.preshared_key
        )
        self.observer.handshake_secrets(secrets, wall)

    # -- bookkeeping -----------------------------------------------------------------------

    def _handshake_complete(self, peer: Peer, wall: float) -> None:
        peer.timers.handshake_complete()
        peer.last_handshake_wall = wall

    def _add_keypair(self, peer: Peer, keypair: Keypair) -> None:
        for retired in peer.keypairs.add(keypair):
            self._retire(retired)

    def _retire(self, keypair: Keypair | None) -> None:
        if keypair is not None:
            self._indices.pop(keypair.local_index, None)

    def _release_handshake(self, peer: Peer) -> None:
        if peer.handshake.local_index is not None:
            self._indices.pop(peer.handshake.local_index, None)
        peer.handshake.clear()

    def _zero_key_material(self, peer: Peer) -> None:
        self._release_handshake(peer)
        for keypair in peer.keypairs.clear():
            self._retire(keypair)

    def _new_index(self, peer: Peer, keypair: Keypair | None) -> int:
        while True:
            index = int.from_bytes(self.rng(4), "little")
            if index not in self._indices:
                self._indices[index] = (peer, keypair)
                return index

    def _jitter(self) -> float:
        return self._jitter_source.random() * REKEY_TIMEOUT_JITTER_MAX

    def _drop(self, reason: DropReason, peer: Peer | None = None) -> list[Action]:
        self.drops[reason] += 1
        if peer is not None:
            peer.drops[reason] += 1
        return NOTHING
