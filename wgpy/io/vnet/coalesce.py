"""Receive-side coalescing (GRO) done in user space: consecutive TCP segments of one flow, and
optionally same-sized UDP datagrams of one flow, merged into super-packets for the TUN. Pure.

Writing one 64 KiB super-packet to a TUN opened with IFF_VNET_HDR costs one system call where its
segments would cost forty, and the receiving TCP acknowledges it as one. The rules are the
kernel's GRO rules as wireguard-go's tun/offload_linux.go applies them (tcpPacketsCanCoalesce,
udpPacketsCanCoalesce, applyTCPCoalesceAccounting): same addresses, ports and (for TCP) ACK
number, IP header fields that agree, TCP options that agree, sequence numbers that follow on, no
flag but ACK (PSH ends a super-packet), every segment the size of the first but the last.

The segments' checksums are not verified before they are merged, although the super-packet goes
to the kernel as CHECKSUM_PARTIAL, which the kernel does not check again. The packets come out
of the device, whose AEAD has authenticated every one of them, and the kernel's WireGuard does
the same: it marks decrypted packets CHECKSUM_UNNECESSARY (drivers/net/wireguard/receive.c,
wg_packet_consume_data_done), and its GRO merges them unchecked. (wireguard-go verifies each;
the sums cost ~3% of the instructions of both data paths per super-packet.) A packet written
alone still goes without offload, for the kernel to check.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

from wgpy.io.accel import compiled_follow_on, compiled_merge
from wgpy.io.vnet.checksum import fold, ipv4_header_checksum, pseudo_header_sum
from wgpy.io.vnet.segment import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
    MAX_PACKET,
    NO_OFFLOAD,
    TCP_ACK,
    TCP_CHECKSUM_OFFSET,
    TCP_PSH,
    UDP_CHECKSUM_OFFSET,
    UDP_HEADER_LEN,
    VnetHdr,
)

_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")


class _Run:
    """Segments of one flow that may merge: they follow on, and their headers agree."""

    __slots__ = (
        "ended",
        "first",
        "fixed_bits",
        "fixed_mask",
        "gso_size",
        "header_len",
        "l4_start",
        "length",
        "next_sequence",
        "packets",
        "tcp",
    )

    def __init__(self, first: bytes, l4_start: int, header_len: int, tcp: bool) -> None:
        self.first = first
        self.l4_start = l4_start
        self.header_len = header_len
        self.tcp = tcp
        self.gso_size = len(first) - header_len
        self.length = len(first)
        self.packets = [first]
        self.fixed_mask = _fixed_mask(l4_start, header_len, tcp)
        self.fixed_bits = int.from_bytes(first[:header_len], "big") & self.fixed_mask
        sequence = _U32.unpack_from(first, l4_start + 4)[0] if tcp else 0
        self.next_sequence = (sequence + self.gso_size) & 0xFFFFFFFF
        # A segment with PSH, or one shorter than the first, must be the last.
        self.ended = tcp and bool(first[l4_start + 13] & TCP_PSH)

    def follows(self, packet: bytes) -> bool:
        """Whether `packet` may be appended: no longer than the first segment, in sequence,
        within the largest IP packet, and its headers the first's but for the fields that differ
        from segment to segment (wireguard-go's tcpPacketsCanCoalesce, and the kernel's
        tcp_gro_receive, which also holds the window and options equal)."""
        header_len = self.header_len
        size = len(packet) - header_len
        if self.ended or not 0 < size <= self.gso_size or self.length + size > MAX_PACKET:
            return False
        l4_start = self.l4_start
        if self.tcp:
            if packet[l4_start + 13] | TCP_PSH != TCP_ACK | TCP_PSH:
                return False
            if _U32.unpack_from(packet, l4_start + 4)[0] != self.next_sequence:
                return False
        elif _U16.unpack_from(packet, l4_start + 4)[0] != len(packet) - l4_start:
            return False
        if int.from_bytes(packet[:header_len], "big") & self.fixed_mask != self.fixed_bits:
            return False
        return _length_field(packet) == len(packet)

    def append(self, packet: bytes) -> None:
        size = len(packet) - self.header_len
        self.packets.append(packet)
        self.length += size
        self.next_sequence = (self.next_sequence + size) & 0xFFFFFFFF
        if size < self.gso_size:
            self.ended = True
        if self.tcp and packet[self.l4_start + 13] & TCP_PSH:
            self.ended = True

    def follow_on(self, packets: list[bytes], start: int, *, pure: bool = False) -> int:
        """Append as many of `packets` from `start` on as follow the run, in turn: how many.
        The accelerator's twin reads their headers in one call, unless `pure` asks for
        `follows` and `append`, the reference."""
        if compiled_follow_on is None or pure:
            index = start
            while index < len(packets) and self.follows(packets[index]):
                self.append(packets[index])
                index += 1
            return index - start
        if self.ended:
            return 0
        count = compiled_follow_on(
            packets, start, self.first, self.l4_start, self.header_len, self.tcp, self.length,
            self.next_sequence,
        )  # fmt: skip
        if count:
            taken = packets[start : start + count]
            size = sum(map(len, taken)) - count * self.header_len
            self.packets += taken
            self.length += size
            self.next_sequence = (self.next_sequence + size) & 0xFFFFFFFF
            # As `append`: only the last of them can have ended the run.
            last = taken[-1]
            self.ended = len(last) - self.header_len < self.gso_size or (
                self.tcp and bool(last[self.l4_start + 13] & TCP_PSH)
            )
        return count

    def build(self) -> bytes:
        """The run as one buffer behind its virtio-net header: the super-packet its segments
        make, or a lone segment without offload (the kernel checks a lone packet itself)."""
        if len(self.packets) == 1:
            return NO_OFFLOAD + self.first
        header_len = self.header_len
        if compiled_merge is not None:
            return compiled_merge(self.packets, self.l4_start, header_len, self.tcp)
        headers = self._headers(self.packets)
        return b"".join([headers, *(memoryview(packet)[header_len:] for packet in self.packets)])

    def _headers(self, packets: list[bytes]) -> bytes:
        """The virtio-net header and the IP and transport headers of `packets` merged, their
        lengths, IPv4 header checksum and pseudo-header sum rewritten (wireguard-go's
        applyTCPCoalesceAccounting and applyUDPCoalesceAccounting)."""
        first, last, l4_start, header_len = packets[0], packets[-1], self.l4_start, self.header_len
        length = sum(map(len, packets)) - (len(packets) - 1) * header_len
        header = bytearray(first[:header_len])
        if l4_start == IPV4_HEADER_LEN:
            _U16.pack_into(header, 2, length)
            header[10:12] = b"\0\0"
            _U16.pack_into(header, 10, ipv4_header_checksum(header[:l4_start]))
            gso_type = GSO_TCPV4
        else:
            _U16.pack_into(header, 4, length - IPV6_HEADER_LEN)
            gso_type = GSO_TCPV6
        segment_length = length - l4_start
        if self.tcp:
            checksum_offset, protocol = TCP_CHECKSUM_OFFSET, IPPROTO_TCP
            header[l4_start + 13] |= last[l4_start + 13] & TCP_PSH
        else:
            checksum_offset, protocol, gso_type = UDP_CHECKSUM_OFFSET, IPPROTO_UDP, GSO_UDP_L4
            _U16.pack_into(header, l4_start + 4, segment_length)
        # CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, the kernel adds the rest.
        pseudo = fold(pseudo_header_sum(first, protocol, segment_length))
        _U16.pack_into(header, l4_start + checksum_offset, pseudo)
        hdr = VnetHdr(F_NEEDS_CSUM, gso_type, header_len, len(first) - header_len, l4_start,
                      checksum_offset)  # fmt: skip
        return hdr.pack() + header


def coalesce(packets: Iterable[bytes], *, udp: bool = False) -> list[bytes]:
    """`packets` as buffers to write to a TUN opened with IFF_VNET_HDR, each behind a virtio-net
    header: runs of TCP segments (and with `udp`, which needs the TUN's USO offload, of UDP
    datagrams) merged into super-packets, everything else alone. Order is kept within a flow."""
    out: list[bytes | _Run] = []
    runs: dict[bytes, _Run] = {}
    packets = list(packets)
    index = 0
    while index < len(packets):
        packet = packets[index]
        index += 1
        candidate = _candidate(packet, udp)
        if candidate is None:
            out.append(NO_OFFLOAD + packet)
            continue
        key, l4_start, header_len, tcp = candidate
        run = runs.get(key)
        if run is None or not run.follows(packet):
            run = runs[key] = _Run(packet, l4_start, header_len, tcp)
            out.append(run)
        else:
            run.append(packet)
        # The next packets most likely follow the same run: all that do join it at once.
        index += run.follow_on(packets, index)
    return [item if isinstance(item, bytes) else item.build() for item in out]


def _candidate(packet: bytes, udp: bool) -> tuple[bytes, int, int, bool] | None:
    """(flow key, IP header length, IP plus transport header length, whether TCP) for a packet
    that may start a run, else None. As wireguard-go's packetIsGROCandidate, tcpGRO and udpGRO:
    no IPv4 options or fragments, no IPv6 extension headers, lengths that match the packet, and
    for TCP no flag but ACK and PSH."""
    length = len(packet)
    if length < IPV4_HEADER_LEN + UDP_HEADER_LEN or _length_field(packet) != length:
        return None
    if packet[0] == 0x45:
        if packet[6] & 0x3F or packet[7]:  # more fragments, or a fragment offset
            return None
        protocol, l4_start, addresses = packet[9], IPV4_HEADER_LEN, packet[12:20]
    elif packet[0] >> 4 == 6 and length >= IPV6_HEADER_LEN + UDP_HEADER_LEN:
        protocol, l4_start, addresses = packet[6], IPV6_HEADER_LEN, packet[8:40]
    else:
        return None
    ports = packet[l4_start : l4_start + 4]
    if protocol == IPPROTO_TCP:
        if length < l4_start + 20:
            return None
        header_len = l4_start + (packet[l4_start + 12] >> 4) * 4
        if header_len - l4_start < 20 or length <= header_len:
            return None
        if packet[l4_start + 13] | TCP_PSH != TCP_ACK | TCP_PSH:
            return None
        acknowledgment = packet[l4_start + 8 : l4_start + 12]
        return addresses + ports + acknowledgment, l4_start, header_len, True
    if protocol == IPPROTO_UDP and udp:
        header_len = l4_start + UDP_HEADER_LEN
        if length <= header_len or _U16.unpack_from(packet, l4_start + 4)[0] != length - l4_start:
            return None
        return addresses + ports, l4_start, header_len, False
    return None


def _length_field(packet: bytes) -> int:
    """The packet's length as its IP header gives it."""
    if packet[0] >> 4 == 4:
        return packet[2] << 8 | packet[3]
    return IPV6_HEADER_LEN + (packet[4] << 8 | packet[5])


@lru_cache(maxsize=64)  # a few shapes of header: one per IP version, option length and protocol
def _fixed_mask(l4_start: int, header_len: int, tcp: bool) -> int:
    """A mask over the headers, read as one big-endian int, of the bytes every segment of a run
    shares with the first: all but the lengths, the IPv4 ID, the checksums, the TCP sequence
    number and flags (checked apart). For IPv4 that holds TOS, DF, TTL and protocol equal, for
    IPv6 traffic class, flow label, next header and hop limit; then addresses and ports, and for
    TCP the acknowledgment number, data offset, window, urgent pointer and options. (One masked
    compare per segment costs less than a compare per span.)"""
    if l4_start == IPV4_HEADER_LEN:
        ip_spans = [(0, 2), (6, 10), (12, l4_start + 4)]
    else:
        ip_spans = [(0, 4), (6, l4_start + 4)]
    if tcp:
        l4_spans = [(l4_start + 8, l4_start + 13), (l4_start + 14, l4_start + 16)]
        l4_spans.append((l4_start + 18, header_len))
    else:
        l4_spans = []
    mask = bytearray(header_len)
    for start, end in ip_spans + l4_spans:
        mask[start:end] = b"\xff" * (end - start)
    return int.from_bytes(mask, "big")
