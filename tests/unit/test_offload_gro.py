"""Receive-side coalescing (wgpy/io/vnet/coalesce.py): which packets merge into a super-packet
for the TUN, and that cutting the super-packet again (as the kernel would) gives back exactly the
packets."""

from __future__ import annotations

import os

import pytest
from offload_packets import TIMESTAMP, V4, V6
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

from wgpy.io.tun_batches import OffloadTun
from wgpy.io.vnet.coalesce import coalesce
from wgpy.io.vnet.segment import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    MAX_PACKET,
    NO_OFFLOAD,
    VNET_HDR_LEN,
    VnetHdr,
    segment,
)


def tcp_flow(
    count: int,
    size: int = 1000,
    *,
    ip: Packet | None = None,
    first_seq: int = 1000,
    flags: str = "A",
    sport: int = 40000,
    last_size: int | None = None,
    pushed: frozenset[int] = frozenset(),
) -> list[bytes]:
    """`count` consecutive segments of one flow, as a peer's TCP sends them; those whose index
    is in `pushed` carry PSH."""
    ip = ip if ip is not None else IP(**V4, flags="DF")
    packets = []
    seq = first_seq
    for index in range(count):
        length = last_size if last_size is not None and index == count - 1 else size
        layer = ip.copy()
        if isinstance(layer, IP):
            layer.id = index
        flag = flags + "P" if index in pushed else flags
        tcp = TCP(sport=sport, dport=5201, seq=seq, ack=99, flags=flag, options=TIMESTAMP)
        packets.append(bytes(layer / tcp / Raw(os.urandom(length))))
        seq += length
    return packets


def split(buffers: list[bytes]) -> list[bytes]:
    """What the kernel makes of buffers written to the TUN: the packets again."""
    packets = []
    for buffer in buffers:
        packets += segment(buffer[VNET_HDR_LEN:], VnetHdr.parse(buffer))
    return packets


def corrupt(packet: bytes) -> bytes:
    return packet[:-1] + bytes([packet[-1] ^ 1])


@pytest.mark.parametrize(
    ("ip", "gso_type"), [(IP(**V4, flags="DF"), GSO_TCPV4), (IPv6(**V6), GSO_TCPV6)]
)
def test_consecutive_segments_of_a_flow_become_one_super_packet(ip: Packet, gso_type: int) -> None:
    packets = tcp_flow(10, ip=ip, last_size=333)

    (buffer,) = coalesce(packets)

    hdr = VnetHdr.parse(buffer)
    header_len = 20 if gso_type == GSO_TCPV4 else 40
    assert hdr == VnetHdr(F_NEEDS_CSUM, gso_type, header_len + 32, 1000, header_len, 16)
    assert len(buffer) == VNET_HDR_LEN + header_len + 32 + 9 * 1000 + 333
    assert split([buffer]) == packets


def test_packets_that_cannot_merge_go_alone_behind_an_empty_header() -> None:
    packets = [
        bytes(IP(**V4) / ICMP() / Raw(b"ping")),
        bytes(IP(**V4) / TCP(flags="S")),
        bytes(IP(**V4) / TCP(flags="A")),  # no payload
        bytes(IP(**V4, options=[IPOption_RR()]) / TCP(flags="A") / Raw(b"x" * 10)),
        bytes(IP(**V4, flags="MF") / TCP(flags="A") / Raw(b"x" * 10)),
        bytes(IP(**V4) / UDP() / Raw(b"x" * 10)),  # UDP, not asked for
        b"\x45" + bytes(30),
    ]
    assert coalesce(packets + packets) == [NO_OFFLOAD + p for p in packets + packets]


def test_a_lone_segment_goes_out_unchanged() -> None:
    (packet,) = tcp_flow(1)
    assert coalesce([packet]) == [NO_OFFLOAD + packet]


def test_interleaved_flows_merge_each_in_its_own_super_packet_in_first_arrival_order() -> None:
    a = tcp_flow(4, sport=1)
    b = tcp_flow(4, sport=2)
    interleaved = [p for pair in zip(a, b, strict=True) for p in pair]

    buffers = coalesce(interleaved)

    assert len(buffers) == 2
    assert split(buffers) == a + b


def test_a_gap_in_the_sequence_starts_a_new_super_packet() -> None:
    packets = tcp_flow(3) + tcp_flow(3, first_seq=10_000)
    buffers = coalesce(packets)
    assert len(buffers) == 2
    assert split(buffers) == packets


def test_a_segment_with_push_ends_its_super_packet() -> None:
    packets = tcp_flow(4, pushed=frozenset({1, 2, 3}))

    buffers = coalesce(packets)

    # PSH may end a super-packet (which then carries it), never sit inside one.
    assert len(buffers) == 3
    merged = IP(buffers[0][VNET_HDR_LEN:])
    assert VnetHdr.parse(buffers[0]).gso_type == GSO_TCPV4
    assert merged[TCP].flags == "PA"
    assert split(buffers) == packets


def test_a_short_segment_ends_its_super_packet() -> None:
    packets = tcp_flow(2, last_size=10)
    follow = tcp_flow(1, first_seq=1000 + 1010)
    buffers = coalesce(packets + follow)
    assert len(buffers) == 2
    assert split(buffers) == packets + follow


