"""ICMP (RFC 792) and ICMPv6 (RFC 4443): the echo the stack answers and sends, the port
unreachable it sends for a closed UDP port, and the errors it reads back to a socket.

The error the stack sends quotes as much of the offending packet as keeps the reply within the
minimum MTU (576 bytes for IPv4, RFC 1812 4.3.2.3; 1280 for IPv6, RFC 4443 2.4), and errors are
rate-limited by a token bucket, as Linux's icmp_ratelimit is.
"""

from __future__ import annotations

import struct
from enum import Enum
from typing import Final, NamedTuple

from wgpy.core.ippacket import IPV4_HEADER_LEN, IPV6_HEADER_LEN, internet_checksum
from wgpy.netstack import ip
from wgpy.netstack.drops import Drop

HEADER: Final = struct.Struct("!BBH")  # type, code, checksum
ECHO: Final = struct.Struct("!HH")  # identifier, sequence
HEADER_LEN: Final = 8  # type, code, checksum and the 4 bytes each message type defines

ECHO_REQUEST: Final = {4: 8, 6: 128}
ECHO_REPLY: Final = {4: 0, 6: 129}
DESTINATION_UNREACHABLE: Final = {4: 3, 6: 1}
PORT_UNREACHABLE: Final = {4: 3, 6: 4}  # the code
PROTOCOL: Final = {4: ip.ICMP, 6: ip.ICMPV6}
_MINIMUM_MTU: Final = {4: 576, 6: 1280}

ERRORS_PER_SECOND: Final = 1000  # Linux's net.ipv4.icmp_msgs_per_sec
ERROR_BURST: Final = 50  # and its icmp_msgs_burst


class IcmpMessage(NamedTuple):
    type: int
    code: int
    rest: bytes  # the 4 bytes after the checksum, then the body


class Unreachable(Enum):
    """What an ICMP error says about a packet we sent."""

    PORT = "port unreachable"  # a refusal: nothing listens there
    HOST = "host or network unreachable"
    PROHIBITED = "administratively prohibited"
    OTHER = "another error (time exceeded, too big, parameter problem)"


class QuotedError(NamedTuple):
    """An ICMP error and the headers it quotes of a packet we sent: our address and port, and
    the remote's, and its protocol."""

    kind: Unreachable
    protocol: int
    local: bytes
    local_port: int
    remote: bytes
    remote_port: int


def parse(packet: ip.IpPacket) -> IcmpMessage | Drop:
    message = packet.payload
    if len(message) < HEADER_LEN:
        return Drop.TRUNCATED_ICMP
    covered = message
    if packet.version == 6:
        covered = ip.pseudo_header(packet.source, packet.destination, ip.ICMPV6, len(message))
        covered += message
    if internet_checksum(covered) != 0:
        return Drop.BAD_ICMP_CHECKSUM
    kind, code, _ = HEADER.unpack_from(message)
    return IcmpMessage(kind, code, message[4:])


def build(
    version: int, source: bytes, destination: bytes, kind: int, code: int, rest: bytes
) -> bytes:
    """An ICMP or ICMPv6 message in its IP packet."""
    message = HEADER.pack(kind, code, 0) + rest
    covered = message
    if version == 6:
        covered = ip.pseudo_header(source, destination, ip.ICMPV6, len(message)) + message
    checksum = internet_checksum(covered).to_bytes(2, "big")
    return ip.build(source, destination, PROTOCOL[version], message[:2] + checksum + message[4:])


def echo_request(
    source: bytes, destination: bytes, identifier: int, sequence: int, payload: bytes
) -> bytes:
    version = 4 if len(source) == 4 else 6
    rest = ECHO.pack(identifier, sequence) + payload
    return build(version, source, destination, ECHO_REQUEST[version], 0, rest)


def echo_reply(request: ip.IpPacket, message: IcmpMessage) -> bytes:
    """The reply to an echo request: its identifier, sequence and data back to the sender."""
    version = request.version
    return build(version, request.destination, request.source, ECHO_REPLY[version], 0, message.rest)


def port_unreachable(offending: ip.IpPacket) -> bytes:
    """The error that answers `offending`, a UDP datagram to a port nothing is bound to."""
    version = offending.version
    header_len = IPV4_HEADER_LEN if version == 4 else IPV6_HEADER_LEN
    quote = offending.packet[: _MINIMUM_MTU[version] - header_len - HEADER_LEN]
    return build(
        version, offending.destination, offending.source,
        DESTINATION_UNREACHABLE[version], PORT_UNREACHABLE[version], bytes(4) + quote,
    )  # fmt: skip


def quoted_error(version: int, message: IcmpMessage) -> QuotedError | None:
    """What an error message says and about which of our packets; None for a message that is
    not an error, or quotes too little to name a socket (an IP header and 8 bytes, RFC 792)."""
    kind = _error_kind(version, message)
    if kind is None:
        return None
    quoted = _quoted_packet(message.rest[4:])
    if quoted is None:
        return None
    local_port, remote_port = struct.unpack_from("!HH", quoted.payload)
    return QuotedError(
        kind, quoted.protocol, quoted.source, local_port, quoted.destination, remote_port
    )


def _quoted_packet(data: bytes) -> ip.IpPacket | None:
    """The quoted header, and at least the 4 bytes of ports after it. The quote is read as it
    is, often cut short of the length its header claims."""
    if not data:
        return None
    version = data[0] >> 4
    if version == 4 and len(data) >= IPV4_HEADER_LEN:
        header_len = (data[0] & 0x0F) * 4
        if header_len >= IPV4_HEADER_LEN and len(data) >= header_len + 4:
            return ip.IpPacket(4, data[12:16], data[16:20], data[9], data[header_len:], data)
    if version == 6 and len(data) >= IPV6_HEADER_LEN + 4:
        return ip.IpPacket(6, data[8:24], data[24:40], data[6], data[IPV6_HEADER_LEN:], data)
    return None


def _error_kind(version: int, message: IcmpMessage) -> Unreachable | None:
    if version == 4:
        if message.type == 3:
            if message.code == 3:
                return Unreachable.PORT
            return Unreachable.PROHIBITED if message.code in (9, 10, 13) else Unreachable.HOST
        return Unreachable.OTHER if message.type in (11, 12) else None
    if message.type == 1:
        if message.code == 4:
            return Unreachable.PORT
        return Unreachable.PROHIBITED if message.code in (1, 5, 6) else Unreachable.HOST
    return Unreachable.OTHER if message.type in (2, 3, 4) else None


class ErrorRateLimit:
    """A token bucket: ERROR_BURST errors at once, ERRORS_PER_SECOND after that."""

    def __init__(self) -> None:
        self._tokens = float(ERROR_BURST)
        self._last = float("-inf")

    def allow(self, now: float) -> bool:
        elapsed = now - self._last if self._last != float("-inf") else 0.0
        self._tokens = min(ERROR_BURST, self._tokens + elapsed * ERRORS_PER_SECOND)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
