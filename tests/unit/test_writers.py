"""A writer carries out the writes handed to it on its own thread, in order, with a bounded
queue in front: a failed write is counted, never raised; a vanished interface is reported once."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wgpy.io.writers import Writer, writers_wanted


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@pytest.fixture
def gone() -> list[str]:
    return []


@pytest.fixture
def writer(gone: list[str]) -> Iterator[Writer]:
    writer = Writer("test-writer", lambda: gone.append("gone"), depth=4, kernel_name="w19-writer")
    writer.start()
    yield writer
    if writer.running:
        writer.stop()


def test_a_burst_is_written_in_the_order_handed_over_on_the_writers_thread(
    writer: Writer,
) -> None:
    written: list[int] = []
    threads: set[str] = set()

    def write(number: int) -> None:
        written.append(number)
        threads.add(threading.current_thread().name)

    for number in range(2000):
        writer.hand_over(write, number)
    writer.stop()
    assert written == list(range(2000))
    assert threads == {"test-writer"}


def test_the_kernel_knows_the_thread_by_its_kernel_name(writer: Writer) -> None:
    native: list[int] = []
    writer.hand_over(lambda: native.append(threading.get_native_id()))
    wait_for(writer.idle)
    assert Path(f"/proc/self/task/{native[0]}/comm").read_text() == "w19-writer\n"


def test_a_full_queue_makes_the_hand_over_wait_until_a_write_is_done(writer: Writer) -> None:
    """Backpressure: `depth` writes handed over and not done, one in progress; the next waits
    for one to be done."""
    release = threading.Event()
    writer.hand_over(release.wait)
    for _ in range(3):
        writer.hand_over(lambda: None)
    handed = threading.Event()

    def hand_over_one_more() -> None:
        writer.hand_over(lambda: None)
        handed.set()

    late = threading.Thread(target=hand_over_one_more)
    late.start()
    assert not handed.wait(0.2)
    release.set()
    assert handed.wait(5)
    late.join()


def test_idle_only_once_every_write_handed_over_is_done(writer: Writer) -> None:
    release = threading.Event()
    assert writer.idle()
    writer.hand_over(release.wait)
    assert not writer.idle()
    release.set()
    wait_for(writer.idle)


def test_failed_writes_are_counted_and_the_writer_goes_on(writer: Writer) -> None:
    written: list[str] = []

    def fail(error: Exception) -> None:
        raise error

    writer.hand_over(fail, OSError(errno.EIO, "refused"))
    writer.hand_over(fail, ValueError("a bug"))
    writer.hand_over(written.append, "after")
    writer.stop()
    assert writer.failures == 2
    assert written == ["after"]


def test_an_interface_gone_is_reported_once_and_not_counted_as_a_failure(
    writer: Writer, gone: list[str]
) -> None:
    def vanished() -> None:
        raise OSError(errno.EBADFD, "File descriptor in bad state")

    for _ in range(3):
        writer.hand_over(vanished)
    writer.stop()
    assert gone == ["gone"]
    assert writer.failures == 0


def test_stop_writes_what_was_handed_over_and_a_stopped_writer_writes_at_once(
    writer: Writer,
) -> None:
    written: list[tuple[int, str]] = []

    def write(number: int) -> None:
        time.sleep(0.001)
        written.append((number, threading.current_thread().name))

    for number in range(4):
        writer.hand_over(write, number)
    writer.stop()
    assert [n for n, _ in written] == [0, 1, 2, 3]
    assert not writer.running
    assert not any(t.name == "test-writer" for t in threading.enumerate())
    writer.hand_over(write, 4)
    assert written[-1] == (4, threading.current_thread().name)


def test_the_writers_are_the_destinations_set_or_by_default_the_tuns_where_four_cpus_may_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert writers_wanted({"WGPY_WRITERS": "tun"}) == {"tun"}
    assert writers_wanted({"WGPY_WRITERS": "tun, udp"}) == {"tun", "udp"}
    assert writers_wanted({"WGPY_WRITERS": "none"}) == set()
    assert writers_wanted({"WGPY_WRITERS": ""}) == set()
    with pytest.raises(ValueError, match="WGPY_WRITERS='yes'"):
        writers_wanted({"WGPY_WRITERS": "yes"})
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert writers_wanted({}) == set()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert writers_wanted({}) == set()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert writers_wanted({}) == {"tun"}
