"""The parts TCP is built from, each against a trivially correct twin: the receiver's reassembly
and the sender's SACK scoreboard against sets of sequence numbers, and the RTO of RFC 6298."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgpy.netstack import tcp_reassembly, tcp_scoreboard
from wgpy.netstack.tcp_reassembly import Reassembly
from wgpy.netstack.tcp_rtt import RttEstimator
from wgpy.netstack.tcp_scoreboard import Scoreboard

BASE = 1 << 40  # unwrapped sequence numbers go past 2**32
ranges = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 60)), max_size=25)


def runs_of(numbers: set[int]) -> list[tuple[int, int]]:
    """The maximal runs [left, right) of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for number in sorted(numbers):
        if runs and runs[-1][1] == number:
            runs[-1] = (runs[-1][0], number + 1)
        else:
            runs.append((number, number + 1))
    return runs


def stream(offset: int) -> bytes:
    return bytes((BASE + offset + i) % 251 for i in range(61))


@given(ranges, st.integers(0, 400))
def test_reassembly_holds_exactly_what_arrived_and_hands_over_what_is_in_order(
    arrivals: list[tuple[int, int]], rcv_nxt: int
) -> None:
    reassembly, held = Reassembly(), set()
    for start, length in arrivals:
        reassembly.insert(BASE + start, stream(start)[:length])
        held |= set(range(start, start + length))
    assert reassembly.held == len(held)
    expected = [(BASE + left, BASE + right) for left, right in runs_of(held)]
    assert sorted(reassembly.blocks(len(expected) + 1)) == expected
    if arrivals:
        latest, _ = arrivals[-1]
        assert reassembly.blocks(1)[0][0] <= BASE + latest < reassembly.blocks(1)[0][1]
    ready = reassembly.pop_from(BASE + rcv_nxt)
    in_order = 0
    while rcv_nxt + in_order in held:
        in_order += 1
    assert ready == bytes((BASE + rcv_nxt + i) % 251 for i in range(in_order))
    assert reassembly.held == len({n for n in held if n > rcv_nxt + in_order})


@given(ranges, st.integers(0, 400))
def test_the_scoreboard_holds_the_union_of_sacks_and_its_holes_are_the_gaps(
    sacks: list[tuple[int, int]], snd_una: int
) -> None:
    board, sacked = Scoreboard(), set()
    for left, length in sacks:
        news = board.add(BASE + left, BASE + left + length)
        assert news == (not set(range(left, left + length)) <= sacked)
        sacked |= set(range(left, left + length))
    board.advance(BASE + snd_una)
    sacked = {n for n in sacked if n >= snd_una}
    assert board.sacked == len(sacked)
    highest = max(sacked, default=None)
    assert board.highest == (None if highest is None else BASE + highest + 1)
    holes = {n for n in range(snd_una, -1 if highest is None else highest) if n not in sacked}
    assert list(board.holes(BASE + snd_una)) == [
        (BASE + left, BASE + right) for left, right in runs_of(holes)
    ]


def test_reassembly_holds_a_bounded_number_of_runs_but_still_grows_them() -> None:
    reassembly = Reassembly()
    kept = [reassembly.insert(BASE + 2 * i, b"x") for i in range(2 * tcp_reassembly.MAX_RUNS)]
    assert kept.count(True) == tcp_reassembly.MAX_RUNS == len(reassembly.blocks(10**6))
    assert reassembly.insert(BASE + 1, b"y")  # joins two runs: always kept
    assert len(reassembly.blocks(10**6)) == tcp_reassembly.MAX_RUNS - 1


def test_the_scoreboard_holds_a_bounded_number_of_runs() -> None:
    board = Scoreboard()
    for i in range(2 * tcp_scoreboard.MAX_RUNS):
        board.add(BASE + 2 * i, BASE + 2 * i + 1)
    assert board.sacked == tcp_scoreboard.MAX_RUNS
    assert board.add(BASE + 1, BASE + 2)  # joins two runs: always taken
    assert board.sacked == tcp_scoreboard.MAX_RUNS + 1


def test_the_rto_starts_at_one_second_and_follows_rfc_6298_after_samples() -> None:
    rtt = RttEstimator()
    assert rtt.rto == 1.0
    rtt.sample(0.5)
    assert (rtt.srtt, rtt.rttvar, rtt.rto) == (0.5, 0.25, 0.5 + 4 * 0.25)
    rtt.sample(0.1)
    assert rtt.rttvar == pytest.approx(0.75 * 0.25 + 0.25 * 0.4)
    assert rtt.srtt == pytest.approx(0.875 * 0.5 + 0.125 * 0.1)


def test_the_rto_has_a_floor_and_a_ceiling_and_doubles_per_backoff() -> None:
    rtt = RttEstimator(rto_min=0.2, rto_max=120.0)
    rtt.sample(0.001)
    assert rtt.rto == 0.2
    rtt.backoff = 3
    assert rtt.rto == 1.6
    rtt.backoff = 20
    assert rtt.rto == 120.0
