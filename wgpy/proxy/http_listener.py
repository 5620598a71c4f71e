"""`--http`: an HTTP proxy listener on this machine whose CONNECT tunnels and forwarded requests
go through a Network. The protocol is wgpy.proxy.http's; this module carries its decisions out."""

from __future__ import annotations

import asyncio
import logging

from wgpy.proxy.http import Body, Event, Forward, HttpProxyConnection, Rejected, Tunnel
from wgpy.proxy.network import Network, describe
from wgpy.proxy.relay import Counted, close_quietly, relay
from wgpy.proxy.upstream import connect, describe_error, http_status

log = logging.getLogger("wgpy.proxy")
REQUEST_TIMEOUT = 30.0  # seconds a client has to send its request's head
READ_SIZE = 64 * 1024

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpHandler:
    def __init__(self, network: Network, connect_timeout: float) -> None:
        self.network = network
        self.connect_timeout = connect_timeout

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = describe(writer.get_extra_info("peername"))
        session = HttpProxyConnection()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                events = await _first_events(session, reader)
        except (OSError, TimeoutError) as error:
            log.debug("http %s: request ended: %s", peer, describe_error(error))
            await close_quietly(writer)
            return
        decision = events[0]
        if isinstance(decision, Rejected):
            log.debug("http %s: rejected (%d): %s", peer, decision.status, decision.reason)
            writer.write(session.data_to_send())
            await close_quietly(writer)
            return
        assert isinstance(decision, Tunnel | Forward)
        target = describe((decision.host, decision.port))
        try:
            upstream = await connect(
                self.network, decision.host, decision.port, self.connect_timeout
            )
        except (OSError, ValueError) as error:
            log.debug("http %s -> %s: %s", peer, target, describe_error(error))
            writer.write(session.failed(http_status(error), describe_error(error)))
            await close_quietly(writer)
            return
        log.debug("http %s -> %s: opened", peer, target)
        if isinstance(decision, Tunnel):
            writer.write(session.established())
            counted = await relay((reader, writer), upstream, session.trailing_data())
        else:
            counted = await _forward(session, events, (reader, writer), upstream)
        log.debug("http %s -> %s: closed, %d bytes up, %d down", peer, target, counted.up,
                  counted.down)  # fmt: skip


async def _first_events(session: HttpProxyConnection, reader: asyncio.StreamReader) -> list[Event]:
    """The events up to the request's decision (and the body that came with it)."""
    while True:
        data = await reader.read(READ_SIZE)
        events = session.receive(data)
        if events:
            return events


async def _forward(
    session: HttpProxyConnection, events: list[Event], client: Stream, upstream: Stream
) -> Counted:
    """The request's head and body to the origin, and meanwhile the origin's response to the
    client until the origin closes (the head asked it to: one request per connection)."""
    counted = Counted()
    upload = asyncio.ensure_future(_upload(session, events, client[0], upstream[1], counted))
    try:
        while data := await upstream[0].read(READ_SIZE):
            client[1].write(data)
            await client[1].drain()
            counted.down += len(data)
    except OSError as error:
        log.debug("http: the origin's response ended: %s", describe_error(error))
    finally:
        upload.cancel()
        await asyncio.gather(upload, return_exceptions=True)
        await close_quietly(client[1], upstream[1])
    return counted


async def _upload(
    session: HttpProxyConnection,
    events: list[Event],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    counted: Counted,
) -> None:
    while True:
        for event in events:
            if isinstance(event, Forward):
                writer.write(event.head)
            elif isinstance(event, Body):
                writer.write(event.data)
                counted.up += len(event.data)
                if event.end:
                    return await _end_with(reader, writer)
            else:  # the client closed or broke its framing mid-body: the request is void
                writer.transport.abort()
                return
        await writer.drain()
        events = session.receive(await reader.read(READ_SIZE))


async def _end_with(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Once the request is sent, whatever else the client sends is ignored (one request per
    connection), and the end of its input ends the origin's."""
    await writer.drain()
    while await reader.read(READ_SIZE):
        pass
    if writer.can_write_eof():
        writer.write_eof()
