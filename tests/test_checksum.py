"""Internet checksums (RFC 1071), one buffer at a time and many segments at once, with numpy
and without it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wgpy.io import checksum
from wgpy.io.checksum import fold, ones_complement_sum, sums


@pytest.fixture(params=["numpy", "pure"])
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test with numpy's vectorised sums, and again as if numpy were not installed."""
    saved = checksum._numpy
    if request.param == "pure":
        checksum._numpy = None
    else:
        pytest.importorskip("numpy", reason="numpy is in the test extras; install wgpy[test]")
    try:
        yield request.param
    finally:
        checksum._numpy = saved


segments_strategy = st.lists(st.binary(max_size=3000), max_size=40)


# The fixture only chooses the path, the same for every example.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=segments_strategy, initial=st.integers(min_value=1, max_value=2**20))
def test_each_segment_sum_folds_to_its_ones_complement_sum(
    path: str, segments: list[bytes], initial: int
) -> None:
    for segment, total in zip(segments, sums(segments), strict=True):
        assert fold(initial + total) == ones_complement_sum(segment, initial)


def test_a_super_packet_worth_of_segments_takes_the_vectorised_path(path: str) -> None:
    segments = [bytes([n]) * 1400 for n in range(1, 47)] + [b"\xff" * 333, b""]

    totals = sums(segments)

    assert [fold(total) for total in totals[:-1]] == [ones_complement_sum(s) for s in segments[:-1]]
    assert totals[-1] == 0
    assert sum(map(len, segments)) >= checksum.NUMPY_THRESHOLD


def test_odd_lengths_are_padded_with_a_zero_byte() -> None:
    assert ones_complement_sum(b"\x12") == 0x1200
    assert [fold(total) for total in sums([b"\x12", b"\x00\x34\x56"])] == [0x1200, 0x5634]
