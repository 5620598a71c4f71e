"""The lock on a running interface's device, which its threads take turns holding.

The data path's thread holds it for each batch of packets; the interface's own thread for each
timer run and each piece of configuration. A plain lock is unfair to whoever waits on it: a
thread that releases it and takes it straight back (a `set` of 100,000 peers applied a step at a
time) takes it again before the waiting thread, woken by the release, gets to run, and the data
path would wait for the whole set. So the lock knows who waits, and `let_waiters_in()` gives them
their turn before the next step.

The data path takes it once a batch as `take_if_free() or take()` and `release()`: when it is
free, as it mostly is, that is two calls into C, where `with` makes two Python-level calls: 4%
of the instructions of a ping's pass through the data path (callgrind, ~2,400 of ~54,000).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial


class DeviceLock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[int] = set()  # the threads blocked on the lock, by ident
        # Takes the lock if it is free, saying whether it did; never waits.
        self.take_if_free: Callable[[], bool] = partial(self._lock.acquire, False)
        self.release: Callable[[], None] = self._lock.release

    def take(self) -> None:
        """Wait for the lock and take it, known meanwhile as a waiter."""
        me = threading.get_ident()
        self._waiting.add(me)
        self._lock.acquire()
        self._waiting.discard(me)

    def __enter__(self) -> None:
        if not self.take_if_free():
            self.take()

    def __exit__(self, *_: object) -> None:
        self._lock.release()

    def let_waiters_in(self) -> None:
        """Return once every thread that waits for the lock now has had it: at once when none
        does. Call it without holding the lock, between two turns of holding it."""
        while self._waiting:
            time.sleep(0)  # Lets the woken waiter have the interpreter, to take the lock.