def test_a_segment_with_a_bad_checksum_merges_with_the_rest_unchecked() -> None:
    """The device's AEAD authenticated every packet coalesced; the kernel's WireGuard marks them
    CHECKSUM_UNNECESSARY and merges them unchecked too. Only the checksums differ when the
    kernel cuts the super-packet again: it computes them afresh."""
    packets = tcp_flow(30, 1400)
    packets[0], packets[10] = corrupt(packets[0]), corrupt(packets[10])

    (buffer,) = coalesce(packets)

    assert VnetHdr.parse(buffer).gso_type == GSO_TCPV4
    assert split([buffer]) == tcp_flow_checksummed(packets)


def tcp_flow_checksummed(packets: list[bytes]) -> list[bytes]:
    """`packets` with their IP and TCP checksums computed afresh (by scapy)."""
    rebuilt = []
    for packet in packets:
        layer = IP(packet)
        del layer.chksum, layer[TCP].chksum
        rebuilt.append(bytes(layer))
    return rebuilt


@pytest.mark.parametrize(
    "change",
    [
        {"ttl": 5},
        {"tos": 4},
        {"flags": 0},  # DF differs
    ],
    ids=["ttl", "tos", "df"],
)
def test_segments_whose_ip_headers_disagree_do_not_merge(change: dict[str, int]) -> None:
    (first,) = tcp_flow(1)
    (second,) = tcp_flow(1, ip=IP(**V4, **{"flags": "DF", **change}), first_seq=2000)
    assert len(coalesce([first, second])) == 2


@pytest.mark.parametrize(
    "change",
    [{"hlim": 5}, {"fl": 7}, {"tc": 4}],
    ids=["hop-limit", "flow-label", "traffic-class"],
)
def test_ipv6_segments_whose_headers_disagree_do_not_merge(change: dict[str, int]) -> None:
    (first,) = tcp_flow(1, ip=IPv6(**V6))
    (second,) = tcp_flow(1, ip=IPv6(**V6, **change), first_seq=2000)
    assert len(coalesce([first, second])) == 2


@pytest.mark.parametrize("field", ["window", "urgptr", "dataofs"])
def test_segments_whose_tcp_headers_disagree_do_not_merge(field: str) -> None:
    first, second = tcp_flow(2)
    parsed = IP(second)
    setattr(parsed[TCP], field, {"window": 7, "urgptr": 1, "dataofs": 5}[field])
    if field == "dataofs":  # without its options, the header is 20 bytes: the payload moves up
        parsed[TCP].options = []
    del parsed[TCP].chksum
    assert len(coalesce([first, bytes(parsed)])) == 2


def test_segments_whose_tcp_options_differ_do_not_merge() -> None:
    first, second = tcp_flow(2)
    parsed = IP(second)
    parsed[TCP].options = [("NOP", None), ("NOP", None), ("Timestamp", (1, 3))]
    del parsed[TCP].chksum
    assert len(coalesce([first, bytes(parsed)])) == 2


def test_a_super_packet_never_exceeds_the_largest_ip_packet() -> None:
    packets = tcp_flow(70, size=1400)
    buffers = coalesce(packets)
    assert all(len(b) - VNET_HDR_LEN <= MAX_PACKET for b in buffers)
    assert len(buffers) == 2
    assert split(buffers) == packets


@pytest.mark.parametrize("ip", [IP(**V4, id=0), IPv6(**V6)], ids=["ipv4", "ipv6"])
def test_udp_datagrams_of_a_flow_merge_when_the_tun_takes_uso(ip: Packet) -> None:
    datagrams = []
    for index in range(5):
        layer = ip.copy()
        if isinstance(layer, IP):
            layer.id = index
        size = 64 if index < 4 else 20
        datagrams.append(bytes(layer / UDP(sport=7, dport=5201) / Raw(os.urandom(size))))

    (buffer,) = coalesce(datagrams, udp=True)

    assert VnetHdr.parse(buffer).gso_type == GSO_UDP_L4
    assert VnetHdr.parse(buffer).gso_size == 64
    assert split([buffer]) == datagrams


def test_a_udp_datagram_without_a_checksum_merges_and_is_checksummed_when_cut() -> None:
    datagrams = [
        bytes(IP(**V4, id=n) / UDP(sport=7, dport=5201) / Raw(bytes([n]) * 64)) for n in range(4)
    ]
    unchecked = IP(datagrams[1])
    unchecked[UDP].chksum = 0  # IPv4 allows "no checksum"
    with_none = [*datagrams[:1], bytes(unchecked), *datagrams[2:]]

    (buffer,) = coalesce(with_none, udp=True)

    assert split([buffer]) == datagrams


@pytest.mark.parametrize("udp", [False, True])
def test_a_tun_writes_a_lone_packet_as_coalescing_would(udp: bool) -> None:
    """OffloadTun skips the GRO rules for a batch of one (the cold, latency-bound case); what
    reaches the TUN must be what `coalesce` would have made of it."""
    read_end, write_end = os.pipe()
    try:
        tun = OffloadTun(write_end, udp=udp)
        for packet in (*tcp_flow(1), corrupt(tcp_flow(1)[0]), bytes(IP(**V4) / ICMP())):
            tun.write([packet])
            assert os.read(read_end, MAX_PACKET) == b"".join(coalesce([packet], udp=udp))
    finally:
        os.close(read_end)
        os.close(write_end)
