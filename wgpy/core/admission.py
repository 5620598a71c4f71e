"""Peers admitted on their first handshake: what the device keeps while it asks about a key.

Large responders (Fly.io's gateways, Tailscale) preload no peers: an initiation from an unknown
static key, once its macs (and its cookie, under load) have been checked and its static key
decrypted, asks the embedder whether to admit that key. The device holds that one initiation
per key meanwhile, in a small table, and answers it the moment the peer is admitted. A key
refused is not asked about again for REFUSAL_TIME. Each source (an IPv4 address or an IPv6 /64)
may ask ASKS_PER_SECOND times a second, so one host cannot keep the askers (a hook's processes)
busy.

Every table here is bounded, whatever the network sends: MAX_HELD initiations, MAX_REFUSED
refusals (the oldest forgotten first), and the rate limiter's MAX_SOURCES sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Network, IPv6Network
from typing import Final

from wgpy.core.constants import REKEY_TIMEOUT
from wgpy.core.endpoint import Endpoint, Local, source_bytes
from wgpy.core.messages import Initiation
from wgpy.core.ratelimiter import RateLimiter

REFUSAL_TIME: Final = 60.0
# An initiator gives up on an initiation after REKEY_TIMEOUT and sends a new one, which asks
# again: an answer to an older one would not be read.
HOLD_TIME: Final = REKEY_TIMEOUT
# Enough for a burst of new clients; a hook's limit of processes (4) works through them.
MAX_HELD: Final = 16
MAX_REFUSED: Final = 4096  # ~0.5 MiB of keys and times at most
# A source (a NAT with many clients behind it, say) may ask twice a second, four in a burst.
ASKS_PER_SECOND: Final = 2
ASK_BURST: Final = 4
MAX_SOURCES: Final = 4096

Network = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """What an admitted peer is configured with, as `wg set` would give it."""

    allowed_ips: tuple[Network, ...] = ()
    preshared_key: bytes | None = field(default=None, repr=False)
    persistent_keepalive: int = 0


class Asked(Enum):
    """What became of an initiation from an unknown key."""

    NEW = "held; ask whether to admit the key"
    AGAIN = "held in place of the key's earlier initiation, which is being asked about"
    REFUSED = "the key was refused within REFUSAL_TIME"
    FULL = "MAX_HELD initiations wait already"
    RATE_LIMITED = "its source asked too often"


@dataclass(slots=True)
class Held:
    """An initiation waiting for its key's admission, and where it came from."""

    initiation: Initiation
    source: Endpoint
    local: Local | None
    asked_at: float


class Admissions:
    """The held initiations, the refusals and the askers' rate limit; time is passed in."""

    def __init__(self) -> None:
        self._held: dict[bytes, Held] = {}
        self._refused: dict[bytes, float] = {}  # key -> when the refusal ends, oldest first
        self._asks = RateLimiter(MAX_SOURCES, per_second=ASKS_PER_SECOND, burst=ASK_BURST)

    def __len__(self) -> int:
        return len(self._held)

    def hold(
        self,
        public_key: bytes,
        initiation: Initiation,
        source: Endpoint,
        local: Local | None,
        now: float,
    ) -> Asked:
        """Hold `initiation` from the unknown `public_key`, unless the key is refused or the
        table is full or its source asks too often; say which."""
        if self.refused(public_key, now):
            return Asked.REFUSED
        self._expire(now)
        held = self._held.get(public_key)
        if held is not None:
            held.initiation, held.source, held.local = initiation, source, local
            return Asked.AGAIN
        if len(self._held) >= MAX_HELD:
            return Asked.FULL
        if not self._asks.allow(source_bytes(source)[:-2], now):
            return Asked.RATE_LIMITED
        self._held[public_key] = Held(initiation, source, local, now)
        return Asked.NEW

    def take(self, public_key: bytes, now: float) -> Held | None:
        """The initiation held for `public_key`, if it is still worth answering; forgotten."""
        held = self._held.pop(public_key, None)
        if held is None or now - held.asked_at >= HOLD_TIME:
            return None
        return held

    def refuse(self, public_key: bytes, now: float) -> None:
        """Forget what `public_key` sent, and refuse it until REFUSAL_TIME from `now`."""
        self._held.pop(public_key, None)
        self._refused.pop(public_key, None)  # re-inserted last: the order is of ending
        self._refused[public_key] = now + REFUSAL_TIME
        if len(self._refused) > MAX_REFUSED:
            del self._refused[next(iter(self._refused))]

    def refused(self, public_key: bytes, now: float) -> bool:
        until = self._refused.get(public_key)
        if until is None:
            return False
        if now < until:
            return True
        del self._refused[public_key]
        return False

    def _expire(self, now: float) -> None:
        """Held initiations are asked about in order, so the oldest are first."""
        while self._held:
            key, held = next(iter(self._held.items()))
            if now - held.asked_at < HOLD_TIME:
                return
            del self._held[key]
