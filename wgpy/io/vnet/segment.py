"""Segmentation offload done in user space: the virtio-net header, Internet checksums, and the
cutting of a TCP or UDP super-packet into the packets it stands for. Pure functions on bytes.

A TUN opened with IFF_VNET_HDR and given TUNSETOFFLOAD hands over whole send-buffer-sized TCP
(TSO) or UDP (USO) super-packets, each behind a `VnetHdr` saying how to cut it, and packets whose
checksum is left for us to finish (CHECKSUM_PARTIAL). `segment` does what a NIC would. The facts
are those of include/uapi/linux/virtio_net.h and of wireguard-go's tun/offload_linux.go
(gsoSplit, gsoNoneChecksum), which does the same in Go.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from wgpy.errors import WgpyError
from wgpy.io.accel import compiled_split
from wgpy.io.vnet.checksum import (
    Buffer,
    checksum_field,
    fold,
    ones_complement_sum,
    pseudo_header_sum,
    strided_sums,
)

# struct virtio_net_hdr, in the host's byte order (a TUN without TUNSETVNETLE/BE uses it).
VNET_HDR: Final = struct.Struct("=BBHHHH")
VNET_HDR_LEN: Final = VNET_HDR.size

F_NEEDS_CSUM: Final = 1  # the checksum from csum_start on is ours to compute, into csum_offset
GSO_NONE: Final = 0
GSO_TCPV4: Final = 1
GSO_TCPV6: Final = 4
GSO_UDP_L4: Final = 5
GSO_ECN: Final = 0x80  # a flag on the TCP types: the super-packet carries CWR

IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPV4_HEADER_LEN: Final = 20
IPV6_HEADER_LEN: Final = 40
TCP_HEADER_LEN: Final = 20
UDP_HEADER_LEN: Final = 8
TCP_CHECKSUM_OFFSET: Final = 16
UDP_CHECKSUM_OFFSET: Final = 6
TCP_FIN: Final = 0x01
TCP_PSH: Final = 0x08
TCP_ACK: Final = 0x10
MAX_PACKET: Final = 0xFFFF

_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_HALVES: Final = struct.Struct("!HH")


class OffloadError(WgpyError, ValueError):
    """A packet from the TUN whose virtio-net header does not fit it; it is dropped."""


class VnetHdr(NamedTuple):
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @classmethod
    def parse(cls, data: Buffer) -> VnetHdr:
        return cls(*VNET_HDR.unpack_from(data))

    def pack(self) -> bytes:
        return VNET_HDR.pack(*self)


NO_OFFLOAD: Final = VnetHdr().pack()


# -- segmentation ------------------------------------------------------------------------------


def segment(packet: Buffer, hdr: VnetHdr, *, pure: bool = False) -> list[bytes]:
    """The IP packets that `packet`, as read from the TUN behind `hdr`, stands for.

    A packet without GSO comes back alone, its checksum finished if the header asks for that. A
    TSO or USO super-packet comes back as segments of `hdr.gso_size` payload bytes (the last may be
    shorter), each with its own lengths, IPv4 ID and header checksum, TCP sequence number and
    flags (FIN and PSH only on the last) and transport checksum. Raises OffloadError when the
    header does not describe the packet. The cutting is the accelerator's where it is in use
    (wgpy/io/accel.py), unless `pure` asks for this module's own, the reference.
    """
    gso_type = hdr.gso_type & ~GSO_ECN
    if gso_type == GSO_NONE:
        if hdr.flags & F_NEEDS_CSUM:
            return [_finish_checksum(packet, hdr.csum_start, hdr.csum_offset)]
        return [bytes(packet)]
    if gso_type not in (GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4) or hdr.gso_size == 0:
        raise OffloadError(f"unsupported GSO type {hdr.gso_type} or size {hdr.gso_size}")
    version = packet[0] >> 4 if packet else 0
    if version not in (4, 6) or gso_type == (GSO_TCPV6 if version == 4 else GSO_TCPV4):
        raise OffloadError(f"GSO type {hdr.gso_type} on an IPv{version} packet")
    tcp, ipv4 = gso_type != GSO_UDP_L4, version == 4
    if compiled_split is not None and not pure:
        header_len = _header_len(packet, hdr, tcp=tcp, ipv4=ipv4)
        return compiled_split(packet, hdr.csum_start, header_len, hdr.gso_size, tcp, ipv4)
    template = _template(packet, hdr, tcp=tcp, ipv4=ipv4)
    return _split(packet, hdr.gso_size, template, tcp=tcp, ipv4=ipv4)


def _finish_checksum(packet: Buffer, start: int, offset: int) -> bytes:
    """CHECKSUM_PARTIAL: the field at start+offset holds the pseudo-header sum; the rest of the
    sum, from `start` to the end, is ours (wireguard-go's gsoNoneChecksum)."""
    at = start + offset
    if at + 2 > len(packet):
        raise OffloadError(f"checksum at {at} beyond a {len(packet)}-byte packet")
    finished = bytearray(packet)
    _U16.pack_into(finished, at, checksum_field(ones_complement_sum(packet[start:])))
    return bytes(finished)


class _Template(NamedTuple):
    """A super-packet's headers with every field that differs between segments zeroed (lengths,
    IPv4 ID and checksum, TCP sequence number, transport checksum), and their sums so far: per
    segment, the fields are packed into a copy and their values added to the sums."""

    l4_start: int
    header_len: int
    checksum_at: int
    middle: bytearray  # the headers of every segment but the last: FIN and PSH cleared
    last: bytearray
    ip_sum: int  # of the IPv4 header; 0 for IPv6, which has no header checksum
    middle_sum: int  # of the pseudo-header (but its length) and the transport header
    last_sum: int
    ip_id: int
    sequence: int


def _header_len(packet: Buffer, hdr: VnetHdr, *, tcp: bool, ipv4: bool) -> int:
    """The length of a super-packet's IP and transport headers, which its transport header
    starts at hdr.csum_start; OffloadError when they do not fit it."""
    l4_start = hdr.csum_start
    # hdr_len is not trusted: on a forwarding path the kernel may set it to a whole packet
    # (wireguard-go's handleVirtioRead reads the header lengths from the packet instead).
    if tcp:
        if len(packet) < l4_start + TCP_HEADER_LEN:
            raise OffloadError("super-packet shorter than its headers")
        header_len = l4_start + (packet[l4_start + 12] >> 4) * 4
    else:
        header_len = l4_start + UDP_HEADER_LEN
    minimum = IPV4_HEADER_LEN if ipv4 else IPV6_HEADER_LEN
    if l4_start < minimum or header_len - l4_start < (20 if tcp else 8) or len(packet) < header_len:
        raise OffloadError("super-packet shorter than its headers")
    return header_len


def _template(packet: Buffer, hdr: VnetHdr, *, tcp: bool, ipv4: bool) -> _Template:
    l4_start, header_len = hdr.csum_start, _header_len(packet, hdr, tcp=tcp, ipv4=ipv4)
    if tcp:
        checksum_at, protocol = l4_start + TCP_CHECKSUM_OFFSET, IPPROTO_TCP
    else:
        checksum_at, protocol = l4_start + UDP_CHECKSUM_OFFSET, IPPROTO_UDP

    last = bytearray(packet[:header_len])
    ip_id = _U16.unpack_from(last, 4)[0] if ipv4 else 0
    sequence = _U32.unpack_from(last, l4_start + 4)[0] if tcp else 0
    length_at = 2 if ipv4 else 4
    last[length_at : length_at + 2] = last[checksum_at : checksum_at + 2] = b"\0\0"
    last[l4_start + 4 : l4_start + (8 if tcp else 6)] = bytes(4 if tcp else 2)
    if ipv4:
        last[4:6] = last[10:12] = b"\0\0"
    ip_sum = int.from_bytes(last[:l4_start], "big") if ipv4 else 0
    last_sum = int.from_bytes(last[l4_start:], "big") + pseudo_header_sum(last, protocol, 0)
    middle, middle_sum = last, last_sum
    if tcp:
        middle = last.copy()
        middle[l4_start + 13] &= ~(TCP_FIN | TCP_PSH) & 0xFF
        # The flags are the low byte of a 16-bit word: clearing bits subtracts their value.
        middle_sum -= last[l4_start + 13] & (TCP_FIN | TCP_PSH)
    return _Template(
        l4_start, header_len, checksum_at, middle, last, ip_sum, middle_sum, last_sum, ip_id,
        sequence,
    )  # fmt: skip


def _split(packet: Buffer, size: int, template: _Template, *, tcp: bool, ipv4: bool) -> list[bytes]:
    # The template's fields as locals: the loop below runs once per segment.
    l4_start, header_len, checksum_at = template.l4_start, template.header_len, template.checksum_at
    middle, last_headers, middle_sum, last_sum = (
        template.middle, template.last, template.middle_sum, template.last_sum
    )  # fmt: skip
    ip_sum, first_ip_id, first_sequence = template.ip_sum, template.ip_id, template.sequence
    segments = []
    end = len(packet)
    view = memoryview(packet)
    payloads = [view[start : start + size] for start in range(header_len, end, size)]
    payload_sums = strided_sums(view, header_len, size)
    for index, (payload, payload_sum) in enumerate(zip(payloads, payload_sums, strict=True)):
        length = header_len + len(payload)
        l4_length = length - l4_start
        last = header_len + (index + 1) * size >= end
        out = (last_headers if last else middle).copy()
        variable = l4_length  # the pseudo-header's length
        if ipv4:
            ip_id = (first_ip_id + index) & 0xFFFF
            _HALVES.pack_into(out, 2, length, ip_id)
            _U16.pack_into(out, 10, ~fold(ip_sum + length + ip_id) & 0xFFFF)
        else:
            _U16.pack_into(out, 4, length - IPV6_HEADER_LEN)
        if tcp:
            sequence = (first_sequence + index * size) & 0xFFFFFFFF
            _U32.pack_into(out, l4_start + 4, sequence)
            variable += (sequence >> 16) + (sequence & 0xFFFF)
        else:
            _U16.pack_into(out, l4_start + 4, l4_length)
            variable += l4_length  # the UDP length field, besides the pseudo-header's
        base = (last_sum if last else middle_sum) + variable
        _U16.pack_into(out, checksum_at, checksum_field(fold(base + payload_sum)))
        segments.append(b"".join((out, payload)))
    return segments
