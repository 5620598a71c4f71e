"""The stack: IP packets in and out for the tunnel addresses, demultiplexed to UDP sockets, TCP
connections and ICMP.

Like smoltcp's Interface, it is polled: `receive` takes a packet from the tunnel, `packets_to_send`
gives what the sockets and connections have to send, `next_deadline`/`handle_timer` run their
timers, and `events` names what has news for the application (a socket with datagrams, an echo
reply, a connection with events, a listener with connections to accept). Nothing from the
network raises: every packet it cannot use is counted in `drops` by reason.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Container
from typing import Final, NamedTuple

from wgpy.netstack import icmp, ip, udp
from wgpy.netstack.drops import Drop
from wgpy.netstack.udp import Address, UdpDatagram, UdpSocket

EPHEMERAL_PORTS: Final = range(49152, 65536)  # RFC 6335's dynamic ports


class EchoReplied(NamedTuple):
    """An echo reply from `address` to the request of `identifier` and `sequence`."""

    address: str
    identifier: int
    sequence: int
    payload: bytes


Event = UdpSocket | EchoReplied


class Stack:
    def __init__(self, addresses: list[str], mtu: int, rng: random.Random) -> None:
        interfaces = [ipaddress.ip_interface(address) for address in addresses]
        self.addresses: list[bytes] = [interface.ip.packed for interface in interfaces]
        if not self.addresses:
            raise ValueError("the stack needs at least one tunnel address")
        self.mtu = mtu
        self.rng = rng
        self.drops: Counter[Drop] = Counter()
        self._udp: dict[int, UdpSocket] = {}
        self._outbox: list[bytes] = []
        self._events: dict[int, Event] = {}  # by id(): an ordered set
        self._icmp_errors = icmp.ErrorRateLimit()

    # -- the tunnel side -------------------------------------------------------------------

    def receive(self, packet: bytes, now: float) -> None:
        """An IP packet from the tunnel. Never raises: what the stack cannot use is counted."""
        parsed = ip.parse(packet)
        if isinstance(parsed, Drop):
            self._drop(parsed)
        elif parsed.destination not in self.addresses:
            self._drop(Drop.NOT_OUR_ADDRESS)
        elif parsed.protocol == ip.UDP:
            self._receive_udp(parsed, now)
        elif parsed.protocol == icmp.PROTOCOL[parsed.version]:
            self._receive_icmp(parsed)
        else:
            self._drop(Drop.UNKNOWN_PROTOCOL)

    def packets_to_send(self, now: float) -> list[bytes]:
        """The IP packets for the tunnel, in order."""
        packets, self._outbox = self._outbox, []
        return packets

    def next_deadline(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def events(self) -> list[Event]:
        """What has news since the last call, each once, oldest first."""
        events = list(self._events.values())
        self._events.clear()
        return events

    # -- UDP -------------------------------------------------------------------------------

    def udp_bind(self, port: int = 0) -> UdpSocket:
        """A UDP socket on `port` of every tunnel address; 0 picks a free ephemeral port."""
        if port == 0:
            port = self._free_port(self._udp)
        elif port in self._udp:
            raise OSError(f"UDP port {port} is in use in the tunnel")
        socket = UdpSocket(port, self._udp_send)
        self._udp[port] = socket
        return socket

    def udp_close(self, socket: UdpSocket) -> None:
        socket.closed = True
        if self._udp.get(socket.port) is socket:
            del self._udp[socket.port]

    def _udp_send(self, socket: UdpSocket, data: bytes, address: Address) -> None:
        remote = ipaddress.ip_address(address[0]).packed
        local = self.source_for(remote)
        message = udp.serialize(UdpDatagram(socket.port, address[1], data), local, remote)
        self._outbox.append(ip.build(local, remote, ip.UDP, message))

    def _receive_udp(self, packet: ip.IpPacket, now: float) -> None:
        datagram = udp.parse(packet.payload, packet.source, packet.destination)
        if isinstance(datagram, Drop):
            self._drop(datagram)
            return
        socket = self._udp.get(datagram.destination_port)
        if socket is None:
            self._drop(Drop.UDP_PORT_CLOSED)
            self._send_icmp_error(icmp.port_unreachable(packet), now)
            return
        source = (str(ipaddress.ip_address(packet.source)), datagram.source_port)
        if not socket.deliver(datagram.payload, source):
            self._drop(Drop.UDP_QUEUE_FULL)
            return
        self._events[id(socket)] = socket

    # -- ICMP ------------------------------------------------------------------------------

    def ping(self, address: str, identifier: int, sequence: int, payload: bytes) -> None:
        """Send an echo request to `address`; its reply comes as an EchoReplied event."""
        remote = ipaddress.ip_address(address).packed
        request = icmp.echo_request(self.source_for(remote), remote, identifier, sequence, payload)
        self._outbox.append(request)

    def _receive_icmp(self, packet: ip.IpPacket) -> None:
        message = icmp.parse(packet)
        if isinstance(message, Drop):
            self._drop(message)
            return
        version = packet.version
        if message.type == icmp.ECHO_REQUEST[version] and message.code == 0:
            self._outbox.append(icmp.echo_reply(packet, message))
        elif message.type == icmp.ECHO_REPLY[version] and len(message.rest) >= icmp.ECHO.size:
            identifier, sequence = icmp.ECHO.unpack_from(message.rest)
            address = str(ipaddress.ip_address(packet.source))
            reply = EchoReplied(address, identifier, sequence, message.rest[icmp.ECHO.size :])
            self._events[id(reply)] = reply
        else:
            error = icmp.quoted_error(version, message)
            if error is None:
                self._drop(Drop.ICMP_IGNORED)
            elif not self._route_icmp_error(error):
                self._drop(Drop.ICMP_ERROR_UNMATCHED)

    def _route_icmp_error(self, error: icmp.QuotedError) -> bool:
        """Hand an ICMP error to the socket whose packet it quotes; False if none did."""
        if error.protocol == ip.UDP and error.local in self.addresses:
            socket = self._udp.get(error.local_port)
            if socket is not None:
                remote = (str(ipaddress.ip_address(error.remote)), error.remote_port)
                socket.errors.append(udp.UdpError(remote, error.kind is icmp.Unreachable.PORT))
                self._events[id(socket)] = socket
                return True
        return False

    def _send_icmp_error(self, packet: bytes, now: float) -> None:
        if self._icmp_errors.allow(now):
            self._outbox.append(packet)
        else:
            self._drop(Drop.ICMP_RATE_LIMITED)

    # -- helpers ---------------------------------------------------------------------------

    def source_for(self, remote: bytes) -> bytes:
        """Our tunnel address of the remote's family."""
        for address in self.addresses:
            if len(address) == len(remote):
                return address
        raise OSError(f"no tunnel address of IPv{4 if len(remote) == 4 else 6}")

    def _free_port(self, taken: Container[int]) -> int:
        for _ in range(len(EPHEMERAL_PORTS)):
            port = self.rng.choice(EPHEMERAL_PORTS)
            if port not in taken:
                return port
        raise OSError("no free port in the tunnel")

    def _drop(self, reason: Drop) -> None:
        self.drops[reason] += 1
