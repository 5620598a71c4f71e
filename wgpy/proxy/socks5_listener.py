"""`--socks5`: a SOCKS5 listener on this machine whose CONNECT and UDP ASSOCIATE go through a
Network. The negotiation is wgpy.proxy.socks5's; this module carries its decisions out, as an
asyncio protocol per client connection."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
from collections.abc import Mapping
from typing import cast

from wgpy.proxy.network import Described, Network, describe, ip_address_of, is_address
from wgpy.proxy.relay import Connections, Counted, Link, Side, splice
from wgpy.proxy.socks5 import (
    Command,
    Rejected,
    Reply,
    Request,
    Socks5Connection,
    parse_udp_datagram,
    udp_datagram,
)
from wgpy.proxy.upstream import connect_protocol, describe_error, socks5_reply

log = logging.getLogger("wgpy.proxy")
NEGOTIATION_TIMEOUT = 30.0  # seconds a client has to send its greeting, login and request
# What a client may send while its CONNECT is under way, kept for the relay; past it, reading
# pauses (the kernel's buffer holds the rest) until the relay reads.
EARLY_DATA_LIMIT = 1 << 16


class Socks5Listener:
    """A SOCKS5 listener's protocol factory (for loop.create_server): a Socks5Client for each
    connection, held in `connections` until it ends; `credentials` as Socks5Connection's."""

    def __init__(
        self,
        network: Network,
        credentials: Mapping[str, str] | None,
        connect_timeout: float,
        connections: Connections,
    ) -> None:
        self.network = network
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.connections = connections

    def __call__(self) -> Socks5Client:
        return Socks5Client(self)


