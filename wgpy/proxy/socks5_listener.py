"""`--socks5`: a SOCKS5 listener on this machine whose CONNECT and UDP ASSOCIATE go through a
Network. The negotiation is wgpy.proxy.socks5's; this module carries its decisions out."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Mapping
from typing import NamedTuple, cast

from wgpy.proxy.network import Network, describe, ip_address_of, is_address
from wgpy.proxy.relay import close_quietly, relay
from wgpy.proxy.socks5 import (
    Command,
    Rejected,
    Reply,
    Request,
    Socks5Connection,
    parse_udp_datagram,
    udp_datagram,
)
from wgpy.proxy.upstream import connect, describe_error, socks5_reply

log = logging.getLogger("wgpy.proxy")
NEGOTIATION_TIMEOUT = 30.0  # seconds a client has to send its greeting, login and request
READ_SIZE = 4096


class _Client(NamedTuple):
    """A client whose request awaits its reply."""

    session: Socks5Connection
    request: Request
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    peer: str  # for the log


class Socks5Handler:
    """Serves one client connection at a time per call; `credentials` as Socks5Connection's."""

    def __init__(
        self,
        network: Network,
        credentials: Mapping[str, str] | None,
        connect_timeout: float,
    ) -> None:
        self.network = network
        self.credentials = credentials
        self.connect_timeout = connect_timeout

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = describe(writer.get_extra_info("peername"))
        try:
            async with asyncio.timeout(NEGOTIATION_TIMEOUT):
                session, request = await self._negotiate(reader, writer)
        except (OSError, TimeoutError) as error:
            log.debug("socks5 %s: negotiation ended: %s", peer, describe_error(error))
            await close_quietly(writer)
            return
        if request is None:
            await close_quietly(writer)
            return
        client = _Client(session, request, (reader, writer), peer)
        if request.command == Command.UDP_ASSOCIATE:
            await self._associate(client)
        else:
            await self._connect(client)

    async def _negotiate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Socks5Connection, Request | None]:
        session = Socks5Connection(self.credentials)
        while True:
            data = await reader.read(READ_SIZE)
            events = session.receive(data) if data else [Rejected("closed before a request")]
            writer.write(session.data_to_send())
            await writer.drain()
            for event in events:
                if isinstance(event, Rejected):
                    peer = describe(writer.get_extra_info("peername"))
                    log.debug("socks5 %s: rejected: %s", peer, event.reason)
                    return session, None
                return session, event

    async def _connect(self, client: _Client) -> None:
        session, request, (reader, writer), peer = client
        target = describe((request.host, request.port))
        try:
            upstream = await connect(self.network, request.host, request.port, self.connect_timeout)
        except (OSError, ValueError) as error:
            log.debug("socks5 %s -> %s: %s", peer, target, describe_error(error))
            session.reply(socks5_reply(error))
            writer.write(session.data_to_send())
            await close_quietly(writer)
            return
        session.reply(Reply.SUCCEEDED, ip_address_of(upstream[1].get_extra_info("sockname")))
        writer.write(session.data_to_send())
        log.debug("socks5 %s -> %s: opened", peer, target)
        counted = await relay((reader, writer), upstream, session.trailing_data())
        log.debug("socks5 %s -> %s: closed, %d bytes up, %d down", peer, target, counted.up,
                  counted.down)  # fmt: skip

    async def _associate(self, client: _Client) -> None:
        """UDP ASSOCIATE: a UDP port beside the TCP listener for as long as the TCP connection
        lasts; datagrams from the client's address go through the Network, answers come back."""
        session, request, (reader, writer), peer = client
        loop = asyncio.get_running_loop()
        local_host = str(writer.get_extra_info("sockname")[0])
        client_host = str(writer.get_extra_info("peername")[0])
        association = _Association(self.network, client_host, request)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: association, local_addr=(local_host, 0)
        )
        bound = transport.get_extra_info("sockname")
        session.reply(Reply.SUCCEEDED, (str(bound[0]), int(bound[1])))
        writer.write(session.data_to_send())
        log.debug("socks5 %s: udp associate on %s", peer, describe(bound))
        try:
            while await reader.read(READ_SIZE):
                pass  # RFC 1928 section 7: the association ends with the TCP connection
        except OSError:
            pass
        finally:
            association.close()
            transport.close()
            await close_quietly(writer)
        log.debug("socks5 %s: udp associate closed, %d datagrams up, %d down", peer,
                  association.up, association.down)  # fmt: skip


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
