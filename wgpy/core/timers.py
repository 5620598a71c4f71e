"""A peer's timers (whitepaper section 6), as deadlines compared with an injected `now`.

The hooks are named after the events that trigger them, as the kernel's timers.c names them; the
device calls them and, when `expired(now)` reports a deadline, runs the matching handler. Jitter is
passed in so that this module stays free of randomness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from wgpy.core.constants import KEEPALIVE_TIMEOUT, NEW_HANDSHAKE_TIME, REKEY_TIMEOUT, ZERO_KEYS_TIME


class Timer(Enum):
    # In the order the device handles them when several expire at once.
    RETRANSMIT_HANDSHAKE = "retransmit_handshake"
    SEND_KEEPALIVE = "send_keepalive"
    NEW_HANDSHAKE = "new_handshake"
    ZERO_KEY_MATERIAL = "zero_key_material"
    PERSISTENT_KEEPALIVE = "persistent_keepalive"


@dataclass(slots=True)
class PeerTimers:
    persistent_keepalive_interval: int = 0
    handshake_attempts: int = 0
    need_another_keepalive: bool = False
    sent_lastminute_handshake: bool = False
    retransmit_handshake: float | None = None
    send_keepalive: float | None = None
    new_handshake: float | None = None
    zero_key_material: float | None = None
    persistent_keepalive: float | None = None

    def data_sent(self, now: float, jitter: Callable[[], float]) -> None:
        """Data went out: expect something back before NEW_HANDSHAKE_TIME, or rekey. The jitter
        is drawn only when the timer is armed: this runs for every packet sent."""
        if self.new_handshake is None:
            self.new_handshake = now + NEW_HANDSHAKE_TIME + jitter()

    def data_received(self, now: float) -> None:
        """Data came in: answer with a keepalive unless we send something ourselves."""
        if self.send_keepalive is None:
            self.send_keepalive = now + KEEPALIVE_TIMEOUT
        else:
            self.need_another_keepalive = True

    def any_authenticated_packet_sent(self) -> None:
        self.send_keepalive = None

    def any_authenticated_packet_received(self) -> None:
        self.new_handshake = None

    def any_authenticated_packet_traversal(self, now: float) -> None:
        if self.persistent_keepalive_interval:
            self.persistent_keepalive = now + self.persistent_keepalive_interval

    def handshake_initiated(self, now: float, jitter: float) -> None:
        self.retransmit_handshake = now + REKEY_TIMEOUT + jitter

    def handshake_complete(self) -> None:
        self.retransmit_handshake = None
        self.handshake_attempts = 0
        self.sent_lastminute_handshake = False

    def session_derived(self, now: float) -> None:
        self.zero_key_material = now + ZERO_KEYS_TIME

    def stop(self) -> None:
        """Cancel every deadline (the peer is removed or the device goes down)."""
        self.retransmit_handshake = self.send_keepalive = self.new_handshake = None
        self.zero_key_material = self.persistent_keepalive = None

    def next_deadline(self) -> float | None:
        deadlines = [
            t
            for t in (
                self.retransmit_handshake,
                self.send_keepalive,
                self.new_handshake,
                self.zero_key_material,
                self.persistent_keepalive,
            )
            if t is not None
        ]
        return min(deadlines, default=None)

    def expired(self, now: float) -> list[Timer]:
        """The timers due at `now`, disarmed; their handlers are the caller's to run."""
        due = []
        for timer in Timer:
            deadline = getattr(self, timer.value)
            if deadline is not None and deadline <= now:
                setattr(self, timer.value, None)
                due.append(timer)
        return due