class Socks5Client(asyncio.Protocol):
    """One client's connection. The negotiation runs in data_received, each answer written as
    its message arrives; the request is carried out by a task (the connect may wait for a name
    and a handshake), or for a CONNECT to an address on a network that begins connections at
    once, by an _Opening; a CONNECT's relay then takes the transport. Callbacks rather than a
    stream read per message: each await was one more turn of the loop (issue 17)."""

    def __init__(self, listener: Socks5Listener) -> None:
        self.listener = listener
        self.session = Socks5Connection(listener.credentials)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(NEGOTIATION_TIMEOUT, self._negotiation_timed_out)
        self._serving: asyncio.Task[None] | _Opening | None = None  # the request under way
        self._link: Link | None = None  # the CONNECT's relay, once it runs
        self._connecting = False  # a CONNECT under way: what the client sends is kept
        self._eof = False  # the client's EOF came meanwhile

    @property
    def peer(self) -> Described:  # for the log
        assert self.transport is not None
        return Described(self.transport.get_extra_info("peername"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.listener.connections.hold(self, self._abort)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        session = self.session
        if self._serving is not None:
            if self._connecting:  # kept for the relay (session.trailing_data)
                session.receive(data)
                if session.trailing > EARLY_DATA_LIMIT:
                    transport.pause_reading()
            return  # (a UDP association's TCP connection: only its end matters, RFC 1928 7)
        events = session.receive(data)
        transport.write(session.data_to_send())
        for event in events:
            self._deadline.cancel()
            if isinstance(event, Rejected):
                log.debug("socks5 %s: rejected: %s", self.peer, event.reason)
                transport.close()
            else:
                self._connecting = event.command is Command.CONNECT
                self._serving = self._begin(event)

    def eof_received(self) -> bool:
        if self._serving is None:
            log.debug("socks5 %s: rejected: closed before a request", self.peer)
        elif self._connecting:
            self._eof = True  # the relay passes it on
            return True
        return False  # closed: a UDP association ends with its TCP connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        if self._serving is None:
            self.listener.connections.release(self)
        elif not self._serving.done():
            self._serving.cancel()  # the client went: a connect under way is given up

    def _negotiation_timed_out(self) -> None:
        log.debug("socks5 %s: negotiation ended: no request in %gs", self.peer,
                  NEGOTIATION_TIMEOUT)  # fmt: skip
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        """The proxy stops, and its grace is over."""
        if self._serving is not None:
            self._serving.cancel()
        if self._link is not None:
            self._link.close()
        elif self.transport is not None:
            self.transport.close()

    def _begin(self, request: Request) -> asyncio.Task[None] | _Opening:
        """A CONNECT begun in this turn where the network can (its SYN goes now, not after a
        turn for a task and the task's own steps: issue 17); else a task serves the request."""
        if request.command is Command.CONNECT:
            target = Described((request.host, request.port))
            opening = _Opening(self, target)
            try:
                transport = self.listener.network.connect_soon(
                    _Upstream(self, target), request.host, request.port, opening.ended
                )
            except OSError as error:  # no route
                opening.ended(error)
                return opening
            if transport is not None:
                opening.begun(transport, self.listener.connect_timeout)
                return opening
        return asyncio.ensure_future(self._serve(request))

    async def _serve(self, request: Request) -> None:
        """The request carried out; unless a relay then holds the connection, it is over."""
        try:
            if request.command == Command.UDP_ASSOCIATE:
                await self._associate(request)
            else:
                await self._connect(request)
        except Exception as error:  # (as Connections logs a task's)
            log.debug("socks5 %s: failed: %r", self.peer, error)
        finally:
            self._finish()

    def _finish(self) -> None:
        """The request is over: unless a relay holds the connection, so is the connection."""
        if self._link is None:
            assert self.transport is not None
            self.transport.close()
            self.listener.connections.release(self)

    async def _connect(self, request: Request) -> None:
        listener = self.listener
        target = Described((request.host, request.port))
        upstream = _Upstream(self, target)
        try:
            await connect_protocol(listener.network, lambda: upstream, request.host,
                                   request.port, listener.connect_timeout)  # fmt: skip
        except (OSError, ValueError) as error:
            if self._link is None:  # (else it stood as the deadline passed: the relay has it)
                self._not_opened(target, error)

    def _not_opened(self, target: Described, error: Exception) -> None:
        """The CONNECT failed: the reply says why."""
        session, transport = self.session, self.transport
        assert transport is not None
        self._connecting = False
        log.debug("socks5 %s -> %s: %s", self.peer, target, describe_error(error))
        session.reply(socks5_reply(error))
        transport.write(session.data_to_send())

    def _opened(self, upstream: asyncio.Transport, target: Described) -> None:
        """The connection to the destination stands: the reply, and the relay, at once (in
        the turn that ended the handshake, not one more for the task awaiting it)."""
        session, transport = self.session, self.transport
        assert transport is not None
        session.reply(Reply.SUCCEEDED, ip_address_of(upstream.get_extra_info("sockname")))
        transport.write(session.data_to_send())
        peer = self.peer
        log.debug("socks5 %s -> %s: opened", peer, target)

        def closed(counted: Counted) -> None:
            log.debug("socks5 %s -> %s: closed, %d bytes up, %d down", peer, target, counted.up,
                      counted.down)  # fmt: skip
            self.listener.connections.release(self)

        self._connecting = False
        client = Side(transport, session.trailing_data(), self._eof)
        self._link = splice(client, Side(upstream), b"", closed)

    async def _associate(self, request: Request) -> None:
        """UDP ASSOCIATE: a UDP port beside the TCP listener for as long as the TCP connection
        lasts; datagrams from the client's address go through the Network, answers come back."""
        session, transport = self.session, self.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        local_host = str(transport.get_extra_info("sockname")[0])
        client_host = str(transport.get_extra_info("peername")[0])
        association = _Association(self.listener.network, client_host, request)
        endpoint, _ = await loop.create_datagram_endpoint(
            lambda: association, local_addr=(local_host, 0)
        )
        bound = endpoint.get_extra_info("sockname")
        session.reply(Reply.SUCCEEDED, (str(bound[0]), int(bound[1])))
        transport.write(session.data_to_send())
        log.debug("socks5 %s: udp associate on %s", self.peer, describe(bound))
        transport.resume_reading()  # (paused if it sent much meanwhile): for its end
        try:
            await asyncio.Future()  # until the client closes: connection_lost cancels
        finally:
            association.close()
            endpoint.close()
            log.debug("socks5 udp associate on %s closed, %d datagrams up, %d down",
                      describe(bound), association.up, association.down)  # fmt: skip


class _Opening:
    """A CONNECT begun at once (Socks5Client._begin), as its task would serve it: it ends as
    the connection stands (connection_made started the relay), as the opening fails (the
    reply says why), as the deadline passes (TTL expired), or cancelled as the client goes or
    the proxy stops (no reply). Then the client's request is over."""

    def __init__(self, client: Socks5Client, target: Described) -> None:
        self.client = client
        self.target = target
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._done = False
        self._cancelled = False  # no reply then
        self._timed_out = False

    def begun(self, transport: asyncio.Transport, timeout: float) -> None:
        self._transport = transport
        if not self._done:
            self._deadline = asyncio.get_running_loop().call_later(timeout, self._time_out)

    def done(self) -> bool:
        return self._done

    def cancel(self) -> None:
        self._cancelled = True
        self._abort()

    def _time_out(self) -> None:
        self._timed_out = True
        self._abort()

    def _abort(self) -> None:
        if not self._done and self._transport is not None:
            self._transport.abort()  # whose on_open, `ended`, comes at once

    def ended(self, error: OSError | None) -> None:
        """The opening's end (the transport's on_open): the request is over but for a relay."""
        self._done = True
        if self._deadline is not None:
            self._deadline.cancel()
        if error is None:
            return  # connection_made came first: the relay has the connection
        if not self._cancelled:
            why = (
                TimeoutError(errno.ETIMEDOUT, "no connection in time") if self._timed_out else error
            )
            self.client._not_opened(self.target, why)
        self.client._finish()


class _Upstream(asyncio.Protocol):
    """A CONNECT's connection to its destination until the relay takes it, which its
    connection_made starts."""

    def __init__(self, client: Socks5Client, target: Described) -> None:
        self.client = client
        self.target = target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client._opened(cast(asyncio.Transport, transport), self.target)


class _Association(asyncio.DatagramProtocol):
    """The client-facing UDP socket of a UDP ASSOCIATE and its Network endpoints (one per
    address family, made on first use)."""

    def __init__(self, network: Network, client_host: str, request: Request) -> None:
        self.network = network
        self.client_host = _normal(client_host)
        # The client may name the port it will send from; 0 (or an unspecified address) means
        # the first datagram from the client's host tells.
        self.client: tuple[str, int] | None = None
        if request.port and not _unspecified(request.host):
            self.client = (self.client_host, request.port)
        self.transport: asyncio.DatagramTransport | None = None
        self.outbound: dict[int, asyncio.Future[asyncio.DatagramTransport]] = {}
        self.up = self.down = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (Python 3.11's selector transport for datagrams does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        source = (_normal(addr[0]), addr[1])
        if source[0] != self.client_host or (self.client is not None and source != self.client):
            return  # not the client's: dropped (RFC 1928 section 7)
        datagram = parse_udp_datagram(data)
        if datagram is None:
            return  # a fragment or a malformed header: dropped
        self.client = source
        task = asyncio.ensure_future(self._send(datagram.host, datagram.port, datagram.payload))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, host: str, port: int, payload: bytes) -> None:
        try:
            address = host if is_address(host) else (await self.network.resolve(host))[0]
            version = ipaddress.ip_address(address).version
            if version not in self.outbound:
                self.outbound[version] = asyncio.ensure_future(self._open(version))
            outbound = await self.outbound[version]
        except (OSError, ValueError, IndexError) as error:
            log.debug("socks5 udp to %s: %s", describe((host, port)), describe_error(error))
            return
        outbound.sendto(payload, (address, port))
        self.up += 1

    async def _open(self, version: int) -> asyncio.DatagramTransport:
        local = ("0.0.0.0", 0) if version == 4 else ("::", 0)
        transport, _ = await self.network.create_datagram_endpoint(
            lambda: _Answers(self), local_addr=local
        )
        return transport

    def answer(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and self.client is not None:
            self.transport.sendto(udp_datagram(_normal(addr[0]), addr[1], data), self.client)
            self.down += 1

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for future in self.outbound.values():
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().close()
            else:
                future.cancel()


class _Answers(asyncio.DatagramProtocol):
    def __init__(self, association: _Association) -> None:
        self.association = association

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.association.answer(data, addr)


def _unspecified(host: str) -> bool:
    return is_address(host) and ipaddress.ip_address(host).is_unspecified


def _normal(host: str) -> str:
    """The address without an IPv4-mapped IPv6 form, as a dual-stack socket may report it."""
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host.split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(address)
    return host
