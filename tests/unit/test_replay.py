"""The anti-replay window, against the kernel's selftest and a trivially correct model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wgpy.core.constants import COUNTER_BITS_TOTAL, COUNTER_WINDOW_SIZE, REJECT_AFTER_MESSAGES
from wgpy.core.replay import ReplayFilter

# The Linux kernel's drivers/net/wireguard/selftest/counter.c, wg_packet_counter_selftest(): the
# table of (counter, expected) cases run in order on one filter, numbered as there.
T_LIM = COUNTER_WINDOW_SIZE + 1
KERNEL_TABLE = [
    (0, True),  # 1
    (1, True),  # 2
    (1, False),  # 3
    (9, True),  # 4
    (8, True),  # 5
    (7, True),  # 6
    (7, False),  # 7
    (T_LIM, True),  # 8
    (T_LIM - 1, True),  # 9
    (T_LIM - 1, False),  # 10
    (T_LIM - 2, True),  # 11
    (2, True),  # 12
    (2, False),  # 13
    (T_LIM + 16, True),  # 14
    (3, False),  # 15
    (T_LIM + 16, False),  # 16
    (T_LIM * 4, True),  # 17
    (T_LIM * 4 - (T_LIM - 1), True),  # 18
    (10, False),  # 19
    (T_LIM * 4 - T_LIM, False),  # 20
    (T_LIM * 4 - (T_LIM + 1), False),  # 21
    (T_LIM * 4 - (T_LIM - 2), True),  # 22
    (T_LIM * 4 + 1 - T_LIM, False),  # 23
    (0, False),  # 24
    (REJECT_AFTER_MESSAGES, False),  # 25
    (REJECT_AFTER_MESSAGES - 1, True),  # 26
    (REJECT_AFTER_MESSAGES, False),  # 27
    (REJECT_AFTER_MESSAGES - 1, False),  # 28
    (REJECT_AFTER_MESSAGES - 2, True),  # 29
    (REJECT_AFTER_MESSAGES + 1, False),  # 30
    (REJECT_AFTER_MESSAGES + 2, False),  # 31
    (REJECT_AFTER_MESSAGES - 2, False),  # 32
    (REJECT_AFTER_MESSAGES - 3, True),  # 33
    (0, False),  # 34
]


def validate_all(replay: ReplayFilter, counters: range | list[int]) -> list[bool]:
    return [replay.validate(counter) for counter in counters]


def test_kernel_selftest_table_in_order() -> None:
    replay = ReplayFilter()
    results = validate_all(replay, [counter for counter, _ in KERNEL_TABLE])
    assert results == [expected for _, expected in KERNEL_TABLE]


# The bulk cases that follow the table in selftest/counter.c, each on a fresh filter.


def test_a_full_window_in_order_still_admits_zero_at_its_far_edge() -> None:
    replay = ReplayFilter()
    assert all(validate_all(replay, range(1, COUNTER_WINDOW_SIZE + 1)))
    assert replay.validate(0)
    assert not replay.validate(0)


def test_one_past_a_full_window_admits_one_but_zero_has_fallen_out() -> None:
    replay = ReplayFilter()
    assert all(validate_all(replay, range(2, COUNTER_WINDOW_SIZE + 2)))
    assert replay.validate(1)
    assert not replay.validate(0)


def test_a_full_window_in_reverse_order_is_all_admitted() -> None:
    replay = ReplayFilter()
    assert all(validate_all(replay, range(COUNTER_WINDOW_SIZE, -1, -1)))


def test_reverse_order_from_one_past_the_window_leaves_zero_out() -> None:
    replay = ReplayFilter()
    assert all(validate_all(replay, range(COUNTER_WINDOW_SIZE + 1, 0, -1)))
    assert not replay.validate(0)


def test_reverse_order_then_one_step_forward_pushes_zero_out() -> None:
    replay = ReplayFilter()
    assert all(validate_all(replay, range(COUNTER_WINDOW_SIZE, 0, -1)))
    assert replay.validate(COUNTER_WINDOW_SIZE + 1)
    assert not replay.validate(0)


def test_reverse_order_down_to_zero_then_one_step_forward() -> None:
    replay = ReplayFilter()
    assert all(validate_all(replay, range(COUNTER_WINDOW_SIZE, 0, -1)))
    assert replay.validate(0)
    assert replay.validate(COUNTER_WINDOW_SIZE + 1)


# Our own cases.


def test_in_order_counters_across_many_ring_wraps_are_admitted_once() -> None:
    replay = ReplayFilter()
    last = 3 * COUNTER_BITS_TOTAL + 5
    assert all(validate_all(replay, range(last + 1)))
    window = range(last - COUNTER_WINDOW_SIZE, last + 1)
    assert not any(validate_all(replay, window))
    assert replay.greatest == last


def test_a_counter_skipped_just_after_the_ring_wraps_is_still_fresh() -> None:
    replay = ReplayFilter()
    # In order into the first word after a full turn of the ring, whose slot held old bits.
    assert all(validate_all(replay, range(COUNTER_BITS_TOTAL + 1)))
    assert replay.validate(COUNTER_BITS_TOTAL + 10)
    assert all(validate_all(replay, range(COUNTER_BITS_TOTAL + 1, COUNTER_BITS_TOTAL + 10)))


def test_greatest_tracks_the_highest_counter_accepted() -> None:
    replay = ReplayFilter()
    assert replay.greatest is None
    replay.validate(0)
    assert replay.greatest == 0
    replay.validate(100)
    replay.validate(50)
    assert replay.greatest == 100
    replay.validate(100)
    replay.validate(REJECT_AFTER_MESSAGES)
    assert replay.greatest == 100


def test_reset_forgets_every_counter() -> None:
    replay = ReplayFilter()
    validate_all(replay, [0, 1, 2, 5 * COUNTER_BITS_TOTAL])
    replay.reset()
    assert replay.greatest is None
    assert validate_all(replay, [0, 1, 2]) == [True, True, True]


def test_negative_counters_are_rejected() -> None:
    replay = ReplayFilter()
    assert not replay.validate(-1)
    assert replay.greatest is None


class ModelFilter:
    """The kernel's semantics, stated directly: a counter is accepted if it is below
    REJECT_AFTER_MESSAGES, was never accepted, and is at most COUNTER_WINDOW_SIZE below the
    greatest counter accepted so far."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.greatest: int | None = None

    def validate(self, counter: int) -> bool:
        too_old = self.greatest is not None and counter < self.greatest - COUNTER_WINDOW_SIZE
        if counter >= REJECT_AFTER_MESSAGES or counter in self.seen or too_old:
            return False
        self.seen.add(counter)
        self.greatest = counter if self.greatest is None else max(self.greatest, counter)
        return True


