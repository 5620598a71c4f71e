"""Batches on the UDP sockets (wgpy/io/udp_batches.py): how datagrams are grouped for one
UDP_SEGMENT send, how a UDP_GRO receive is split, and both against the kernel in a namespace."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Sequence

import pytest

from wgpy.io.readiness import input_waiting
from wgpy.io.udp_batches import (
    MAX_SEGMENTS,
    SOL_UDP,
    UDP_GRO,
    UdpBatches,
    enable_gro,
    gso_runs,
    split_gro,
    supports_gso,
)
from wgpy.lab.netns import Namespace


def sizes(runs: Iterable[Sequence[bytes]]) -> list[list[int]]:
    return [[len(d) for d in run] for run in runs]


def test_datagrams_of_one_size_go_in_one_run_and_a_shorter_one_ends_it() -> None:
    datagrams = [bytes(100)] * 5 + [bytes(60)] + [bytes(100)] * 2
    assert sizes(gso_runs(datagrams)) == [[100] * 5 + [60], [100, 100]]


def test_a_longer_datagram_starts_a_new_run() -> None:
    datagrams = [bytes(60)] * 2 + [bytes(100)] * 2
    assert sizes(gso_runs(datagrams)) == [[60, 60], [100, 100]]


def test_a_run_holds_at_most_the_kernels_segment_limit_and_byte_limit() -> None:
    assert sizes(gso_runs([bytes(10)] * (MAX_SEGMENTS + 1))) == [[10] * MAX_SEGMENTS, [10]]
    assert sizes(gso_runs([bytes(1000)] * 5, limit=3000)) == [[1000] * 3, [1000] * 2]


def test_no_datagrams_make_no_runs() -> None:
    assert list(gso_runs([])) == []


def test_a_gro_receive_is_split_at_the_size_in_its_control_message() -> None:
    buffer = bytes(range(250))
    control = [(SOL_UDP, UDP_GRO, (100).to_bytes(4, "little"))]
    assert [bytes(d) for d in split_gro(buffer, control)] == [
        buffer[:100],
        buffer[100:200],
        buffer[200:],
    ]


def test_a_receive_without_the_control_message_is_one_datagram() -> None:
    assert [bytes(d) for d in split_gro(b"abc", [])] == [b"abc"]


@pytest.fixture
def pair(netns: Namespace) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A sender and a receiver on the loopback of a fresh namespace."""
    with netns.entered():
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sender, receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        yield sender, receiver


def test_a_segmented_send_arrives_as_the_datagrams_it_carries(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    assert supports_gso(sender)
    datagrams = [os.urandom(200) for _ in range(7)] + [os.urandom(33)]

    UdpBatches(gso=True, gro=False).send(sender, datagrams, receiver.getsockname())

    assert [receiver.recv(1000) for _ in datagrams] == datagrams


def test_a_gro_receive_hands_over_the_datagrams_of_one_source_together(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    assert enable_gro(receiver)
    datagrams = [os.urandom(200) for _ in range(7)] + [os.urandom(33)]
    UdpBatches(gso=True, gro=False).send(sender, datagrams, receiver.getsockname())

    received: list[bytes] = []
    while len(received) < len(datagrams):
        batch, source = UdpBatches(gso=False, gro=True).receive_one(receiver)
        assert source[1] == sender.getsockname()[1]
        received += [bytes(d) for d in batch]

    assert received == datagrams


def test_a_wake_up_takes_what_waits_as_runs_from_one_source_each(
    pair: tuple[socket.socket, socket.socket], netns: Namespace
) -> None:
    sender, receiver = pair
    with netns.entered():
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with other:
        for sock, data in ((sender, b"a1"), (sender, b"a2"), (other, b"b1"), (sender, b"a3")):
            sock.sendto(data, receiver.getsockname())
        receiver.setblocking(False)  # as the data path keeps its sockets

        batches = UdpBatches(gso=False, gro=False).receive(receiver, input_waiting(receiver))
        a, b = sender.getsockname()[1], other.getsockname()[1]

    assert [([bytes(d) for d in datagrams], source[1]) for datagrams, source in batches] == [
        ([b"a1", b"a2"], a),
        ([b"b1"], b),
        ([b"a3"], a),
    ]


def test_a_wake_up_with_nothing_waiting_raises_blocking_io_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, receiver = pair
    receiver.setblocking(False)
    with pytest.raises(BlockingIOError):
        UdpBatches(gso=False, gro=True).receive(receiver, input_waiting(receiver))


def test_without_offloads_each_datagram_is_its_own_system_call(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    plain = UdpBatches(gso=False, gro=False)
    plain.send(sender, [b"one", b"two"], receiver.getsockname())
    assert plain.receive_one(receiver)[0] == [memoryview(b"one")]
    assert plain.receive_one(receiver)[0] == [memoryview(b"two")]
