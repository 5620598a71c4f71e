"""The sans-IO WireGuard device: packets and datagrams in, actions out.

The I/O edge calls `handle_tun_packets`, `handle_datagrams` (or their forms for one packet, a
batch of one) and `handle_timer`, carries out the actions they return, and sleeps until
`next_timer()`. Every entry point takes `now` (monotonic seconds) and `wall` (Unix seconds, for
TAI64N and the last-handshake time); randomness comes from the `rng` given at construction.
Nothing from the network raises: every rejected datagram is counted in `drops` by reason, and in
the peer's own `drops` once the peer is known.

The flow follows the kernel's send.c, receive.c and timers.c, whose function names appear in
it, and lives as theirs does, in plain functions that take the device: send.py, receive.py,
receive_handshake.py and expiry.py, over indices.py's receiver indices and bookkeeping.py's
drop counts and events. This module holds the device's state, its configuration and its entry
points; actions.py holds the actions they return.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Callable

from wgpy.core import ippacket
from wgpy.core.actions import (
    NOTHING,
    Action,
    PeerWanted,
    SendDatagrams,
    WriteTun,
    datagrams_of,
    packets_of,
)
from wgpy.core.admission import Admissions, PeerSettings
from wgpy.core.allowedips import AllowedIPs
from wgpy.core.constants import DEFAULT_MTU, REKEY_TIMEOUT_JITTER_MAX, UNDER_LOAD_THRESHOLD
from wgpy.core.cookie import CookieChecker
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint, Local
from wgpy.core.events import EventLog
from wgpy.core.expiry import expired
from wgpy.core.indices import Indices, zero_key_material
from wgpy.core.keys import public_key, short_form
from wgpy.core.observer import Observer
from wgpy.core.peer import Peer
from wgpy.core.ratelimiter import RateLimiter
from wgpy.core.receive import receive_datagrams
from wgpy.core.receive_handshake import receive_initiation
from wgpy.core.send import route, send_tun_packets, stage_and_send
from wgpy.core.timers import TimerQueue
from wgpy.core.transport import BatchCipher, LoneCipher

# What the edges import from here: the device, and the actions it returns (actions.py's).
__all__ = [
    "NOTHING",
    "TIMER_PEERS_PER_CALL",
    "Action",
    "Device",
    "PeerLookup",
    "PeerWanted",
    "Rng",
    "SendDatagrams",
    "WriteTun",
    "datagrams_of",
    "packets_of",
]

Rng = Callable[[int], bytes]
# Whether to admit an unknown key that sent an initiation from an endpoint: its settings, or None.
PeerLookup = Callable[[bytes, Endpoint], PeerSettings | None]

# The most peers whose due timers one `handle_timer` call runs. What it runs may each be a
# handshake initiation, ~0.5 ms of Python: 32 of them hold the device for ~15 ms at most.
TIMER_PEERS_PER_CALL = 32


class Device:
    """A WireGuard device: its state, configuration and entry points. The underscored
    attributes belong to the modules of its paths (send.py, receive.py and the others the
    module's docstring names), which read and change them; the edges use the rest."""

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
        lone_cipher: LoneCipher | None = None,
    ) -> None:
        """An initiation from an unknown key is dropped, unless `peer_lookup` is given, which
        is asked at once whether to admit it, or `ask_for_peers`, when the device returns a
        PeerWanted action and holds the initiation until told (see admission.py)."""
        self.rng = rng
        # Seals and opens whole batches (the compiled accelerator); None: transport.py's
        # functions, a message at a time.
        self.batch_cipher = batch_cipher
        # Seals and opens a packet that comes alone (libsodium, in the accelerator); None:
        # transport.py's functions.
        self.lone_cipher = lone_cipher
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
        self._indices: Indices = {}
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
            zero_key_material(self._indices, peer)

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
        zero_key_material(self._indices, peer)
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
        return receive_initiation(self, held.initiation, held.source, held.local, now, wall)

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
        peer = route(self, ippacket.destination(packet))
        return NOTHING if peer is None else stage_and_send(self, peer, [packet], now, wall)

    def handle_datagram(
        self,
        data: bytes | memoryview,
        source: Endpoint,
        now: float,
        wall: float,
        local: Local | None = None,
    ) -> list[Action]:
        """A datagram from the network: `handle_datagrams` with a batch of one. (The data path
        calls that with a tuple of one: a call less.)"""
        return receive_datagrams(self, (data,), source, now, wall, local)

    # The entry points for batches are the paths' own functions, bound as methods (see their
    # docstrings): a call less for every batch, a ping's lone packet's too.
    handle_tun_packets = send_tun_packets
    handle_datagrams = receive_datagrams

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
                actions += expired(self, peer, timer, now, wall)
            timers.file()
        return actions

    def next_timer(self) -> float | None:
        """When to call `handle_timer` next: never later than a timer is due, sometimes
        earlier (a timer since disarmed or re-armed later), when that call finds nothing due."""
        return self._timers.next_deadline()

    def forget_local(self, local: Local) -> None:
        """The edge could not send from `local`, as its address has left the host: the peers
        that kept it send from the routing table's choice until a datagram teaches them another
        (the kernel's send4 and send6 clear endpoint->src4 and src6 alike)."""
        for peer in self.peers.values():
            if peer.local == local:
                peer.local = None
