"""A peer's timers (whitepaper section 6), as deadlines compared with an injected `now`, and the
queue that finds the next of them among many peers.

The hooks are named after the events that trigger them, as the kernel's timers.c names them; the
device calls them and, when the queue says a peer has a deadline due, runs the matching handler
for each timer `expired(now)` reports. Jitter is passed in so that this module stays free of
randomness.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from wgpy.core.constants import KEEPALIVE_TIMEOUT, NEW_HANDSHAKE_TIME, REKEY_TIMEOUT, ZERO_KEYS_TIME

# A queue compacts itself once this many of its entries, and half of them, are stale.
_MIN_STALE_TO_COMPACT = 64


class Timer(Enum):
    # In the order the device handles them when several expire at once.
    RETRANSMIT_HANDSHAKE = "retransmit_handshake"
    SEND_KEEPALIVE = "send_keepalive"
    NEW_HANDSHAKE = "new_handshake"
    ZERO_KEY_MATERIAL = "zero_key_material"
    PERSISTENT_KEEPALIVE = "persistent_keepalive"


class TimerQueue:
    """Each peer's next deadline, soonest first, so that a device with many peers finds what is
    due without looking at every peer (the kernel and wireguard-go arm a timer per event instead).

    A heap of (deadline, sequence, timers). A peer has at most one live entry, whose deadline is
    `queued`, no later than the peer's earliest armed deadline: arming a timer costs a comparison,
    and a push only when it comes due sooner than that entry. So `next_deadline` is a lower
    bound: the entry's timer may since have been disarmed or re-armed later, and the entry is
    filed again at the peer's true next deadline only once it comes due (`pop_due`). Keeping it
    exact cost a pop and a push on almost every call in request/response traffic, where
    send_keepalive and new_handshake are armed and disarmed by turns (4% of the rootless
    proxy's instructions a SOCKS5 connect); waking early costs a wake that finds nothing due,
    at most once per KEEPALIVE_TIMEOUT or so a peer. An entry goes stale when its peer pushes a
    sooner one or stops; stale entries are dropped as they come up, and all at once when they
    are half the heap, so that removed peers do not linger in it.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, PeerTimers]] = []
        self._sequence = itertools.count()  # orders equal deadlines without comparing timers
        self._stale = 0

    def __len__(self) -> int:
        """The entries held, stale ones included."""
        return len(self._heap)

    def next_deadline(self) -> float | None:
        """The soonest entry's deadline: never later than the earliest deadline armed on any
        peer, sometimes earlier (see the class); None only when none is armed."""
        heap = self._heap
        while heap:
            deadline, _, timers = heap[0]
            if deadline == timers.queued:
                return deadline
            heapq.heappop(heap)
            self._stale -= 1
        return None

    def pop_due(self, now: float) -> PeerTimers | None:
        """The timers of a peer with a deadline due at `now`, taken off the queue: once its
        handlers have run, `file()` puts it back for its next deadline. Entries that came up
        early are filed again at their peer's next deadline on the way."""
        heap = self._heap
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            _, _, timers = heapq.heappop(heap)
            timers.queued = math.inf
            actual = timers.next_deadline()
            if actual is not None:
                if actual <= now:
                    return timers
                self.push(actual, timers)
        return None

    def push(self, deadline: float, timers: PeerTimers) -> None:
        if timers.queued != math.inf:
            self._stale += 1
        timers.queued = deadline
        heapq.heappush(self._heap, (deadline, next(self._sequence), timers))

    def forget(self, timers: PeerTimers) -> None:
        """Let `timers`' entry go stale (its peer is gone); compact if stale entries are half."""
        if timers.queued != math.inf:
            timers.queued = math.inf
            self._stale += 1
        if self._stale >= max(_MIN_STALE_TO_COMPACT, len(self._heap) // 2):
            self._heap = [entry for entry in self._heap if entry[0] == entry[2].queued]
            heapq.heapify(self._heap)
            self._stale = 0


@dataclass(slots=True)
class PeerTimers:
    """One peer's five deadlines (None: not armed) and the state their handlers keep.

    A deadline is armed through the hooks alone, which file it on the queue: one written
    directly is never on the queue, and never fires. Writing None to disarm one is fine.
    """

    # The device's bookkeeping, not part of the timers' state: its queue, and the key by which
    # it finds the peer (a reference to the peer would make a cycle, which only the cyclic
    # garbage collector could free once the peer is removed).
    queue: TimerQueue = field(compare=False, repr=False)
    public_key: bytes = field(compare=False, repr=False)
    queued: float = field(default=math.inf, compare=False, repr=False)
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
            self.new_handshake = deadline = now + NEW_HANDSHAKE_TIME + jitter()
            self._armed(deadline)

    def data_received(self, now: float) -> None:
        """Data came in: answer with a keepalive unless we send something ourselves."""
        if self.send_keepalive is None:
            self.send_keepalive = deadline = now + KEEPALIVE_TIMEOUT
            self._armed(deadline)
        else:
            self.need_another_keepalive = True

    def any_authenticated_packet_sent(self) -> None:
        self.send_keepalive = None

    def any_authenticated_packet_received(self) -> None:
        self.new_handshake = None

    def any_authenticated_packet_traversal(self, now: float) -> None:
        if self.persistent_keepalive_interval:
            self.persistent_keepalive = deadline = now + self.persistent_keepalive_interval
            self._armed(deadline)

    def handshake_initiated(self, now: float, jitter: float) -> None:
        self.retransmit_handshake = deadline = now + REKEY_TIMEOUT + jitter
        self._armed(deadline)

    def handshake_complete(self) -> None:
        self.retransmit_handshake = None
        self.handshake_attempts = 0
        self.sent_lastminute_handshake = False

    def session_derived(self, now: float) -> None:
        self.zero_key_material = deadline = now + ZERO_KEYS_TIME
        self._armed(deadline)

    def handshake_gave_up(self, now: float) -> None:
        """The handshake was retried in vain: no keepalive waits for it, and what it left is
        erased ZERO_KEYS_TIME on, unless that is already set to happen."""
        self.send_keepalive = None
        if self.zero_key_material is None:
            self.zero_key_material = deadline = now + ZERO_KEYS_TIME
            self._armed(deadline)

    def set_persistent_keepalive(self, seconds: int, now: float) -> None:
        """Turning it on arms the keepalive for `now`: one is sent at once."""
        was_off = not self.persistent_keepalive_interval
        self.persistent_keepalive_interval = seconds
        if not seconds:
            self.persistent_keepalive = None
        elif was_off:
            self.persistent_keepalive = now
            self._armed(now)

    def stop(self) -> None:
        """Cancel every deadline (the peer is removed or the device goes down)."""
        self.retransmit_handshake = self.send_keepalive = self.new_handshake = None
        self.zero_key_material = self.persistent_keepalive = None
        self.queue.forget(self)

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

    def file(self) -> None:
        """Put this peer on the queue for its next deadline, if it has one sooner than its
        entry there."""
        deadline = self.next_deadline()
        if deadline is not None:
            self._armed(deadline)

    def _armed(self, deadline: float) -> None:
        if deadline < self.queued:
            self.queue.push(deadline, self)
