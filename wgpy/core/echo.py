"""The ICMP (or ICMPv6) echo a probe sends through a session, and the reply it waits for.

The request goes from the probe's inner address, as a ping through the tunnel would; the reply
must carry its identifier, sequence and payload back, byte for byte but for trailing padding.
Checksums are RFC 1071's, ICMPv6's over a pseudo-header too (RFC 8200 section 8.1).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from wgpy.core import ippacket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_PROTOCOL = {4: 1, 6: 58}  # ICMP, ICMPv6
_ECHO_REQUEST = {4: 8, 6: 128}
_ECHO_REPLY = {4: 0, 6: 129}


@dataclass(frozen=True, slots=True)
class Echo:
    """An ICMP (or ICMPv6) echo request from our inner address `source` to `destination`."""

    source: IPAddress
    destination: IPAddress
    identifier: int
    sequence: int
    payload: bytes = b"wgpy probe"

    def __post_init__(self) -> None:
        if self.source.version != self.destination.version:
            raise ValueError("the echo's source and destination differ in IP version")

    def request(self) -> bytes:
        return self._packet(_ECHO_REQUEST, self.source, self.destination)

    def answered_by(self, packet: bytes) -> bool:
        """Whether `packet` (padding and all) is the echo reply `destination` owes us."""
        length = ippacket.inner_length(packet)
        if length is None or ippacket.version(packet) != self.source.version:
            return False
        packet = packet[:length]
        if self.source.version == 4:
            protocol, header_length = packet[9], (packet[0] & 0x0F) * 4
        else:  # Extension headers do not occur in an echo reply.
            protocol, header_length = packet[6], ippacket.IPV6_HEADER_LEN
        expected = self._message(_ECHO_REPLY, self.destination, self.source)
        return (
            protocol == _PROTOCOL[self.source.version]
            and ippacket.source(packet) == self.destination.packed
            and ippacket.destination(packet) == self.source.packed
            and packet[header_length:] == expected
        )

    def _packet(self, kinds: dict[int, int], source: IPAddress, destination: IPAddress) -> bytes:
        message = self._message(kinds, source, destination)
        build = ippacket.ipv4_packet if source.version == 4 else ippacket.ipv6_packet
        return build(str(source), str(destination), message, _PROTOCOL[source.version])

    def _message(self, kinds: dict[int, int], source: IPAddress, destination: IPAddress) -> bytes:
        """The ICMP message; ICMPv6 checksums a pseudo-header too (RFC 8200 section 8.1)."""
        message = _ECHO.pack(kinds[source.version], 0, 0, self.identifier, self.sequence)
        message += self.payload
        covered = message
        if source.version == 6:
            pseudo_header = struct.pack("!I3xB", len(message), _PROTOCOL[6])
            covered = source.packed + destination.packed + pseudo_header + message
        return _with_checksum(message, 2, ippacket.internet_checksum(covered))


def _with_checksum(data: bytes, offset: int, checksum: int) -> bytes:
    return data[:offset] + checksum.to_bytes(2, "big") + data[offset + 2 :]
