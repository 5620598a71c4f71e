"""asyncio transports over the user-space stack's sockets, so that asyncio's own protocols and
streams run on it unchanged: a DatagramTransport over a UdpSocket (this module, with the DNS stub
resolver as its protocol), a Transport over a TcpConnection (stack_streams.py).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from typing import Any

from wgpy.io.rootless import RootlessDataPath
from wgpy.netstack.dns import Failed, StubResolver
from wgpy.netstack.udp import Address, UdpSocket


def normalized(address: tuple[Any, ...]) -> Address:
    """(host, port) with the host as the stack writes it: an IP literal in its short form."""
    return str(ipaddress.ip_address(address[0])), int(address[1])


class StackDatagramTransport(asyncio.DatagramTransport):
    """A UDP socket of the stack, as asyncio's create_datagram_endpoint gives one: with a
    `remote`, it sends there by default and takes datagrams and errors from there alone, like a
    connected socket."""

    def __init__(
        self,
        path: RootlessDataPath,
        socket: UdpSocket,
        protocol: asyncio.DatagramProtocol,
        remote: Address | None,
    ) -> None:
        super().__init__()
        self._path = path
        self._socket = socket
        self._protocol = protocol
        self._remote = remote
        self._closing = False
        path.watch(socket, self._on_event)
        path.transports.add(self)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        if addr is None:
            if self._remote is None:
                raise ValueError("no address: the endpoint has no remote_addr")
            address = self._remote
        else:
            address = normalized(addr)
            if self._remote is not None and address != self._remote:
                raise ValueError(f"the endpoint is connected to {self._remote}, not {address}")
        self._socket.sendto(bytes(data), address)
        self._path.wake()

    def _on_event(self) -> None:
        while (received := self._socket.recvfrom()) is not None:
            data, source = received
            if self._remote is None or source == self._remote:
                self._protocol.datagram_received(data, source)
        while self._socket.errors:
            error = self._socket.errors.popleft()
            if self._remote is None or error.remote == self._remote:
                code = errno.ECONNREFUSED if error.refused else errno.EHOSTUNREACH
                exc = ConnectionRefusedError if error.refused else OSError
                self._protocol.error_received(exc(code, f"{error.remote}: {errno.errorcode[code]}"))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            stack = self._path.stack
            local = stack.addresses[0]
            if self._remote is not None:
                local = stack.source_for(ipaddress.ip_address(self._remote[0]).packed)
            return str(ipaddress.ip_address(local)), self._socket.port
        if name == "peername":
            return self._remote or default
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._path.unwatch(self._socket)
        self._path.transports.discard(self)
        self._path.stack.udp_close(self._socket)
        self._path.loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0


class TunnelResolver(asyncio.DatagramProtocol):
    """The sans-IO stub resolver (wgpy.netstack.dns) on a datagram endpoint: `lookup` resolves
    to a name's addresses, or raises socket.gaierror when no server answered."""

    def __init__(self, resolver: StubResolver) -> None:
        self._resolver = resolver
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._waiters: dict[int, asyncio.Future[list[str]]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for waiter in self._waiters.values():
            waiter.cancel()

    def lookup(self, name: str) -> asyncio.Future[list[str]]:
        """The addresses of `name`, A then AAAA; ValueError for a name DNS cannot carry."""
        waiter: asyncio.Future[list[str]] = self._loop.create_future()
        self._waiters[self._resolver.query(name, self._loop.time())] = waiter
        self._turn()
        return waiter

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._resolver.receive(data, (addr[0], addr[1]), self._loop.time())
        self._turn()

    def _on_timer(self) -> None:
        self._timer = None
        self._resolver.handle_timer(self._loop.time())
        self._turn()

    def _turn(self) -> None:
        assert self._transport is not None
        for data, server in self._resolver.datagrams_to_send():
            self._transport.sendto(data, server)
        for event in self._resolver.events():
            waiter = self._waiters.pop(event.lookup, None)
            if waiter is None or waiter.done():
                continue
            if isinstance(event, Failed):
                waiter.set_exception(
                    socket.gaierror(socket.EAI_AGAIN, f"{event.name}: {event.reason}")
                )
            else:
                waiter.set_result(event.addresses)
        if self._timer is not None:
            self._timer.cancel()
        deadline = self._resolver.next_deadline()
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)
