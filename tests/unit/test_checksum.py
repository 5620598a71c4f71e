"""Internet checksums (RFC 1071), one buffer at a time and many segments at once, with numpy
and without it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wgpy.io.vnet import checksum
from wgpy.io.vnet.checksum import fold, ones_complement_sum, strided_sums, sums


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


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(min_size=0, max_size=20000),
    start=st.integers(min_value=0, max_value=100),
    size=st.integers(min_value=1, max_value=3000),
)
def test_strided_sums_sum_consecutive_segments_as_sums_does(
    path: str, data: bytes, start: int, size: int
) -> None:
    segments = [data[at : at + size] for at in range(start, len(data), size)]
    folded = [fold(total) for total in strided_sums(memoryview(data), start, size)]
    assert folded == [fold(total) for total in sums(segments)]


@pytest.mark.parametrize("size", [1368, 1370], ids=["32-bit-words", "16-bit-words"])
def test_a_super_packet_of_payloads_is_summed_in_place(path: str, size: int) -> None:
    headers = b"\x45" * 52
    data = headers + b"".join(bytes([n]) * size for n in range(1, 46)) + b"\x07" * 101
    folded = [fold(total) for total in strided_sums(data, len(headers), size)]
    assert folded == [ones_complement_sum(bytes([n]) * size) for n in range(1, 46)] + [
        ones_complement_sum(b"\x07" * 101)
    ]


def test_odd_lengths_are_padded_with_a_zero_byte() -> None:
    assert ones_complement_sum(b"\x12") == 0x1200
    assert [fold(total) for total in sums([b"\x12", b"\x00\x34\x56"])] == [0x1200, 0x5634]
