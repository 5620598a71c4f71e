"""Header fields of raw inner IP packets, read and built, against packets that scapy builds."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rfc1071 import word_by_word_sum
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from wgpy.core.ippacket import (
    EXPERIMENTAL_PROTOCOL,
    destination,
    inner_length,
    inner_length_and_source,
    inner_packets,
    internet_checksum,
    ipv4_packet,
    ipv6_packet,
    source,
    version,
)


def scapy_ipv4(payload: bytes = b"ping") -> bytes:
    return bytes(IP(src="192.0.2.1", dst="198.18.0.2") / UDP(sport=4000, dport=5000) / payload)


def scapy_ipv6(payload: bytes = b"ping") -> bytes:
    return bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=4000, dport=5000) / payload)


def with_total_length(packet: bytes, length: int) -> bytes:
    return packet[:2] + length.to_bytes(2, "big") + packet[4:]


def with_payload_length(packet: bytes, length: int) -> bytes:
    return packet[:4] + length.to_bytes(2, "big") + packet[6:]


def raw(text: str) -> bytes:
    return ip_address(text).packed


@pytest.mark.parametrize(
    ("packet", "number", "src", "dst"),
    [
        (scapy_ipv4(), 4, "192.0.2.1", "198.18.0.2"),
        (scapy_ipv6(), 6, "fd00::1", "fd00::2"),
    ],
    ids=["IPv4", "IPv6"],
)
def test_reads_version_source_and_destination(
    packet: bytes, number: int, src: str, dst: str
) -> None:
    assert version(packet) == number
    assert source(packet) == raw(src)
    assert destination(packet) == raw(dst)


@pytest.mark.parametrize("packet", [scapy_ipv4(), scapy_ipv6()], ids=["IPv4", "IPv6"])
def test_inner_length_of_an_unpadded_packet_is_its_length(packet: bytes) -> None:
    assert inner_length(packet) == len(packet)


@pytest.mark.parametrize("packet", [scapy_ipv4(), scapy_ipv6()], ids=["IPv4", "IPv6"])
def test_inner_length_cuts_off_the_padding_of_a_transport_message(packet: bytes) -> None:
    padded = packet + bytes(-len(packet) % 16 or 16)
    assert inner_length(padded) == len(packet)


@pytest.mark.parametrize(
    "packet",
    [b"", scapy_ipv4()[:19], scapy_ipv6()[:39], scapy_ipv6()[:20], b"\x45"],
    ids=["empty", "IPv4 header 19 bytes", "IPv6 header 39 bytes", "IPv6 header 20 bytes", "1 byte"],
)
def test_a_truncated_header_reads_as_nothing(packet: bytes) -> None:
    assert version(packet) is None
    assert source(packet) is None
    assert destination(packet) is None
    assert inner_length(packet) is None


@pytest.mark.parametrize("number", [0, 1, 5, 7, 15])
def test_a_version_nibble_other_than_4_or_6_reads_as_nothing(number: int) -> None:
    packet = bytearray(scapy_ipv6())
    packet[0] = number << 4 | packet[0] & 0x0F
    assert version(packet) is None
    assert source(packet) is None
    assert destination(packet) is None
    assert inner_length(packet) is None


def test_an_ipv4_total_length_beyond_the_packet_is_refused() -> None:
    packet = scapy_ipv4()
    assert inner_length(with_total_length(packet, len(packet) + 1)) is None
    assert inner_length(with_total_length(packet, 0xFFFF)) is None


def test_an_ipv6_payload_length_beyond_the_packet_is_refused() -> None:
    packet = scapy_ipv6()
    assert inner_length(with_payload_length(packet, len(packet) - 40 + 1)) is None
    assert inner_length(with_payload_length(packet, 0xFFFF)) is None


@pytest.mark.parametrize("length", [0, 1, 19])
def test_an_ipv4_total_length_shorter_than_the_header_is_refused(length: int) -> None:
    assert inner_length(with_total_length(scapy_ipv4(), length)) is None


def test_an_ipv4_total_length_of_just_the_header_is_accepted() -> None:
    assert inner_length(with_total_length(scapy_ipv4(), 20)) == 20


def test_an_ipv6_payload_length_of_zero_means_the_bare_header() -> None:
    # The kernel's receive.c computes payload_len + sizeof(struct ipv6hdr) and trims to that.
    assert inner_length(with_payload_length(scapy_ipv6(), 0)) == 40


@pytest.mark.parametrize("packet", [scapy_ipv4(), scapy_ipv6()], ids=["IPv4", "IPv6"])
def test_reads_a_memoryview_or_bytearray_like_bytes(packet: bytes) -> None:
    for view in (memoryview(packet), bytearray(packet), memoryview(b"\0" * 7 + packet)[7:]):
        assert version(view) == version(packet)
        assert inner_length(view) == len(packet)
        address = source(view)
        assert type(address) is bytes and address == source(packet)
        assert destination(view) == destination(packet)


# Arbitrary bytes, half of them starting like an IPv4 or IPv6 header.
any_bytes = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda first, rest: first + rest, st.sampled_from([b"\x45", b"\x60"]), st.binary()),
)


@given(any_bytes)
def test_any_bytes_read_as_a_consistent_header_or_as_nothing(packet: bytes) -> None:
    number, length = version(packet), inner_length(packet)
    src, dst = source(packet), destination(packet)
    if number is None:
        assert (src, dst, length) == (None, None, None)
        return
    width = {4: 4, 6: 16}[number]
    assert packet[0] >> 4 == number
    assert src is not None and len(src) == width
    assert dst is not None and len(dst) == width
    assert length is None or 20 <= length <= len(packet)


@given(any_bytes)
def test_inner_length_and_source_read_together_as_apart(packet: bytes) -> None:
    length = inner_length(packet)
    together = inner_length_and_source(packet)
    assert together == (None if length is None else (length, source(packet)))
    for view in (memoryview(packet), bytearray(packet)):
        assert inner_length_and_source(view) == together


@given(st.sampled_from([scapy_ipv4, scapy_ipv6]), st.binary(max_size=200), st.integers(0, 15))
def test_inner_length_recovers_any_packet_from_its_padding(
    build: Callable[[bytes], bytes], payload: bytes, padding: int
) -> None:
    packet = build(payload)
    assert inner_length(packet + bytes(padding)) == len(packet)


def test_a_batch_s_sources_are_listed_once_for_each_run_of_packets_from_one() -> None:
    """The receive path looks each listed source up: a batch of one flow needs one lookup."""
    a, b = ipv4_packet("10.0.0.1", "10.0.0.9"), ipv4_packet("10.0.0.2", "10.0.0.9")
    c = ipv6_packet("fd00::1", "fd00::9")
    found = inner_packets([a + bytes(12), a, b, b, a, c, c])
    assert found == ([a, a, b, b, a, c, c], [source(a), source(b), source(a), source(c)])


# Building: the packets a TUN would hand over, for the device driven in memory.

protocols = st.integers(0, 255)
payloads = st.binary(max_size=120)


@given(payloads, protocols)
def test_an_ipv4_packet_is_byte_for_byte_what_scapy_builds(payload: bytes, protocol: int) -> None:
    expected = IP(src="192.0.2.1", dst="198.18.0.2", id=0, proto=protocol) / Raw(payload)
    assert ipv4_packet("192.0.2.1", "198.18.0.2", payload, protocol) == bytes(expected)


@given(payloads, protocols)
def test_an_ipv6_packet_is_byte_for_byte_what_scapy_builds(payload: bytes, protocol: int) -> None:
    expected = IPv6(src="fd00::1", dst="fd00::2", nh=protocol) / Raw(payload)
    assert ipv6_packet("fd00::1", "fd00::2", payload, protocol) == bytes(expected)


def test_a_built_packet_carries_the_protocol_reserved_for_experiments_unless_told() -> None:
    assert ipv4_packet("192.0.2.1", "198.18.0.2")[9] == EXPERIMENTAL_PROTOCOL == 253
    assert ipv6_packet("fd00::1", "fd00::2")[6] == EXPERIMENTAL_PROTOCOL


@pytest.mark.parametrize(
    ("build", "src", "dst", "number"),
    [(ipv4_packet, "192.0.2.1", "198.18.0.2", 4), (ipv6_packet, "fd00::1", "fd00::2", 6)],
    ids=["IPv4", "IPv6"],
)
@given(payload=payloads)
def test_a_built_packet_reads_back_as_built(
    build: Callable[[str, str, bytes], bytes], src: str, dst: str, number: int, payload: bytes
) -> None:
    packet = build(src, dst, payload)
    assert version(packet) == number
    assert (source(packet), destination(packet)) == (raw(src), raw(dst))
    assert inner_length(packet) == len(packet)


@given(st.binary(max_size=300) | st.sampled_from([b"", b"\0\0", b"\xff\xff", b"\xff\xff\xff"]))
def test_the_internet_checksum_agrees_with_rfc_1071s_word_by_word_sum(data: bytes) -> None:
    assert internet_checksum(data) == ~word_by_word_sum(data) & 0xFFFF
