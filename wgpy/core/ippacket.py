"""The few header fields of a raw inner IP packet that the data path reads, and the packets a
TUN would hand over, built for the device driven in memory (the demo, examples, tests) and for
the probe's echo.

Every reader returns None for a packet it cannot vouch for: a version nibble other than 4 or 6, or
fewer bytes than that version's fixed header. The checks are those of the kernel's
drivers/net/wireguard/receive.c (wg_packet_consume_data_done) and wireguard-go's
device/receive.go (RoutineSequentialReceiver).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Sequence
from typing import Final

Packet = bytes | bytearray | memoryview

IPV4_HEADER_LEN: Final = 20
IPV6_HEADER_LEN: Final = 40

# Byte offsets of the fields read or written here (RFC 791 section 3.1, RFC 8200 section 3).
_IPV4_TOTAL_LENGTH: Final = 2
_IPV4_CHECKSUM: Final = 10
_IPV4_SOURCE: Final = 12
_IPV4_DESTINATION: Final = 16
_IPV6_PAYLOAD_LENGTH: Final = 4
_IPV6_SOURCE: Final = 8
_IPV6_DESTINATION: Final = 24

# RFC 3692's protocol number for experiments and tests: no stack on the way parses the payload.
EXPERIMENTAL_PROTOCOL: Final = 253
_HOP_LIMIT: Final = 64  # IPv4's time to live and IPv6's hop limit: Linux's default for both

# RFC 791 section 3.1: version and IHL, type of service, total length, identification, flags and
# fragment offset, time to live, protocol, header checksum, source, destination.
_IPV4_HEADER: Final = struct.Struct("!BBHHHBBH4s4s")
# RFC 8200 section 3: version, traffic class and flow label; payload length, next header, hop
# limit, source, destination.
_IPV6_HEADER: Final = struct.Struct("!IHBB16s16s")


def version(packet: Packet) -> int | None:
    """4 or 6 when the packet carries that version's whole fixed header, else None."""
    if len(packet) < IPV4_HEADER_LEN:  # the shorter of the two headers
        return None
    number = packet[0] >> 4
    if number == 4 or (number == 6 and len(packet) >= IPV6_HEADER_LEN):
        return number
    return None


def _address_reader(ipv4_at: int, ipv6_at: int) -> Callable[[Packet], bytes | None]:
    """A reader of the address at `ipv4_at` or `ipv6_at`, by the packet's version. It runs once
    per packet, so it repeats version's checks rather than call it."""

    def address(packet: Packet) -> bytes | None:
        if len(packet) >= IPV4_HEADER_LEN:
            number = packet[0] >> 4
            if number == 4:
                return bytes(packet[ipv4_at : ipv4_at + 4])
            if number == 6 and len(packet) >= IPV6_HEADER_LEN:
                return bytes(packet[ipv6_at : ipv6_at + 16])
        return None

    return address


# The source and the destination address: 4 raw bytes for IPv4, 16 for IPv6. (Each is one call,
# not a call of a shared reader with the offsets: the send path reads the destination of every
# packet.)
source = _address_reader(_IPV4_SOURCE, _IPV6_SOURCE)
destination = _address_reader(_IPV4_DESTINATION, _IPV6_DESTINATION)


def inner_length(packet: Packet) -> int | None:
    """The packet's length by its own header, without the padding a transport message adds.

    None when the header is truncated, an IPv4 total length is shorter than its header, or the
    header claims more bytes than the packet has.
    """
    found = inner_length_and_source(packet)
    return None if found is None else found[0]


def inner_length_and_source(packet: Packet) -> tuple[int, bytes] | None:
    """`inner_length` and `source` at once, None where `inner_length` is: the receive path needs
    both for every packet, and one call costs less than the two."""
    if len(packet) < IPV4_HEADER_LEN:
        return None
    number = packet[0] >> 4
    if number == 4:
        length = packet[_IPV4_TOTAL_LENGTH] << 8 | packet[_IPV4_TOTAL_LENGTH + 1]
        if IPV4_HEADER_LEN <= length <= len(packet):
            return length, bytes(packet[_IPV4_SOURCE : _IPV4_SOURCE + 4])
    elif number == 6 and len(packet) >= IPV6_HEADER_LEN:
        length = IPV6_HEADER_LEN + (
            packet[_IPV6_PAYLOAD_LENGTH] << 8 | packet[_IPV6_PAYLOAD_LENGTH + 1]
        )
        if length <= len(packet):
            return length, bytes(packet[_IPV6_SOURCE : _IPV6_SOURCE + 16])
    return None


def inner_packets(plaintexts: Sequence[bytes | None]) -> tuple[list[bytes], list[bytes]] | None:
    """Each of a batch's `plaintexts` cut to its own length, without its padding, and their
    sources, one for each run of packets from one source (a batch is mostly one flow: one
    source to look up): `inner_length_and_source` of them all at once, for the receive path to
    check a batch in one go. None when one of them is None or empty (a keepalive), or has no
    length by its header. (The accelerator's twin: wgpy/io/accel.py.)"""
    packets: list[bytes] = []
    sources: list[bytes] = []
    for plaintext in plaintexts:
        found = inner_length_and_source(plaintext) if plaintext else None
        if found is None:
            return None
        assert plaintext is not None
        packets.append(plaintext[: found[0]])
        if not sources or sources[-1] != found[1]:
            sources.append(found[1])
    return packets, sources


def common_destination(packets: Sequence[Packet]) -> bytes | None:
    """The `destination` every one of `packets` has; None when one has none, or they differ, or
    there are none. A TSO super-packet's segments share it: the send path routes them at once.
    (The accelerator's twin: wgpy/io/accel.py.)"""
    first = destination(packets[0]) if packets else None
    if first is None or any(destination(packet) != first for packet in packets):
        return None
    return first


def ipv4_packet(
    source: str, destination: str, payload: bytes = b"", protocol: int = EXPERIMENTAL_PROTOCOL
) -> bytes:
    """An IPv4 packet from `source` to `destination` carrying `payload`, its header checksummed."""
    header = _IPV4_HEADER.pack(
        0x45, 0, IPV4_HEADER_LEN + len(payload), 0, 0, _HOP_LIMIT, protocol, 0,
        ipaddress.IPv4Address(source).packed, ipaddress.IPv4Address(destination).packed,
    )  # fmt: skip
    checksum = internet_checksum(header).to_bytes(2, "big")
    return header[:_IPV4_CHECKSUM] + checksum + header[_IPV4_CHECKSUM + 2 :] + payload


def ipv6_packet(
    source: str, destination: str, payload: bytes = b"", next_header: int = EXPERIMENTAL_PROTOCOL
) -> bytes:
    """An IPv6 packet from `source` to `destination` carrying `payload`."""
    header = _IPV6_HEADER.pack(
        6 << 28, len(payload), next_header, _HOP_LIMIT,
        ipaddress.IPv6Address(source).packed, ipaddress.IPv6Address(destination).packed,
    )  # fmt: skip
    return header + payload


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the one's complement of the one's-complement sum of the 16-bit words. As 2**16 is
    1 modulo 0xffff, the number the bytes spell is congruent to that sum."""
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and any(data):  # The sum of words that are not all zero is 0xffff, not 0.
        total = 0xFFFF
    return 0xFFFF - total
