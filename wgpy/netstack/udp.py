"""UDP (RFC 768): the header, and the sockets the stack binds.

A socket is plain state, as smoltcp's: datagrams received wait in a bounded queue (the newest is
dropped when it is full, as a full socket buffer drops), and `sendto` hands the datagram to the
stack at once.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from typing import Final, NamedTuple

from wgpy.netstack import ip
from wgpy.netstack.drops import Drop

HEADER: Final = struct.Struct("!HHHH")  # source port, destination port, length, checksum
HEADER_LEN: Final = HEADER.size
RECEIVE_QUEUE: Final = 256  # datagrams a socket holds before it drops

Address = tuple[str, int]


class UdpDatagram(NamedTuple):
    source_port: int
    destination_port: int
    payload: bytes


def parse(message: bytes, source: bytes, destination: bytes) -> UdpDatagram | Drop:
    if len(message) < HEADER_LEN:
        return Drop.TRUNCATED_UDP
    source_port, destination_port, length, checksum = HEADER.unpack_from(message)
    if not HEADER_LEN <= length <= len(message):
        return Drop.TRUNCATED_UDP
    message = message[:length]
    # A zero checksum is "none" over IPv4; over IPv6 it is mandatory (RFC 8200 8.1).
    if (checksum or len(source) == 16) and ip.transport_checksum(
        source, destination, ip.UDP, message
    ):
        return Drop.BAD_UDP_CHECKSUM
    return UdpDatagram(source_port, destination_port, message[HEADER_LEN:])


def serialize(datagram: UdpDatagram, source: bytes, destination: bytes) -> bytes:
    length = HEADER_LEN + len(datagram.payload)
    header = HEADER.pack(datagram.source_port, datagram.destination_port, length, 0)
    checksum = ip.transport_checksum(source, destination, ip.UDP, header + datagram.payload)
    header = HEADER.pack(
        datagram.source_port, datagram.destination_port, length, checksum or 0xFFFF
    )
    return header + datagram.payload


class UdpError(NamedTuple):
    """An ICMP error about a datagram this socket sent to `remote`: `refused` for port
    unreachable, else another unreachable (host, network, administratively prohibited)."""

    remote: Address
    refused: bool


class UdpSocket:
    def __init__(self, port: int, send: Callable[[UdpSocket, bytes, Address], None]) -> None:
        self.port = port
        self.received: deque[tuple[bytes, Address]] = deque()
        self.errors: deque[UdpError] = deque(maxlen=16)
        self.closed = False
        self._send = send

    def sendto(self, data: bytes, address: Address) -> None:
        """Send `data` to `address` (a textual IP and a port) through the stack."""
        if self.closed:
            raise OSError("the UDP socket is closed")
        self._send(self, data, address)

    def recvfrom(self) -> tuple[bytes, Address] | None:
        """The oldest datagram waiting and where it came from, or None."""
        return self.received.popleft() if self.received else None

    def deliver(self, data: bytes, source: Address) -> bool:
        """The stack's: queue a datagram received; False when the queue is full."""
        if len(self.received) >= RECEIVE_QUEUE:
            return False
        self.received.append((data, source))
        return True
