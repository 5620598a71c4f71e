"""The data path: a wake-up serves the sockets before the TUN; the writers start and stop with it,
each destination's writes go in the order the device gave them, a lone packet is written at once
when its writer is idle, and a writer that fails or finds the interface gone never stops the
data path."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence, Set
from typing import Any, cast

import pytest

from wgpy.core.device import Action, Device, SendDatagrams, WriteTun
from wgpy.core.endpoint import Endpoint, Local
from wgpy.io.datapath import DataPath
from wgpy.io.device_lock import DeviceLock
from wgpy.io.tun_batches import TunBatches
from wgpy.io.udp_batches import UdpBatches

PEER = Endpoint("192.0.2.7", 51820)
BOTH = frozenset({"tun", "udp"})
# Two packets of a batch big enough to be handed over, and two ACKs' worth, small enough not.
BIG = [b"a" * 4096, b"b" * 4096]
SMALL = [b"a" * 52, b"b" * 52]


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class FakeTun:
    """A TUN that is never readable and records what is written, by which thread."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self.written: list[bytes] = []
        self.threads: list[str] = []
        self.delay = 0.0
        self.error: OSError | None = None

    def fileno(self) -> int:
        return self._r

    def read(self) -> list[bytes]:
        raise BlockingIOError

    def write(self, packets: Sequence[bytes]) -> None:
        if self.error is not None:
            raise self.error
        time.sleep(self.delay)
        self.written += packets
        self.threads.append(threading.current_thread().name)

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


class FakeUdp:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.error: Exception | None = None

    def send(
        self,
        sock: socket.socket,
        datagrams: Sequence[bytes],
        endpoint: Endpoint,
        local: Local | None,
    ) -> bool:
        if self.error is not None:
            raise self.error
        self.sent += datagrams
        return True


@pytest.fixture
def tun() -> Iterator[FakeTun]:
    tun = FakeTun()
    yield tun
    tun.close()


@pytest.fixture
def udp() -> FakeUdp:
    return FakeUdp()


@pytest.fixture
def gone() -> list[str]:
    return []


@pytest.fixture
def make(tun: FakeTun, udp: FakeUdp, gone: list[str]) -> Iterator[Callable[..., DataPath]]:
    made: list[tuple[DataPath, socket.socket]] = []

    def make(writers: Set[str] = BOTH) -> DataPath:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        path = DataPath(
            "wgtest", cast(Device, None), DeviceLock(), cast(TunBatches, tun),
            cast(UdpBatches, udp), [sock], lambda: gone.append("gone"), writers=writers,
        )  # fmt: skip
        made.append((path, sock))
        return path

    yield make
    for path, sock in made:
        path.close()
        sock.close()


def thread_names() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


WRITERS = {"wgtest-tun", "wgtest-udp"}


def test_the_writers_start_and_stop_with_the_data_path(make: Callable[..., DataPath]) -> None:
    path = make()
    path.start()
    assert {"wgtest-data", *WRITERS} <= thread_names()
    path.stop()
    assert not {"wgtest-data", *WRITERS} & thread_names()
    path.start()  # as a new listen port restarts it
    assert thread_names() >= WRITERS
    path.stop()


def test_without_writers_no_writer_thread_runs(make: Callable[..., DataPath]) -> None:
    path = make(set())
    path.start()
    assert "wgtest-data" in thread_names()
    assert not WRITERS & thread_names()
    path.stop()


def test_only_the_destinations_named_get_a_writer(
    make: Callable[..., DataPath], tun: FakeTun, udp: FakeUdp
) -> None:
    path = make({"tun"})
    path.start()
    assert "wgtest-tun" in thread_names()
    assert "wgtest-udp" not in thread_names()
    path.carry_out([WriteTun(BIG), SendDatagrams(BIG, PEER)])
    path.stop()
    assert tun.threads == ["wgtest-tun"]
    assert udp.sent == BIG


def test_a_batch_goes_to_the_writer_and_a_lone_or_small_one_is_written_at_once_when_it_is_idle(
    make: Callable[..., DataPath], tun: FakeTun, udp: FakeUdp
) -> None:
    path = make()
    path.start()
    path.carry_out([WriteTun(BIG), SendDatagrams(BIG, PEER)])
    path.stop()
    assert tun.threads == ["wgtest-tun"]
    assert udp.sent == BIG
    path.start()
    path.carry_out([WriteTun([b"ping"])])
    path.carry_out([WriteTun(SMALL)])
    path.stop()
    here = threading.current_thread().name
    assert tun.threads == ["wgtest-tun", here, here]


