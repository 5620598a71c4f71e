"""The sans-IO WireGuard device: packets and datagrams in, actions out.

The I/O edge calls `handle_tun_packets`, `handle_datagrams` (or their forms for one packet, a
batch of one) and `handle_timer`, carries out the actions they return, and sleeps until
`next_timer()`. Every entry point takes `now` (monotonic seconds) and `wall` (Unix seconds, for
TAI64N and the last-handshake time); randomness comes from the `rng` given at construction.
Nothing from the network raises: every rejected datagram is counted in `drops` by reason, and in
the peer's own `drops` once the peer is known.

The flow follows the kernel's send.c, receive.c and timers.c, whose function names appear here.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import NamedTuple

from wgpy.core import ippacket, noise
from wgpy.core.admission import Admissions, Asked, PeerSettings
from wgpy.core.allowedips import AllowedIPs
from wgpy.core.constants import (
    DEFAULT_MTU,
    INITIATION_SIZE,
    MAX_STAGED_PACKETS,
    MAX_TIMER_HANDSHAKES,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_TRANSPORT,
    REJECT_AFTER_MESSAGES,
    REKEY_TIMEOUT_JITTER_MAX,
    RESPONSE_SIZE,
    TRANSPORT_MIN_SIZE,
    UNDER_LOAD_AFTER_TIME,
    UNDER_LOAD_THRESHOLD,
)
from wgpy.core.cookie import CookieChecker, MacState
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint, Local, source_bytes
from wgpy.core.events import Event, EventLog
from wgpy.core.keypair import Keypair
from wgpy.core.keys import generate_private_key, public_key, short_form
from wgpy.core.messages import TRANSPORT_HEADER, CookieReply, Initiation, Response, message_type
from wgpy.core.observer import Direction, HandshakeSecrets, Observer
from wgpy.core.peer import Peer
from wgpy.core.ratelimiter import RateLimiter
from wgpy.core.timers import Timer, TimerQueue
from wgpy.core.transport import BatchCipher, decrypt_packet, encrypt_packets
from wgpy.errors import ProtocolError

Rng = Callable[[int], bytes]
# Whether to admit an unknown key that sent an initiation from an endpoint: its settings, or None.
PeerLookup = Callable[[bytes, Endpoint], PeerSettings | None]

# The most peers whose due timers one `handle_timer` call runs. What it runs may each be a
# handshake initiation, ~0.5 ms of Python: 32 of them hold the device for ~15 ms at most.
TIMER_PEERS_PER_CALL = 32


# Actions carry batches, as the I/O edges move them (a UDP_SEGMENT send per endpoint, coalesced
# writes to the TUN): a batch of packets makes one action, not one per packet, which saves the
# data path about 4% of its work per super-packet. They are NamedTuples, not frozen dataclasses,
# which are built several times slower.
class SendDatagrams(NamedTuple):
    """Send `datagrams` to `endpoint`, in order, from `local` (see Local) if it is given."""

    datagrams: list[bytes]
    endpoint: Endpoint
    local: Local | None = None


class WriteTun(NamedTuple):
    """Write `packets` to the TUN, in order."""

    packets: list[bytes]


class PeerWanted(NamedTuple):
    """An initiation from the unknown `public_key` came from `endpoint` and is held: answer with
    `Device.admit_peer` or `Device.refuse_peer`."""

    public_key: bytes
    endpoint: Endpoint


Action = SendDatagrams | WriteTun | PeerWanted
NOTHING: list[Action] = []

# Why an initiation from an unknown key was not held, when it was not.
_NOT_ASKED = {
    Asked.REFUSED: DropReason.PEER_REFUSED,
    Asked.FULL: DropReason.ADMISSIONS_FULL,
    Asked.RATE_LIMITED: DropReason.ADMISSIONS_RATE_LIMITED,
}

# The transport header's fields for a datagram too short to be a transport message.
_SHORT = (None, 0, 0)
# `handle_datagrams`' messages opened ahead, without a BatchCipher: none.
_NOT_AHEAD = repeat((None, None))


class _OpenedRun(NamedTuple):
    """A batch of transport messages to `peer` under `keypair`, from `counter` on in turn, as
    `_open_run` opened them: each plaintext, or None where it failed to authenticate."""

    peer: Peer
    keypair: Keypair
    counter: int
    opened: list[bytes | None]


def datagrams_of(actions: Iterable[Action]) -> list[bytes]:
    """The datagrams `actions` send, in order, whatever their endpoints."""
    return [data for a in actions if isinstance(a, SendDatagrams) for data in a.datagrams]


def packets_of(actions: Iterable[Action]) -> list[bytes]:
    """The packets `actions` write to the TUN, in order."""
    return [packet for a in actions if isinstance(a, WriteTun) for packet in a.packets]


class Device:
    def __init__(
        self,
        rng: Rng,
        private_key: bytes | None = None,
        *,
        mtu: int = DEFAULT_MTU,
        under_load_threshold: int = UNDER_LOAD_THRESHOLD,
        peer_lookup: PeerLookup | None = None,
        ask_for_peers: bool = False,
        batch_cipher: BatchCipher | None = None,
    ) -> None:
        """An initiation from an unknown key is dropped, unless `peer_lookup` is given, which
        is asked at once whether to admit it, or `ask_for_peers`, when the device returns a
        PeerWanted action and holds the initiation until told (see admission.py)."""
        self.rng = rng
        # Seals and opens whole batches (the compiled accelerator); None: transport.py's
        # functions, a message at a time.
        self.batch_cipher = batch_cipher
        # The timers' jitter keeps peers from rekeying in step; it needs no secrecy, so it
        # comes from a generator seeded once, not from a system call for every packet sent. It
        # is a function, not a method: the send path hands it over for every batch, and a
        # bound method would be made each time (~2% of a lone packet's CPU instructions).
        jitter_source = random.Random(rng(8))
        self._jitter: Callable[[], float] = lambda: (
            jitter_source.random() * REKEY_TIMEOUT_JITTER_MAX
        )
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
        self._peer_lookup = peer_lookup
        self._admissions = Admissions() if ask_for_peers or peer_lookup else None
        # Sees every inner packet sent and received, and every handshake's secrets, while the
        # I/O edge runs a capture; None (one attribute check per batch) the rest of the time.
        self.observer: Observer | None = None
        # Told of handshakes, keepalives and roaming at the verbose log level; None otherwise.
        self.events: EventLog | None = None
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

    def admit_peer(
        self, public_key_: bytes, settings: PeerSettings, now: float, wall: float
    ) -> list[Action]:
        """Add the peer a PeerWanted asked about, and answer its held initiation if it is still
        worth answering. Raises ValueError, admitting nothing, if another peer has one of the
        allowed IPs (a key that is a peer already keeps its settings)."""
        if public_key_ not in self.peers:
            self._check_admissible(public_key_, settings)
            peer = self.add_peer(
                public_key_,
                preshared_key=settings.preshared_key,
                persistent_keepalive=settings.persistent_keepalive,
                now=now,
            )
            for network in settings.allowed_ips:
                self.allowed_ips.insert(network, peer)
        held = self._admissions.take(public_key_, now) if self._admissions else None
        if held is None:
            return NOTHING
        return self._receive_initiation(held.initiation, held.source, held.local, now, wall)

    def refuse_peer(self, public_key_: bytes, now: float) -> None:
        """Refuse the key a PeerWanted asked about: its initiations are dropped for 60 s."""
        if self._admissions is not None:
            self._admissions.refuse(public_key_, now)

    def _check_admissible(self, public_key_: bytes, settings: PeerSettings) -> None:
        if public_key_ == self.static_public:
            raise ValueError("the key is the device's own")
        for network in settings.allowed_ips:
            owner = self.allowed_ips.owner(network)
            if owner is not None:
                owned_by = short_form(owner.public_key)
                raise ValueError(f"allowed_ip={network} belongs to peer {owned_by}")

    # -- entry points ----------------------------------------------------------------------

    def handle_tun_packet(self, packet: bytes, now: float, wall: float) -> list[Action]:
        """An outbound inner packet: `handle_tun_packets` with a batch of one, without its loop
        (through which a lone packet, a ping's, costs ~4% more CPU instructions)."""
        peer = self._route(ippacket.destination(packet))
        return NOTHING if peer is None else self._stage_and_send(peer, [packet], now, wall)

    def handle_datagram(
        self,
        data: bytes | memoryview,
        source: Endpoint,
        now: float,
        wall: float,
        local: Local | None = None,
    ) -> list[Action]:
        """A datagram from the network: `handle_datagrams` with a batch of one."""
        return self.handle_datagrams((data,), source, now, wall, local)

    def handle_tun_packets(self, packets: Iterable[bytes], now: float, wall: float) -> list[Action]:
        """Outbound inner packets, as one TUN read hands them over: each is routed by its
        destination to a peer (the kernel's wg_xmit), and each run of them to one peer is sent
        together. (With a BatchCipher, a batch whose packets share a destination, as a TSO
        super-packet's segments do, is routed once.)"""
        if self.batch_cipher is not None:
            packets = list(packets)
            if len(packets) > 1:
                # A TSO super-packet's segments, routed at once when they can be sent: the loop
                # below counts the drop of each that cannot.
                destination = self.batch_cipher.common_destination(packets)
                peer = self.allowed_ips.lookup(destination) if destination is not None else None
                if peer is not None and peer.endpoint is not None:
                    return self._stage_and_send(peer, packets, now, wall)
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
                peer = self._route(destination)
                if peer is None:
                    continue
            if peer is run:
                batch.append(packet)
                continue
            if run is not None:
                actions += self._stage_and_send(run, batch, now, wall)
            run, batch = peer, [packet]
        if run is not None:
            actions += self._stage_and_send(run, batch, now, wall)
        return actions

    def handle_datagrams(
        self,
        datagrams: Iterable[bytes | memoryview],
        source: Endpoint,
        now: float,
        wall: float,
        local: Local | None = None,
    ) -> list[Action]:
        """Datagrams from one source to one `local` address, as one UDP_GRO receive hands them
        over, each in turn: a transport message is opened, checked and routed here (the kernel's
        wg_packet_consume_data and wg_packet_consume_data_done), anything else is
        `_receive_handshake_packet`'s. The bookkeeping that follows authenticated transport
        messages (endpoint and local, timers, byte count, key freshness) is done once for each
        run of them from one peer, which ends before anything else is handled. With a
        BatchCipher, a batch that is one in-order run of them is taken at once where the loop
        would take each (`_open_run`, `_accept_run`). Whatever the
        datagrams hold, it never raises."""
        actions: list[Action] = []
        packets: list[bytes] = []  # for the TUN
        source_seen: bytes | None = None  # the last inner source looked up,
        owner: Peer | None = None  # and the peer whose allowed IPs hold it
        live: Keypair | None = None  # the last keypair found within its lifetime
        run: Peer | None = None  # the peer of the current run of authenticated messages
        octets = data_packets = 0  # what the run holds
        observer, events = self.observer, self.events
        ahead: Iterable[tuple[Keypair | None, bytes | None]] = _NOT_AHEAD
        if self.batch_cipher is not None:
            datagrams = list(datagrams)
            # A lone datagram (ping, a handshake) costs less opened in line than looked ahead.
            if len(datagrams) > 1:
                opened_run = self._open_run(self.batch_cipher, datagrams, now)
                if opened_run is None:
                    ahead = self._open_ahead(self.batch_cipher, datagrams)
                else:
                    accepted = self._accept_run(opened_run, datagrams, source, local, now, wall)
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
                    actions += self._settle_run(run, octets, data_packets, source, local, now, wall)
                    run = None
                actions += self._receive_handshake_packet(bytes(data), source, local, now, wall)
                continue
            peer, keypair = self._indices.get(receiver, (None, None))
            if peer is None or keypair is None:
                self._drop(DropReason.UNKNOWN_INDEX)
                continue
            if keypair is not live:
                if not keypair.can_receive(now):
                    self._drop(DropReason.KEYPAIR_EXPIRED, peer)
                    continue
                live = keypair
            if keypair is opened_with:
                plaintext = opened
            else:
                plaintext = decrypt_packet(keypair, counter, data[16:])
            if plaintext is None:
                self._drop(DropReason.DECRYPT_FAILED, peer)
                continue
            if not keypair.replay.validate(counter):
                self._drop(DropReason.REPLAYED_COUNTER, peer)
                continue
            if peer is not run or keypair is peer.keypairs.next:
                if run is not None:
                    actions += self._settle_run(run, octets, data_packets, source, local, now, wall)
                run, octets, data_packets = peer, 0, 0
                if keypair is peer.keypairs.next:
                    actions += self._received_with_next_keypair(peer, source, local, now, wall)
            octets += len(data)
            if not plaintext:  # A keepalive.
                if events is not None:
                    events(peer.public_key, Event.KEEPALIVE_RECEIVED)
                continue
            data_packets += 1
            found = ippacket.inner_length_and_source(plaintext)
            if found is None:
                self._drop(DropReason.INVALID_INNER_PACKET, peer)
                continue
            length, inner_source = found
            packet = plaintext[:length]  # without its padding (or itself, if it has none)
            # A batch is mostly one flow, or runs of one (a TSO super-packet each), as the
            # sending side: look each run's source up once. (A dict of them cost a lone
            # datagram ~1.5% more CPU instructions.)
            if inner_source != source_seen:
                source_seen, owner = inner_source, self.allowed_ips.lookup(inner_source)
            if owner is not peer:
                self._drop(DropReason.DISALLOWED_SOURCE, peer)
                continue
            if observer is not None:
                observer.inner_packet(peer.public_key, Direction.INBOUND, packet, wall)
            packets.append(packet)
        if run is not None:
            actions += self._settle_run(run, octets, data_packets, source, local, now, wall)
        if packets:
            actions.append(WriteTun(packets))
        return actions

    def _open_run(
        self, cipher: BatchCipher, datagrams: Sequence[bytes | memoryview], now: float
    ) -> _OpenedRun | None:
        """A batch that is one run of transport messages (`transport_run`) under a live keypair
        that is its peer's current one, whose counters are the next its replay window expects:
        opened in one call, to be taken at once. None for any other batch."""
        count, receiver, counter = cipher.transport_run(datagrams)
        if count != len(datagrams):
            return None
        peer, keypair = self._indices.get(receiver, (None, None))
        if (
            peer is None
            or keypair is None
            or keypair is peer.keypairs.next
            or not keypair.can_receive(now)
            or not keypair.replay.in_order(counter, count)
        ):
            return None
        return _OpenedRun(peer, keypair, counter, cipher.open([keypair] * count, datagrams))

    def _accept_run(
        self,
        run: _OpenedRun,
        datagrams: Sequence[bytes | memoryview],
        source: Endpoint,
        local: Local | None,
        now: float,
        wall: float,
    ) -> list[Action] | None:
        """What the loop of `handle_datagrams` does with an opened run in which every message
        is authentic and carries a packet from an address its peer owns, done for the run at
        once: the counters marked seen, the run settled, the packets written. None, with
        nothing done, when one of them needs the loop: a forgery, a keepalive, a malformed or
        disallowed packet."""
        assert self.batch_cipher is not None
        inner = self.batch_cipher.inner_packets(run.opened)
        if inner is None:
            return None
        packets, sources = inner
        peer, lookup = run.peer, self.allowed_ips.lookup
        if any(lookup(inner_source) is not peer for inner_source in set(sources)):
            return None
        # In order, as _open_run found, and nothing since has moved the window: it takes them.
        if not run.keypair.replay.validate_run(run.counter, len(packets)):
            return None
        if self.observer is not None:
            for packet in packets:
                self.observer.inner_packet(peer.public_key, Direction.INBOUND, packet, wall)
        octets = sum(map(len, datagrams))
        actions = self._settle_run(peer, octets, len(packets), source, local, now, wall)
        return [*actions, WriteTun(packets)]

    def _open_ahead(
        self, cipher: BatchCipher, datagrams: Sequence[bytes | memoryview]
    ) -> list[tuple[Keypair | None, bytes | None]]:
        """Each transport message of `datagrams` opened under its receiver index's keypair, all
        in one call, beside that keypair. `handle_datagrams` takes a result only if it finds the
        same keypair for the message: a handshake earlier in the batch may change the indices."""
        keypairs: list[Keypair | None] = []
        for data in datagrams:
            keypair = None
            if len(data) >= TRANSPORT_MIN_SIZE:
                kind, receiver, _ = TRANSPORT_HEADER.unpack_from(data)
                if kind == MESSAGE_TRANSPORT:
                    keypair = self._indices.get(receiver, (None, None))[1]
            keypairs.append(keypair)
        return list(zip(keypairs, cipher.open(keypairs, datagrams), strict=True))

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

    def forget_local(self, local: Local) -> None:
        """The edge could not send from `local`, as its address has left the host: the peers
        that kept it send from the routing table's choice until a datagram teaches them another
        (the kernel's send4 and send6 clear endpoint->src4 and src6 alike)."""
        for peer in self.peers.values():
            if peer.local == local:
                peer.local = None

    # -- sending (the kernel's send.c) -----------------------------------------------------

    def _route(self, destination: bytes | None) -> Peer | None:
        """The peer whose allowed IPs hold `destination`, if it has an endpoint to send to; if
        not, None, and the drop counted (the kernel's wg_xmit)."""
        peer = self.allowed_ips.lookup(destination) if destination is not None else None
        if peer is None:
            self._drop(DropReason.NO_ROUTE)
        elif peer.endpoint is None:
            self._drop(DropReason.NO_ENDPOINT, peer)
            return None
        return peer

    def _stage_and_send(
        self, peer: Peer, packets: list[bytes], now: float, wall: float
    ) -> list[Action]:
        """`packets` for `peer`, which has an endpoint, in order behind any staged before them
        (the kernel's wg_xmit stages them, then wg_packet_send_staged_packets sends)."""
        keypair = peer.keypairs.current
        # Nothing waits before them (the slot is read, not the property that makes the queue,
        # which costs a lone packet ~0.15 us): they go at once, without the staging queue. (On
        # a ping's lone packet, a cold CPU spends ~20 us more through the queue.)
        if not peer._staged and keypair is not None and keypair.can_send(now, len(packets)):
            actions = self._send_packets(peer, keypair, packets, now, wall)
            if keypair.needs_rekey_on_send(now):  # the kernel's keep_key_fresh
                actions += self._send_queued_handshake_initiation(peer, now, wall, is_retry=False)
            return actions
        actions = []
        staged = peer.staged
        for packet in packets:
            if len(staged) == MAX_STAGED_PACKETS:
                actions += self._send_staged(peer, now, wall)
                if len(staged) == MAX_STAGED_PACKETS:
                    self._drop(DropReason.STAGED_OVERFLOW, peer)  # The oldest makes room.
            staged.append(packet)
        return actions + self._send_staged(peer, now, wall)

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
        if keypair.needs_rekey_on_send(now):  # the kernel's keep_key_fresh
            actions += self._send_queued_handshake_initiation(peer, now, wall, is_retry=False)
        return actions

    def _send_packets(
        self, peer: Peer, keypair: Keypair, packets: list[bytes], now: float, wall: float
    ) -> list[Action]:
        """Encrypt `packets` (an empty one is a keepalive) under `keypair`, which can send that
        many, to the peer's endpoint, which is known."""
        if self.batch_cipher is None or len(packets) == 1:  # one costs less without the call
            messages = encrypt_packets(keypair, packets, self.mtu)
        else:
            messages = self.batch_cipher.seal(keypair, packets, self.mtu)
        if self.observer is not None:
            self._observe_sent(peer, packets, wall)
        endpoint = peer.endpoint
        assert endpoint is not None
        actions: list[Action] = [SendDatagrams(messages, endpoint, peer.local)]
        peer.tx_bytes += sum(map(len, messages))
        timers = peer.timers
        timers.any_authenticated_packet_traversal(now)
        timers.any_authenticated_packet_sent()
        if any(packets):
            timers.data_sent(now, self._jitter)
        return actions

    def _send_keepalive(self, peer: Peer, now: float, wall: float) -> list[Action]:
        """Send what is staged, or an empty packet when nothing is."""
        if not peer.staged:
            peer.staged.append(b"")
            self._tell(peer, Event.KEEPALIVE_SENT)
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
        self._tell(peer, Event.INITIATION_SENT)
        return self._send_handshake(peer, data)

    def _send_handshake(self, peer: Peer, data: bytes) -> list[Action]:
        if peer.endpoint is None:
            return NOTHING
        peer.tx_bytes += len(data)
        return [SendDatagrams([data], peer.endpoint, peer.local)]

    # -- receiving (the kernel's receive.c) ------------------------------------------------

    def _receive_handshake_packet(
        self, data: bytes, source: Endpoint, local: Local | None, now: float, wall: float
    ) -> list[Action]:
        """Any datagram but a transport message: a cookie reply, an initiation or a response
        (the kernel's wg_receive_handshake_packet), or a drop for the wrong length or type (as
        its prepare_skb_header)."""
        kind = message_type(data)
        if kind == MESSAGE_COOKIE_REPLY:
            return self._receive_cookie_reply(data, now)
        if kind is None:
            return self._drop(DropReason.UNKNOWN_TYPE)
        if kind == MESSAGE_TRANSPORT:  # shorter than its header and tag
            return self._drop(DropReason.BAD_LENGTH)
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
                return [SendDatagrams([reply.serialize()], source, local)]
            if not self._ratelimiter.allow(source_id[:-2], now):
                return self._drop(DropReason.RATE_LIMITED)
        if kind == MESSAGE_INITIATION:
            return self._receive_initiation(Initiation.parse(data), source, local, now, wall)
        return self._receive_response(Response.parse(data), source, local, now, wall)

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
        self, message: Initiation, source: Endpoint, local: Local | None, now: float, wall: float
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
            return self._unknown_peer(static, message, source, local, now, wall)
        rejected = peer.handshake.check_initiation(timestamp, now)
        if rejected is not None:
            return self._drop(rejected, peer)
        try:
            body, keys = responder.write_response(peer.preshared_key)
        except ProtocolError:
            return self._drop(DropReason.HANDSHAKE_INVALID, peer)
        if self.observer is not None:
            self._observe_handshake(peer, ephemeral, wall)
        self._set_endpoint(peer, source, local)
        self._tell(peer, Event.INITIATION_RECEIVED)
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
        self._tell(peer, Event.RESPONSE_SENT)
        return self._send_handshake(peer, data)

    def _unknown_peer(
        self,
        public_key_: bytes,
        message: Initiation,
        source: Endpoint,
        local: Local | None,
        now: float,
        wall: float,
    ) -> list[Action]:
        """Hold the initiation and ask about its key, if the device asks about unknown keys."""
        if self._admissions is None:
            return self._drop(DropReason.UNKNOWN_PEER)
        asked = self._admissions.hold(public_key_, message, source, local, now)
        if asked is not Asked.NEW:
            return self._drop(_NOT_ASKED[asked]) if asked in _NOT_ASKED else NOTHING
        if self._peer_lookup is None:
            return [PeerWanted(public_key_, source)]
        settings = self._peer_lookup(public_key_, source)
        if settings is not None:
            try:
                return self.admit_peer(public_key_, settings, now, wall)
            except ValueError:
                pass
        self.refuse_peer(public_key_, now)
        return self._drop(DropReason.PEER_REFUSED)

    def _receive_response(
        self, message: Response, source: Endpoint, local: Local | None, now: float, wall: float
    ) -> list[Action]:
        entry = self._indices.get(message.receiver)
        if entry is None or entry[1] is not None or not entry[0].handshake.answers(message):
            return self._drop(DropReason.UNKNOWN_INDEX)
        peer = entry[0]
        try:
            keys = peer.handshake.consume_response(message)
        except ProtocolError:
            return self._drop(DropReason.HANDSHAKE_INVALID, peer)
        self._set_endpoint(peer, source, local)
        self._tell(peer, Event.RESPONSE_RECEIVED)
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

    def _received_with_next_keypair(
        self, peer: Peer, source: Endpoint, local: Local | None, now: float, wall: float
    ) -> list[Action]:
        """The initiator sent on our `next` keypair, so it has the keys: the keypair becomes
        current, and what waited for a session goes out on it, to where the initiator now is
        (the kernel's wg_noise_received_with_keypair and what follows it)."""
        self._set_endpoint(peer, source, local)
        self._retire(peer.keypairs.promote_next())
        self._handshake_complete(peer, wall)
        return self._send_staged(peer, now, wall)

    def _settle_run(
        self,
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
        self._set_endpoint(peer, source, local)
        timers = peer.timers
        keypair = peer.keypairs.current
        actions = NOTHING
        if (
            not timers.sent_lastminute_handshake
            and keypair is not None
            and keypair.needs_rekey_on_receive(now)
        ):  # keep_key_fresh: one handshake, the last minute's
            timers.sent_lastminute_handshake = True
            actions = self._send_queued_handshake_initiation(peer, now, wall, is_retry=False)
        timers.any_authenticated_packet_received()
        timers.any_authenticated_packet_traversal(now)
        peer.rx_bytes += octets
        if data_packets:
            timers.data_received(now)
            if data_packets > 1:
                timers.data_received(now)
        return actions

    # -- timers (the kernel's timers.c expiry handlers) ------------------------------------

    def _on_timer(self, peer: Peer, timer: Timer, now: float, wall: float) -> list[Action]:
        timers = peer.timers
        if timer is Timer.RETRANSMIT_HANDSHAKE:
            if timers.handshake_attempts > MAX_TIMER_HANDSHAKES:
                # Give up: drop what waited for this handshake, and erase its residue later.
                self._tell(peer, Event.HANDSHAKE_GAVE_UP)
                timers.handshake_gave_up(now)
                for _ in range(len(peer.staged)):
                    self._drop(DropReason.HANDSHAKE_GAVE_UP, peer)
                peer.staged.clear()
                return NOTHING
            timers.handshake_attempts += 1
            self._tell(peer, Event.HANDSHAKE_RETRY, timers.handshake_attempts + 1)
            # Forget where we sent from, as the kernel does, "in case this is the cause of
            # trouble" (timers.c).
            peer.local = None
            return self._send_queued_handshake_initiation(peer, now, wall, is_retry=True)
        if timer is Timer.SEND_KEEPALIVE:
            actions = self._send_keepalive(peer, now, wall)
            if timers.need_another_keepalive:
                timers.need_another_keepalive = False
                timers.data_received(now)
            return actions
        if timer is Timer.NEW_HANDSHAKE:
            self._tell(peer, Event.STOPPED_HEARING)
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
        self._tell(peer, Event.HANDSHAKE_COMPLETED)

    def _set_endpoint(self, peer: Peer, source: Endpoint, local: Local | None) -> None:
        """Roaming: the peer is where its last authenticated message came from."""
        if self.events is not None and peer.endpoint is not None and peer.endpoint != source:
            self.events(peer.public_key, Event.ROAMED, source)
        peer.endpoint, peer.local = source, local

    def _tell(self, peer: Peer, event: Event, detail: object = None) -> None:
        if self.events is not None:
            self.events(peer.public_key, event, detail)

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

    def _drop(self, reason: DropReason, peer: Peer | None = None) -> list[Action]:
        self.drops[reason] += 1
        if peer is not None:
            peer.drops[reason] += 1
        return NOTHING
