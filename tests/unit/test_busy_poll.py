"""Busy polling (wgpy/io/busy_poll.py): a thread polls for a window before it blocks, and what
fruitless polling wastes is rationed to a share of its time."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from wgpy.io import busy_poll
from wgpy.io.busy_poll import BURST, SHARE, BusyPoll, BusyPollSelector, first_ready

WINDOW = 0.0004


def drained(window: float = WINDOW) -> BusyPoll:
    """A BusyPoll whose bucket is empty at time 100."""
    busy = BusyPoll(window)
    busy.allowance(100.0)
    busy.wasted(busy.credit)
    return busy


# -- the ration ----------------------------------------------------------------------------------


def test_a_thread_new_to_polling_has_a_full_bucket_and_polls_a_whole_window() -> None:
    busy = BusyPoll(WINDOW)
    assert busy.allowance(100.0) == WINDOW
    assert busy.credit == pytest.approx(BURST * WINDOW)


def test_wasted_polling_empties_the_bucket_and_then_the_thread_blocks_at_once() -> None:
    busy = BusyPoll(WINDOW)
    for _ in range(BURST):
        assert busy.allowance(100.0) == pytest.approx(WINDOW)
        busy.wasted(WINDOW)
    assert busy.allowance(100.0) == pytest.approx(0.0, abs=1e-12)


def test_the_bucket_fills_at_its_share_of_the_time_that_passes() -> None:
    busy = drained()
    assert busy.allowance(100.0 + WINDOW / SHARE / 2) == pytest.approx(WINDOW / 2)
    assert busy.allowance(100.0 + WINDOW / SHARE) == pytest.approx(WINDOW)


def test_the_bucket_holds_no_more_than_a_burst_of_windows() -> None:
    busy = drained()
    busy.allowance(1e6)
    assert busy.credit == pytest.approx(BURST * WINDOW)


# -- polling ---------------------------------------------------------------------------------


def test_without_busy_polling_nothing_is_polled() -> None:
    assert first_ready(lambda: pytest.fail("polled"), None) == ()


def test_what_is_ready_at_once_is_returned_and_costs_the_bucket_nothing() -> None:
    busy = BusyPoll(WINDOW)
    assert first_ready(lambda: [7], busy) == [7]
    assert busy.credit == pytest.approx(BURST * WINDOW)


def test_polling_goes_on_until_something_is_ready_and_that_costs_nothing() -> None:
    busy, answers = BusyPoll(1.0), iter([[], [], [3]])
    assert first_ready(lambda: next(answers), busy) == [3]
    assert busy.credit == pytest.approx(BURST * 1.0)


def test_polling_that_finds_nothing_ends_with_its_window_and_is_charged() -> None:
    busy = BusyPoll(0.002)
    started = time.monotonic()
    assert not first_ready(list, busy)
    spent = time.monotonic() - started
    assert 0.002 <= BURST * 0.002 - busy.credit <= spent


def test_polling_stops_at_the_limit_given_before_its_window_ends() -> None:
    busy = BusyPoll(10.0)
    started = time.monotonic()
    assert not first_ready(list, busy, limit=0.002)
    assert time.monotonic() - started < 1.0


def test_a_bucket_in_debt_polls_nothing() -> None:
    # A window's polls may overrun it by a poll; the debt is paid before polling again.
    busy = BusyPoll(WINDOW, credit=-WINDOW, filled_at=time.monotonic())
    assert first_ready(lambda: pytest.fail("polled"), busy) == ()


# -- the window from the environment ---------------------------------------------------------


def two_cpus(monkeypatch: pytest.MonkeyPatch, count: int = 2) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(count)))


def test_the_default_window_is_400_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    two_cpus(monkeypatch)
    assert busy_poll.window_wanted({}) == pytest.approx(0.0004)


def test_the_variable_sets_the_window_in_microseconds_and_0_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    two_cpus(monkeypatch)
    assert busy_poll.window_wanted({"WGPY_BUSY_POLL": "50"}) == pytest.approx(0.00005)
    assert busy_poll.window_wanted({"WGPY_BUSY_POLL": "0"}) == 0.0


def test_a_process_on_one_cpu_never_busy_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    two_cpus(monkeypatch, count=1)
    assert busy_poll.window_wanted({"WGPY_BUSY_POLL": "400"}) == 0.0


@pytest.mark.parametrize("value", ["", "abc", "-5", "1.5", "1000001"])
def test_a_bad_window_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=r"WGPY_BUSY_POLL=.*not microseconds from 0 to 1000000"):
        busy_poll.window_wanted({"WGPY_BUSY_POLL": value})


# -- the asyncio selector ----------------------------------------------------------------------


def test_the_selector_finds_what_arrives_while_it_polls() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, BusyPollSelector(1.0) as selector:
        selector.register(ours, 1)  # EVENT_READ
        threading.Timer(0.005, theirs.send, (b"x",)).start()
        (key, _), *others = selector.select(timeout=None)
        assert (key.fileobj, others) == (ours, [])


def test_the_selector_keeps_a_timers_deadline_however_long_its_window() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, BusyPollSelector(10.0) as selector:
        selector.register(ours, 1)
        started = time.monotonic()
        assert selector.select(timeout=0.01) == []
        assert time.monotonic() - started < 1.0


def test_an_asyncio_loop_runs_on_the_busy_polling_selector() -> None:
    async def echoed() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(5))
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        answer = await reader.read(5)
        writer.close()
        server.close()
        return answer

    with asyncio.Runner(loop_factory=lambda: busy_poll.event_loop(WINDOW)) as runner:
        assert runner.run(echoed()) == b"hello"
