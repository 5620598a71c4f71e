"""The TCP wire format: every segment round-trips through serialize and decode, and whatever the
network sends decodes to a segment or a reason, never an exception."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from rfc1071 import word_by_word_sum

from wgpy.netstack.tcp_segment import (
    Flags,
    Options,
    SegmentDrop,
    TcpSegment,
    decode,
    encode_options,
    options_length,
    parse,
    pseudo_header,
    serialize,
)

V4 = (ipaddress.IPv4Address("192.0.2.1").packed, ipaddress.IPv4Address("192.0.2.2").packed)
V6 = (ipaddress.IPv6Address("fd00::1").packed, ipaddress.IPv6Address("fd00::2").packed)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
options = st.builds(
    Options,
    mss=st.none() | u16,
    window_scale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    sack=st.lists(st.tuples(u32, u32), max_size=1).map(tuple),
    timestamps=st.none() | st.tuples(u32, u32),
)
segments = st.builds(
    TcpSegment,
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 0xFF).map(Flags),
    window=u16,
    options=options,
    payload=st.binary(max_size=64),
)
addresses = st.sampled_from([V4, V6])


@given(segments, addresses)
def test_every_segment_round_trips(segment: TcpSegment, pair: tuple[bytes, bytes]) -> None:
    assert decode(serialize(segment, *pair), *pair) == segment


@given(options)
def test_options_length_is_what_the_options_take_on_the_wire(options: Options) -> None:
    assert options_length(options) == len(encode_options(options))


@given(st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple))
def test_up_to_four_sack_blocks_fit_without_other_options(
    sack: tuple[tuple[int, int], ...],
) -> None:
    segment = TcpSegment(1, 2, 3, 4, Flags.ACK, 5, Options(sack=sack))
    assert decode(serialize(segment, *V4), *V4) == segment


@given(segments, addresses, st.data())
def test_a_flipped_bit_is_dropped_for_its_checksum_or_its_shape(
    segment: TcpSegment, pair: tuple[bytes, bytes], data: st.DataObject
) -> None:
    wire = bytearray(serialize(segment, *pair))
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    assert isinstance(decode(bytes(wire), *pair), SegmentDrop)


@given(segments, addresses)
def test_the_checksum_is_rfc_1071s_over_the_pseudo_header_and_segment(
    segment: TcpSegment, pair: tuple[bytes, bytes]
) -> None:
    wire = serialize(segment, *pair)
    assert word_by_word_sum(pseudo_header(*pair, len(wire)) + wire) == 0xFFFF


@given(segments)
def test_the_checksum_covers_the_addresses(segment: TcpSegment) -> None:
    assert decode(serialize(segment, *V4), V4[0], bytes(4)) == SegmentDrop.BAD_CHECKSUM


@given(st.binary(max_size=80), addresses)
def test_garbage_decodes_to_a_segment_or_a_reason(data: bytes, pair: tuple[bytes, bytes]) -> None:
    result = decode(data, *pair)
    assert isinstance(result, TcpSegment | SegmentDrop)
    assert (parse(data, *pair) is None) == isinstance(result, SegmentDrop)


@given(segments)
def test_a_caller_may_skip_the_checksum_but_not_the_other_checks(segment: TcpSegment) -> None:
    wire = serialize(segment, *V4)
    assert decode(wire, V4[0], bytes(4), verify_checksum=False) == segment
    assert decode(wire[:19], *V4, verify_checksum=False) == SegmentDrop.SHORT


def test_a_segment_shorter_than_the_header_is_short() -> None:
    assert decode(bytes(19), *V4) == SegmentDrop.SHORT


def test_a_data_offset_below_five_words_or_past_the_end_is_refused() -> None:
    wire = bytearray(serialize(TcpSegment(1, 2, 3, 4, Flags.ACK, 5), *V4))
    wire[12] = 4 << 4
    assert decode(bytes(wire), *V4) == SegmentDrop.BAD_OFFSET
    wire[12] = 6 << 4
    assert decode(bytes(wire), *V4) == SegmentDrop.BAD_OFFSET


def test_an_option_running_past_the_header_is_refused() -> None:
    wire = bytearray(serialize(TcpSegment(1, 2, 3, 4, Flags.SYN, 5, Options(mss=1460)), *V4))
    wire[21] = 8  # the MSS option claims 8 bytes; the header has 4 of options
    assert decode(bytes(wire), *V4) == SegmentDrop.BAD_OPTION


def test_options_are_aligned_as_linux_writes_them() -> None:
    syn = TcpSegment(
        1, 2, 3, 0, Flags.SYN, 64240,
        Options(mss=1460, window_scale=7, sack_permitted=True, timestamps=(1, 0)),
    )  # fmt: skip
    wire = serialize(syn, *V4)
    # MSS; NOP, WS; NOP, NOP, SACK-permitted; NOP, NOP, TS: 24 bytes, 6 words.
    assert wire[12] >> 4 == 5 + 6
    assert wire[20:24] == bytes((2, 4, 0x05, 0xB4))
    assert wire[24:28] == bytes((1, 3, 3, 7))


def test_seg_len_counts_syn_and_fin() -> None:
    assert TcpSegment(1, 2, 3, 4, Flags.SYN | Flags.FIN, 5, payload=b"abc").length == 5
