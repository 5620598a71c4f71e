"""A TCP listener on this machine for the proxy's protocols (SOCKS5, HTTP, -L forwards): each
connection it accepts gets its transport (wgpy.proxy.socket_transport) in that same turn of the
loop.

loop.create_server's accept takes three turns before a connection's first bytes can be read (an
accept() repeated until it fails with EAGAIN, which raises; a task that makes the transport and
awaits connection_made; that call's turn), and a coroutine, a future and two task steps. Here
one accept() per readable listener, the poll being level-triggered (another connection waiting
makes it readable again), and the transport made at once: two turns, and 2.7% fewer of the
proxy's instructions a SOCKS5 connect (issue 17).

For protocols whose client speaks first (SOCKS5, HTTP), the kernel holds each connection back
until its first bytes arrive (TCP_DEFER_ACCEPT), and they are read in the accept's turn: the
accept and the first read take one wake-up and one turn, where they took one each (issue 17:
6.64 -> 5.79 of the proxy's wake-ups a SOCKS5 connect, connects 20 ms apart). A client that
never speaks holds no descriptor while the kernel holds it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from wgpy.proxy.socket_transport import SocketTransport

log = logging.getLogger("wgpy.proxy")
BACKLOG = 100  # loop.create_server's
ACCEPT_RETRY_DELAY = 1.0  # seconds the listener rests when out of descriptors, as asyncio's
# How long the kernel holds back a connection whose client has said nothing; then it comes as
# any other would (the kernel counts this in retransmissions of its SYN-ACK: here one, at 1 s).
DEFER_SECONDS = 1

ProtocolFactory = Callable[[], asyncio.Protocol]


class Listener:
    """Accepts on `sockets` (bound and listening) for `protocol_factory` until closed: what
    loop.create_server returns, in the parts the proxy uses."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        factory: ProtocolFactory,
        client_speaks_first: bool = False,
    ) -> None:
        self.loop = loop
        self.sockets = sockets
        self.factory = factory
        self.client_speaks_first = client_speaks_first
        for sock in sockets:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        try:
            conn, peer = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another took it, or the client gave up meanwhile
        except OSError as error:  # out of descriptors or memory: rest, as asyncio's does
            log.warning("accept on %s: %s", sock.getsockname(), error)
            self.loop.remove_reader(sock.fileno())
            self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume, sock)
            return
        conn.setblocking(False)
        # Each write is sent as it comes, as asyncio's transports have it: Nagle's algorithm
        # would hold a relayed write back until the client acknowledged the last.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = SocketTransport(self.loop, conn, self.factory(), peer)
        if self.client_speaks_first:
            transport.read_waiting()  # (what made the listener readable, with defer_accept)

    def _resume(self, sock: socket.socket) -> None:
        if sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting; the connections accepted go on."""
        sockets, self.sockets = self.sockets, []
        for sock in sockets:
            self.loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        """Closed already at close() (the connections are the caller's to wait for)."""


async def listen(
    factory: ProtocolFactory, host: str | None, port: int, client_speaks_first: bool = False
) -> Listener:
    """A Listener on each address `host` names (None: every address) at `port`, bound as
    loop.create_server binds (SO_REUSEADDR, IPv6 sockets IPv6-only); for a protocol whose
    `client_speaks_first`, connections come with their first bytes. Raises OSError."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            if client_speaks_first:
                defer_accept(sock)
            sock.listen(BACKLOG)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return Listener(loop, sockets, factory, client_speaks_first)


def defer_accept(sock: socket.socket) -> None:
    """Connections to `sock` accepted once their first bytes arrive, where the system can
    (Linux's TCP_DEFER_ACCEPT, tcp(7)); elsewhere, as they come."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is not None:
        sock.setsockopt(socket.IPPROTO_TCP, option, DEFER_SECONDS)
