"""IPv4 and IPv6 headers as the stack reads and writes them (RFC 791, RFC 8200).

The tunnel is point to point with an MTU below the path's, so the stack neither fragments nor
reassembles: a fragment, like an IPv6 extension header, is dropped and counted. Addresses stay raw
bytes (4 or 16) on the data path; `ipaddress` is for the edges.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from typing import Final, NamedTuple

from wgpy.core.ippacket import IPV4_HEADER_LEN, IPV6_HEADER_LEN, internet_checksum
from wgpy.netstack.drops import Drop

TCP: Final = 6
UDP: Final = 17
ICMP: Final = 1
ICMPV6: Final = 58
HOP_LIMIT: Final = 64  # Linux's default TTL and hop limit

_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")
_IPV6: Final = struct.Struct("!IHBB16s16s")
_MORE_FRAGMENTS_OR_OFFSET: Final = 0x3FFF
_DONT_FRAGMENT: Final = 0x4000  # set on what the stack sends, as Linux sets it on TCP
_WORDS: Final = struct.Struct("!10H")


@functools.lru_cache(maxsize=256)  # a proxy reaches the same few addresses over and over
def literal(text: str) -> tuple[bytes, str]:
    """An IP literal as raw bytes and as the stack writes it (the short form): a parse and its
    text cost ~10 Python calls cold, and each connect asked for both twice. ValueError if
    `text` is no address."""
    address = ipaddress.ip_address(text)
    return address.packed, str(address)


class IpPacket(NamedTuple):
    """A parsed packet: its upper-layer `payload` without padding, and `packet`, the whole of it
    (an ICMP error quotes it)."""

    version: int
    source: bytes
    destination: bytes
    protocol: int
    payload: bytes
    packet: bytes


def parse(packet: bytes, *, verify_checksum: bool = True) -> IpPacket | Drop:
    """The packet's header fields, or why it is dropped. `verify_checksum` as
    tcp_segment.decode's: off for packets the tunnel already authenticated."""
    if not packet:
        return Drop.TRUNCATED_IP
    version = packet[0] >> 4
    if version == 4:
        return _parse_ipv4(packet, verify_checksum)
    if version == 6:
        return _parse_ipv6(packet)
    return Drop.BAD_IP_VERSION


def _parse_ipv4(packet: bytes, verify_checksum: bool) -> IpPacket | Drop:
    if len(packet) < IPV4_HEADER_LEN:
        return Drop.TRUNCATED_IP
    _, _, total, _, fragment, _, protocol, _, source, destination = _IPV4.unpack_from(packet)
    header_length = (packet[0] & 0x0F) * 4
    if header_length < IPV4_HEADER_LEN or not header_length <= total <= len(packet):
        return Drop.TRUNCATED_IP
    if verify_checksum and internet_checksum(packet[:header_length]) != 0:
        return Drop.BAD_IP_CHECKSUM
    if fragment & _MORE_FRAGMENTS_OR_OFFSET:
        return Drop.FRAGMENT
    packet = packet[:total]
    return IpPacket(4, source, destination, protocol, packet[header_length:], packet)


def _parse_ipv6(packet: bytes) -> IpPacket | Drop:
    if len(packet) < IPV6_HEADER_LEN:
        return Drop.TRUNCATED_IP
    _, length, next_header, _, source, destination = _IPV6.unpack_from(packet)
    if IPV6_HEADER_LEN + length > len(packet):
        return Drop.TRUNCATED_IP
    packet = packet[: IPV6_HEADER_LEN + length]
    return IpPacket(6, source, destination, next_header, packet[IPV6_HEADER_LEN:], packet)


def build(source: bytes, destination: bytes, protocol: int, payload: bytes) -> bytes:
    """A packet of the version the addresses' length says, its IPv4 header checksummed."""
    if len(source) == 4:
        length = IPV4_HEADER_LEN + len(payload)
        total = _ipv4_sum(source, destination, protocol) + length
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
        header = _IPV4.pack(
            0x45, 0, length, 0, _DONT_FRAGMENT, HOP_LIMIT, protocol, 0xFFFF - total,
            source, destination,
        )  # fmt: skip
        return header + payload
    header = _IPV6.pack(6 << 28, len(payload), protocol, HOP_LIMIT, source, destination)
    return header + payload


@functools.lru_cache(maxsize=1024)
def _ipv4_sum(source: bytes, destination: bytes, protocol: int) -> int:
    """The sum of the 16-bit words of the IPv4 header `build` writes, but its total length
    and checksum: the same for every packet of a flow, so the checksum (RFC 1071) is this plus
    the length, folded and complemented."""
    header = _IPV4.pack(0x45, 0, 0, 0, _DONT_FRAGMENT, HOP_LIMIT, protocol, 0, source, destination)
    return sum(_WORDS.unpack(header))


def pseudo_header(source: bytes, destination: bytes, protocol: int, length: int) -> bytes:
    """The pseudo-header TCP, UDP and ICMPv6 checksums cover (RFC 9293 3.1, RFC 8200 8.1)."""
    if len(source) == 4:
        return source + destination + struct.pack("!xBH", protocol, length)
    return source + destination + struct.pack("!I3xB", length, protocol)


def transport_checksum(source: bytes, destination: bytes, protocol: int, message: bytes) -> int:
    """The checksum of `message` (its own checksum field zero) under the pseudo-header."""
    return internet_checksum(pseudo_header(source, destination, protocol, len(message)) + message)