def test_each_destination_keeps_its_order_under_a_burst_of_batches_and_lone_packets(
    make: Callable[..., DataPath], tun: FakeTun, udp: FakeUdp
) -> None:
    """A lone packet finds its writer busy with the batches before it: it waits its turn."""
    path = make()
    path.start()
    tun.delay = 0.0005
    packets = [str(n).encode().rjust(5000, b"-") for n in range(600)]
    expected: list[bytes] = []
    for start in range(0, len(packets), 3):
        run = packets[start : start + 3]
        batch: list[Action] = [WriteTun(run[:2]), SendDatagrams(run[:2], PEER)]
        path.carry_out(batch)  # two packets each way: handed over
        path.carry_out([WriteTun(run[2:]), SendDatagrams(run[2:], PEER)])  # lone, or queued
        expected += run
    path.stop()
    assert tun.written == expected
    assert udp.sent == expected
    assert "wgtest-tun" in tun.threads


def test_a_failing_writer_counts_what_it_dropped_and_the_data_path_goes_on(
    make: Callable[..., DataPath], tun: FakeTun, udp: FakeUdp
) -> None:
    path = make()
    path.start()
    udp.error = ValueError("a bug in a send")
    path.carry_out([SendDatagrams(BIG, PEER)])
    wait_for(lambda: path.writer_failures == 1)
    udp.error = None
    path.carry_out([SendDatagrams(BIG, PEER)])
    wait_for(lambda: udp.sent == BIG)
    path.stop()


def test_an_interface_gone_under_a_writer_shuts_down_and_stop_still_returns(
    make: Callable[..., DataPath], tun: FakeTun, gone: list[str]
) -> None:
    path = make()
    path.start()
    tun.error = OSError(errno.EBADFD, "File descriptor in bad state")
    path.carry_out([WriteTun(BIG)])
    path.carry_out([WriteTun(BIG)])
    wait_for(lambda: gone)
    path.stop()
    assert gone == ["gone"]
    assert not path.running


def test_a_full_writer_queue_holds_the_data_path_back(
    make: Callable[..., DataPath], tun: FakeTun
) -> None:
    """Backpressure: nothing queues beyond the writer's depth; the caller waits instead."""
    path = make()
    path.start()
    tun.delay = 0.02
    started = time.monotonic()
    for _ in range(20):
        path.carry_out([WriteTun(BIG)])
    handed_over_in = time.monotonic() - started
    writer: Any = path._tun_writer  # White-box
    assert writer._jobs.qsize() <= writer._depth
    # 20 writes of 20 ms behind a queue of 8: the last hand-over waited for ~11 of them.
    assert handed_over_in >= 0.15
    path.stop()
    assert len(tun.written) == 40


class TurnTun(FakeTun):
    """A TUN with a packet waiting, whose read notes its turn in `turns`."""

    def __init__(self, turns: list[str]) -> None:
        super().__init__()
        self.turns = turns
        os.write(self._w, b"\0")

    def read(self) -> list[bytes]:
        self.turns.append("tun")
        os.read(self._r, 1)
        raise BlockingIOError


class TurnUdp(FakeUdp):
    """Sockets whose receive notes its turn in `turns`, and takes the datagram waiting."""

    def __init__(self, turns: list[str]) -> None:
        super().__init__()
        self.turns = turns

    def receive(self, sock: socket.socket, waiting: Callable[[], object]) -> list[object]:
        self.turns.append("udp")
        sock.recv(64)
        raise BlockingIOError


def test_a_wake_up_carries_the_sockets_batches_before_the_tuns() -> None:
    """So that the TUN's read takes, in the same wake-up, what the kernel answered to the
    packets the sockets' batches wrote to it (a TCP receiver's ACK, a sender's next data)."""
    turns: list[str] = []
    tun = TurnTun(turns)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(b"datagram", sock.getsockname())
        path = DataPath(
            "wgtest", cast(Device, None), DeviceLock(), cast(TunBatches, tun),
            cast(UdpBatches, TurnUdp(turns)), [sock], lambda: None, writers=set(),
        )  # fmt: skip
        path.start()
        wait_for(lambda: len(turns) == 2)
        path.close()
    tun.close()
    assert turns == ["udp", "tun"]
