"""A peer: its configuration and everything the device keeps about it."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import InitVar, dataclass, field

from wgpy.core.constants import MAX_STAGED_PACKETS
from wgpy.core.cookie import CookieGenerator
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint
from wgpy.core.handshake import Handshake
from wgpy.core.keypair import Keypairs
from wgpy.core.timers import PeerTimers, TimerQueue


@dataclass(eq=False, slots=True)
class Peer:
    public_key: bytes
    timer_queue: InitVar[TimerQueue]
    preshared_key: bytes | None = None
    endpoint: Endpoint | None = None
    cookie: CookieGenerator = field(init=False)
    handshake: Handshake = field(default_factory=Handshake)
    keypairs: Keypairs = field(default_factory=Keypairs)
    timers: PeerTimers = field(init=False)
    # Packets waiting for a keypair; the oldest goes first when it overflows.
    staged: deque[bytes] = field(default_factory=lambda: deque(maxlen=MAX_STAGED_PACKETS))
    rx_bytes: int = 0
    tx_bytes: int = 0
    last_handshake_wall: float | None = None
    initiations_sent: int = 0
    cookie_replies_received: int = 0
    drops: Counter[DropReason] = field(default_factory=Counter)

    def __post_init__(self, timer_queue: TimerQueue) -> None:
        self.cookie = CookieGenerator(self.public_key)
        self.timers = PeerTimers(timer_queue, self)

    @property
    def persistent_keepalive_interval(self) -> int:
        return self.timers.persistent_keepalive_interval

    def __repr__(self) -> str:
        from wgpy.core.keys import to_base64

        return f"Peer({to_base64(self.public_key)}, endpoint={self.endpoint})"
