"""Batches on the UDP sockets (wgpy/io/udp_batches.py): how datagrams are grouped for one
UDP_SEGMENT send and how a UDP_GRO receive is split. Both against the kernel, in a namespace, are
in tests/netns/test_offload_udp.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hypothesis import given
from hypothesis import strategies as st

from wgpy.io.udp_batches import (
    MAX_SEGMENTS,
    MAX_SEND,
    SOL_UDP,
    UDP_GRO,
    datagrams_per_send,
    gro_size,
    gso_runs,
    split_gro,
)


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


@given(st.integers(1, 2 * MAX_SEND))
def test_datagrams_per_send_are_one_run_of_gso_runs(size: int) -> None:
    """What the TUN's super-packets are capped at: one UDP_SEGMENT send of full datagrams."""
    count = datagrams_per_send(size)
    assert sizes(gso_runs([bytes(size)] * count)) == [[size] * count]
    if count > 1:
        assert len(list(gso_runs([bytes(size)] * (count + 1)))) == 2


def test_a_1420_byte_mtu_s_sealed_segments_go_45_to_a_send() -> None:
    assert datagrams_per_send(1420 + 32) == 45


def test_no_datagrams_make_no_runs() -> None:
    assert list(gso_runs([])) == []


def test_a_gro_receive_is_split_at_the_size_in_its_control_message() -> None:
    buffer = bytes(range(250))
    control = [(SOL_UDP, UDP_GRO, (100).to_bytes(4, "little"))]
    assert gro_size(control) == 100
    assert [bytes(d) for d in split_gro(buffer, gro_size(control))] == [
        buffer[:100],
        buffer[100:200],
        buffer[200:],
    ]


def test_a_receive_without_the_control_message_is_one_datagram() -> None:
    assert gro_size([]) is None
    assert [bytes(d) for d in split_gro(b"abc", None)] == [b"abc"]


def test_a_size_as_large_as_the_buffer_is_one_datagram() -> None:
    assert split_gro(b"abc", 3) == [b"abc"]


def model_runs(lengths: list[int], limit: int) -> list[list[int]]:
    """gso_runs stated a datagram at a time: a run takes the next while it is no longer than
    the run's first, fits MAX_SEGMENTS and `limit`, and ends after a shorter one."""
    runs: list[list[int]] = []
    for length in lengths:
        run = runs[-1] if runs else []
        if (
            run
            and length <= run[0]
            and len(run) < MAX_SEGMENTS
            and sum(run) + length <= limit
            and run[-1] == run[0]
        ):
            run.append(length)
        else:
            runs.append([length])
    return runs


@given(
    st.lists(st.sampled_from([10, 60, 100, 1000]), max_size=150),
    st.sampled_from([MAX_SEND, 3000, 1100, 640]),
)
def test_runs_are_cut_as_the_rule_says(lengths: list[int], limit: int) -> None:
    assert sizes(gso_runs([bytes(n) for n in lengths], limit)) == model_runs(lengths, limit)
