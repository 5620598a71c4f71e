"""The few header fields of a raw inner IP packet that the data path reads.

Every helper returns None for a packet it cannot vouch for: a version nibble other than 4 or 6, or
fewer bytes than that version's fixed header. The checks are those of the kernel's
drivers/net/wireguard/receive.c (wg_packet_consume_data_done) and wireguard-go's
device/receive.go (RoutineSequentialReceiver).
"""

from __future__ import annotations

from typing import Final

Packet = bytes | bytearray | memoryview

IPV4_HEADER_LEN: Final = 20
IPV6_HEADER_LEN: Final = 40

# Byte offsets of the fields read here (RFC 791 section 3.1, RFC 8200 section 3).
_IPV4_TOTAL_LENGTH: Final = 2
_IPV4_SOURCE: Final = 12
_IPV4_DESTINATION: Final = 16
_IPV6_PAYLOAD_LENGTH: Final = 4
_IPV6_SOURCE: Final = 8
_IPV6_DESTINATION: Final = 24


def version(packet: Packet) -> int | None:
    """4 or 6 when the packet carries that version's whole fixed header, else None."""
    if len(packet) < IPV4_HEADER_LEN:  # the shorter of the two headers
        return None
    number = packet[0] >> 4
    if number == 4 or (number == 6 and len(packet) >= IPV6_HEADER_LEN):
        return number
    return None


def source(packet: Packet) -> bytes | None:
    """The source address: 4 raw bytes for IPv4, 16 for IPv6."""
    return _address(packet, _IPV4_SOURCE, _IPV6_SOURCE)


def destination(packet: Packet) -> bytes | None:
    """The destination address: 4 raw bytes for IPv4, 16 for IPv6."""
    return _address(packet, _IPV4_DESTINATION, _IPV6_DESTINATION)


def _address(packet: Packet, ipv4_at: int, ipv6_at: int) -> bytes | None:
    """The address at `ipv4_at` or `ipv6_at`, by the packet's version. It runs once per packet,
    so it repeats version's checks rather than call it."""
    if len(packet) >= IPV4_HEADER_LEN:
        number = packet[0] >> 4
        if number == 4:
            return bytes(packet[ipv4_at : ipv4_at + 4])
        if number == 6 and len(packet) >= IPV6_HEADER_LEN:
            return bytes(packet[ipv6_at : ipv6_at + 16])
    return None


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
