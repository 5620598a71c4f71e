"""Busy polling: a thread that has done a wake-up's work polls its files for a moment before it
blocks, so that the answer to what it just sent finds it awake.

Where an idle CPU halts at once (a guest whose cpuidle driver does not poll first, as on the
2-core VM measured: haltpoll with guest_halt_poll_ns=0), waking a thread there costs an
interrupt between CPUs and the host's scheduling of the halted one. benchmarks/latency.py's hop,
a UDP round trip between two processes 2 ms apart, took 10-14 us on one CPU and 116-134 us across
two, and a ping through two daemons pays four such hops. Go's runtime hides part of that with
threads that spin before they park; the kernel offers the same for sockets (SO_BUSY_POLL). Here
the thread polls without blocking, yielding the CPU between polls to whatever else may run on
it, for up to a window after its work, then blocks as before.

Polling that ends in something to do replaced a wake-up; polling that ends with nothing burnt
CPU that sleeping would not, so that is rationed: a bucket gives the thread SHARE of the time
that passes to waste, up to BURST windows in a row; once empty, the thread blocks at once, as
without busy polling, until the bucket fills again. A thread whose polls keep finding nothing (a
server whose packets come just too far apart) wastes at most SHARE of a core; a ping every 20 ms
wastes two windows or so per daemon, far less.

WGPY_BUSY_POLL sets the window in microseconds (0 turns it off). Where this process may run on
one CPU only, nothing else could answer while the thread polls, and there is none.
"""

from __future__ import annotations

import asyncio
import os
import selectors
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from time import monotonic
from typing import Final, TypeVar

VARIABLE: Final = "WGPY_BUSY_POLL"
DEFAULT_WINDOW_US: Final = 400
SHARE: Final = 0.1  # of the thread's time, at most, wasted polling over a while
BURST: Final = 10  # windows in a row from a full bucket

T = TypeVar("T")


@dataclass
class BusyPoll:
    """How long one thread may poll before it blocks: up to `window` seconds after each
    wake-up's work, while a bucket that fills at SHARE of the time that passes holds what
    fruitless polling wastes."""

    window: float
    credit: float = 0.0
    filled_at: float = 0.0

    def allowance(self, now: float) -> float:
        """Seconds this thread may poll from `now` on (0: block at once)."""
        self.credit = min(BURST * self.window, self.credit + (now - self.filled_at) * SHARE)
        self.filled_at = now
        return max(0.0, min(self.window, self.credit))

    def wasted(self, seconds: float) -> None:
        self.credit -= seconds


def for_window(window: float) -> BusyPoll | None:
    """A thread's BusyPoll for a window of `window` seconds; None for 0, no busy polling."""
    return BusyPoll(window) if window > 0 else None


def window_wanted(environ: Mapping[str, str] = os.environ) -> float:
    """The window in seconds: WGPY_BUSY_POLL's microseconds or the default, and 0 where this
    process may run on one CPU only. Raises ValueError unless a whole number of microseconds
    from 0 to 1,000,000."""
    value = environ.get(VARIABLE)
    if value is None:
        microseconds = DEFAULT_WINDOW_US
    elif value.strip().isdigit() and int(value) <= 1_000_000:
        microseconds = int(value)
    else:
        raise ValueError(f"{VARIABLE}={value!r}: not microseconds from 0 to 1000000")
    return microseconds / 1e6 if len(os.sched_getaffinity(0)) > 1 else 0.0


def first_ready(
    poll: Callable[[], Sequence[T]], busy: BusyPoll | None, limit: float | None = None
) -> Sequence[T]:
    """What `poll` (which must not block) finds ready while `busy` allows polling, for `limit`
    seconds at most, yielding the CPU between polls; empty once the allowance is spent, or with
    none."""
    if busy is None:
        return ()
    started = monotonic()
    allowance = busy.allowance(started)
    if limit is not None:
        allowance = min(allowance, limit)
    if allowance <= 0:
        return ()
    until = started + allowance
    ready = poll()
    while not ready and monotonic() < until:
        os.sched_yield()
        ready = poll()
    if not ready:  # Polling that found something saved a wake-up; this one wasted its time.
        busy.wasted(monotonic() - started)
    return ready


def event_loop(window: float) -> asyncio.AbstractEventLoop:
    """An asyncio loop that busy-polls for `window` seconds before it blocks (0: a plain one)."""
    return asyncio.SelectorEventLoop(BusyPollSelector(window) if window > 0 else None)


class BusyPollSelector(selectors.EpollSelector):
    """An epoll selector that busy-polls before it blocks: an asyncio loop's, given as
    asyncio.SelectorEventLoop(BusyPollSelector(window))."""

    def __init__(self, window: float) -> None:
        super().__init__()
        self._busy = for_window(window)
        self._select_now = partial(super().select, 0)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return super().select(0)
        started = monotonic()
        ready = first_ready(self._select_now, self._busy, timeout)  # a timer's due: no later
        if ready:
            return list(ready)
        if timeout is not None:
            timeout = max(0.0, timeout - (monotonic() - started))
        return super().select(timeout)
