"""A peer: its configuration and everything the device keeps about it."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import InitVar, dataclass, field

from wgpy.core.constants import MAX_STAGED_PACKETS
from wgpy.core.cookie import CookieGenerator
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint, Local
from wgpy.core.handshake import Handshake
from wgpy.core.keypair import Keypairs
from wgpy.core.timers import PeerTimers, TimerQueue


@dataclass(eq=False, slots=True)
class Peer:
    """What the device keeps about one peer. A server may hold 100,000 of them, mostly at rest:
    what only a peer that talks needs (its staged packets, its MAC keys, its drop counts) is
    made on first use.
    """

    public_key: bytes
    timer_queue: InitVar[TimerQueue]
    preshared_key: bytes | None = None
    endpoint: Endpoint | None = None
    # Where datagrams to `endpoint` leave from: learned with it, None for the routing's choice.
    local: Local | None = None
    handshake: Handshake = field(default_factory=Handshake)
    keypairs: Keypairs = field(default_factory=Keypairs)
    timers: PeerTimers = field(init=False)
    rx_bytes: int = 0
    tx_bytes: int = 0
    last_handshake_wall: float | None = None
    initiations_sent: int = 0
    cookie_replies_received: int = 0
    _staged: deque[bytes] | None = field(default=None, init=False)
    _cookie: CookieGenerator | None = field(default=None, init=False)
    _drops: Counter[DropReason] | None = field(default=None, init=False)

    def __post_init__(self, timer_queue: TimerQueue) -> None:
        self.timers = PeerTimers(timer_queue, self.public_key)

    @property
    def staged(self) -> deque[bytes]:
        """Packets waiting for a keypair; the oldest goes first when it overflows. (A deque
        takes ~0.7 KB from the start.)"""
        if self._staged is None:
            self._staged = deque(maxlen=MAX_STAGED_PACKETS)
        return self._staged

    @property
    def cookie(self) -> CookieGenerator:
        """The MACs of our handshake messages to the peer, and the cookies it sends us."""
        if self._cookie is None:
            self._cookie = CookieGenerator(self.public_key)
        return self._cookie

    @property
    def drops(self) -> Counter[DropReason]:
        """What was dropped of the peer's, by reason."""
        if self._drops is None:
            self._drops = Counter()
        return self._drops

    @property
    def persistent_keepalive_interval(self) -> int:
        return self.timers.persistent_keepalive_interval

    def __repr__(self) -> str:
        from wgpy.core.keys import to_base64

        return f"Peer({to_base64(self.public_key)}, endpoint={self.endpoint})"
