"""Segmentation offload in user space (wgpy/io/vnet/segment.py): checksums, and cutting the TCP and
UDP super-packets a TUN with IFF_VNET_HDR hands over into the packets a NIC would have sent.

Expected packets are built by scapy, which computes lengths and checksums itself.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from offload_packets import TIMESTAMP, V4, V6
from rfc1071 import word_by_word_sum
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

from wgpy.io.vnet.checksum import (
    checksum_field,
    ones_complement_sum,
    pseudo_header_sum,
    transport_checksum_valid,
)
from wgpy.io.vnet.segment import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    NO_OFFLOAD,
    VNET_HDR_LEN,
    OffloadError,
    VnetHdr,
    segment,
)


def rebuilt(packet: bytes) -> bytes:
    """`packet` as scapy builds it with every length and checksum computed afresh."""
    parsed: Packet = IP(packet) if packet[0] >> 4 == 4 else IPv6(packet)
    for layer in (IP, IPv6, TCP, UDP):
        if parsed.haslayer(layer):
            for field in ("len", "plen", "chksum"):
                if field in parsed[layer].fields:
                    del parsed[layer].fields[field]
    return bytes(parsed)


def super_packet(ip: Packet, transport: Packet, payload: bytes) -> bytes:
    """A super-packet as the kernel hands it over: lengths for the whole, checksum partial."""
    return bytes(ip / transport / Raw(payload))


# -- checksums ---------------------------------------------------------------------------------


@given(st.binary(max_size=3000), st.integers(0, 0xFFFF))
def test_the_sum_is_the_word_by_word_sum_with_end_around_carry(data: bytes, initial: int) -> None:
    expected = word_by_word_sum(data + b"\0" * (len(data) % 2) + initial.to_bytes(2, "big"))
    assert ones_complement_sum(data, initial) == expected


def test_the_sum_of_nothing_but_zeros_is_zero_and_of_anything_else_never() -> None:
    assert ones_complement_sum(bytes(100)) == 0
    assert ones_complement_sum(b"\xff\xff") == 0xFFFF
    assert ones_complement_sum(b"\x00\x01", 0xFFFE) == 0xFFFF


def test_a_checksum_field_is_never_zero() -> None:
    assert checksum_field(0xFFFF) == 0xFFFF
    assert checksum_field(0x1234) == 0xEDCB


@pytest.mark.parametrize(
    "packet",
    [
        IP(**V4) / TCP(sport=1, dport=2) / Raw(b"odd-length payload!"),
        IPv6(**V6) / UDP(sport=3, dport=4) / Raw(b"even payload"),
    ],
    ids=["tcp4", "udp6"],
)
def test_scapy_built_checksums_verify_and_a_flipped_bit_does_not(packet: Packet) -> None:
    data = bytearray(bytes(packet))
    header_len = 20 if isinstance(packet, IP) else 40
    protocol = 6 if packet.haslayer(TCP) else 17
    assert transport_checksum_valid(bytes(data), header_len, protocol)
    data[-1] ^= 0x10
    assert not transport_checksum_valid(bytes(data), header_len, protocol)


# -- the virtio-net header ---------------------------------------------------------------------


def test_the_virtio_net_header_is_ten_bytes_and_round_trips() -> None:
    hdr = VnetHdr(F_NEEDS_CSUM, GSO_TCPV4, 52, 1368, 20, 16)
    assert len(hdr.pack()) == VNET_HDR_LEN == 10
    assert VnetHdr.parse(hdr.pack()) == hdr
    assert bytes(10) == NO_OFFLOAD


# -- segmentation ------------------------------------------------------------------------------


def test_a_packet_without_offload_comes_back_unchanged() -> None:
    packet = bytes(IP(**V4) / ICMP() / Raw(b"ping"))
    assert segment(packet, VnetHdr()) == [packet]


@pytest.mark.parametrize(
    ("packet", "header_len", "offset"),
    [
        (IP(**V4) / TCP(sport=1000, dport=2000, flags="PA") / Raw(b"x" * 101), 20, 16),
        (IPv6(**V6) / UDP(sport=1000, dport=2000) / Raw(b"y" * 100), 40, 6),
    ],
    ids=["tcp4", "udp6"],
)
def test_a_partial_checksum_is_finished_from_the_pseudo_header_sum_in_its_field(
    packet: Packet, header_len: int, offset: int
) -> None:
    expected = bytes(packet)
    protocol = 6 if packet.haslayer(TCP) else 17
    partial = bytearray(expected)
    pseudo = ones_complement_sum(
        b"", pseudo_header_sum(partial, protocol, len(partial) - header_len)
    )
    partial[header_len + offset : header_len + offset + 2] = pseudo.to_bytes(2, "big")
    hdr = VnetHdr(F_NEEDS_CSUM, GSO_NONE, 0, 0, header_len, offset)
    assert segment(bytes(partial), hdr) == [expected]


def tcp_segments(
    ip: Packet, payload: bytes, size: int, flags: str, ip_id: int | None = None
) -> list[bytes]:
    """What a NIC makes of a TSO super-packet: the expected segments, built by scapy."""
    segments = []
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        layer = ip.copy()
        if ip_id is not None:
            layer.id = (ip_id + index) & 0xFFFF
        tcp = TCP(
            sport=40000,
            dport=5201,
            seq=(0xFFFFF000 + index * size) & 0xFFFFFFFF,
            ack=77,
            flags=flags if last else flags.replace("F", "").replace("P", ""),
            options=TIMESTAMP,
        )
        segments.append(bytes(layer / tcp / Raw(chunk)))
    return segments


@pytest.mark.parametrize(
    ("ip", "gso_type", "ip_id"),
    [(IP(**V4, flags="DF"), GSO_TCPV4, 0xFFFE), (IPv6(**V6), GSO_TCPV6, None)],
    ids=["ipv4", "ipv6"],
)
@pytest.mark.parametrize("size", [1368, 1001])
def test_a_tso_super_packet_is_cut_into_segments_as_a_nic_would(
    ip: Packet, gso_type: int, ip_id: int | None, size: int
) -> None:
    payload = os.urandom(size * 4 + 123)
    if ip_id is not None:
        ip = ip.copy()
        ip.id = ip_id
    tcp = TCP(
        sport=40000,
        dport=5201,
        seq=0xFFFFF000,
        ack=77,
        flags="FPA",
        options=TIMESTAMP,
    )
    whole = bytearray(super_packet(ip, tcp, payload))
    header_len = 20 if ip_id is not None else 40
    whole[header_len + 16 : header_len + 18] = b"\xab\xcd"  # a partial sum, to be ignored
    hdr = VnetHdr(F_NEEDS_CSUM, gso_type, header_len + 32, size, header_len, 16)

    segments = segment(bytes(whole), hdr)

    # Sequence numbers wrap and IPv4 IDs count on, FIN and PSH stay on the last segment only.
    assert segments == tcp_segments(ip, payload, size, "FPA", ip_id)
    assert all(rebuilt(s) == s for s in segments)


def test_the_ecn_flag_on_a_gso_type_does_not_stop_segmentation() -> None:
    ip = IP(**V4, id=1)
    tcp = TCP(sport=40000, dport=5201, seq=0xFFFFF000, ack=77, flags="A", options=TIMESTAMP)
    payload = os.urandom(3000)
    whole = super_packet(ip, tcp, payload)
    hdr = VnetHdr(F_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN, 52, 1000, 20, 16)
    assert segment(whole, hdr) == tcp_segments(ip, payload, 1000, "A", 1)


@pytest.mark.parametrize(
    ("ip", "header_len"), [(IP(**V4, id=9), 20), (IPv6(**V6), 40)], ids=["ipv4", "ipv6"]
)
def test_a_uso_super_packet_is_cut_into_datagrams_with_their_own_lengths(
    ip: Packet, header_len: int
) -> None:
    payload = os.urandom(64 * 10 + 5)
    whole = super_packet(ip, UDP(sport=5000, dport=5201), payload)
    hdr = VnetHdr(F_NEEDS_CSUM, GSO_UDP_L4, header_len + 8, 64, header_len, 6)

    datagrams = segment(whole, hdr)

    assert len(datagrams) == 11
    for index, datagram in enumerate(datagrams):
        layer = ip.copy()
        if isinstance(layer, IP):
            layer.id = 9 + index
        chunk = payload[index * 64 : (index + 1) * 64]
        assert datagram == bytes(layer / UDP(sport=5000, dport=5201) / Raw(chunk))


@pytest.mark.parametrize(
    ("packet", "hdr"),
    [
        (bytes(IP(**V4) / TCP() / Raw(b"x" * 100)), VnetHdr(0, 3, 40, 50, 20, 6)),  # UFO
        (bytes(IP(**V4) / TCP() / Raw(b"x" * 100)), VnetHdr(0, GSO_TCPV6, 40, 50, 20, 16)),
        (bytes(IP(**V4) / TCP() / Raw(b"x" * 100)), VnetHdr(0, GSO_TCPV4, 40, 0, 20, 16)),
        (bytes(IP(**V4) / TCP())[:30], VnetHdr(0, GSO_TCPV4, 40, 50, 20, 16)),
        (bytes(IP(**V4) / TCP() / Raw(b"x")), VnetHdr(0, GSO_TCPV4, 40, 50, 8, 16)),
        (bytes(IP(**V4) / UDP()), VnetHdr(F_NEEDS_CSUM, GSO_NONE, 0, 0, 20, 60)),
        (b"", VnetHdr(0, GSO_TCPV4, 40, 50, 20, 16)),
    ],
    ids=[
        "ufo",
        "wrong-version",
        "zero-size",
        "truncated",
        "csum-start-in-ip",
        "csum-beyond",
        "empty",
    ],
)
def test_a_header_that_does_not_fit_the_packet_is_refused(packet: bytes, hdr: VnetHdr) -> None:
    with pytest.raises(OffloadError):
        segment(packet, hdr)
