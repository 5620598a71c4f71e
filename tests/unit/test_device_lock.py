"""The device lock: a thread that waits for it gets a turn between another's turns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from wgpy.io.device_lock import DeviceLock


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_waiting_thread_gets_the_lock_between_two_turns_of_another() -> None:
    lock = DeviceLock()
    order: list[str] = []

    def wait_for_a_turn() -> None:
        with lock:
            order.append("waiter")

    waiter = threading.Thread(target=wait_for_a_turn)
    with lock:
        waiter.start()
        wait_for(lambda: lock._waiting)  # White-box: the waiter is blocked on the lock.
        order.append("first turn")
    lock.let_waiters_in()
    with lock:
        order.append("second turn")
    waiter.join()
    assert order == ["first turn", "waiter", "second turn"]


def test_letting_waiters_in_costs_nothing_when_none_waits() -> None:
    lock = DeviceLock()
    started = time.perf_counter()
    for _ in range(1000):
        with lock:
            pass
        lock.let_waiters_in()
    assert time.perf_counter() - started < 0.1