# Steps are offsets from the greatest counter accepted so far, weighted toward the window's edges,
# word boundaries and long jumps that wrap the ring.
_EDGES = [
    -COUNTER_WINDOW_SIZE - 1,
    -COUNTER_WINDOW_SIZE,
    -COUNTER_WINDOW_SIZE + 1,
    -COUNTER_BITS_TOTAL,
    -64,
    0,
    1,
    63,
    64,
    65,
    COUNTER_WINDOW_SIZE,
    COUNTER_BITS_TOTAL,
    COUNTER_BITS_TOTAL + 1,
]
_STEPS = st.one_of(
    st.integers(-COUNTER_WINDOW_SIZE - 130, 130),
    st.sampled_from(_EDGES),
    st.integers(-3 * COUNTER_BITS_TOTAL, 3 * COUNTER_BITS_TOTAL),
)
_STARTS = st.one_of(
    st.just(0),
    st.integers(0, 4 * COUNTER_BITS_TOTAL),
    st.integers(REJECT_AFTER_MESSAGES - 2 * COUNTER_BITS_TOTAL, REJECT_AFTER_MESSAGES + 2),
)
# After each step, a run of in-order counters: runs cross word boundaries on the fast path.
_RUNS = st.one_of(st.integers(0, 2), st.integers(0, 3 * 64))


@given(start=_STARTS, steps=st.lists(st.tuples(_STEPS, _RUNS), max_size=100))
def test_filter_agrees_with_the_model(start: int, steps: list[tuple[int, int]]) -> None:
    replay, model = ReplayFilter(), ModelFilter()
    counter = start
    for step, run in [*steps, (0, 0)]:
        for in_order in range(counter, counter + run + 1):
            assert replay.validate(in_order) == model.validate(in_order), in_order
            assert replay.greatest == model.greatest
        counter = max(0, (model.greatest or 0) + step)


@given(
    start=_STARTS,
    steps=st.lists(st.tuples(st.just(0) | _STEPS, _RUNS), max_size=60),
)
def test_a_run_validated_at_once_is_its_counters_validated_in_turn(
    start: int, steps: list[tuple[int, int]]
) -> None:
    """Twin filters, one given each run of counters at once (validate_run), the other each
    counter in turn: a run is taken when it is the next in order, and leaves the same window;
    any other run is refused whole, and its first counter then goes to both one at a time."""
    at_once, in_turn = ReplayFilter(), ReplayFilter()
    counter = start
    for step, run in steps:
        if at_once.validate_run(counter, run):
            expected = 0 if in_turn.greatest is None else in_turn.greatest + 1
            assert run and counter == expected
            assert all(in_turn.validate(fresh) for fresh in range(counter, counter + run))
        else:
            assert not at_once.in_order(counter, run)
            assert at_once.validate(counter) == in_turn.validate(counter)
        assert at_once._bitmap == in_turn._bitmap and at_once.greatest == in_turn.greatest
        counter = max(0, (in_turn.greatest or 0) + 1 + step)
