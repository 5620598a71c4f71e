"""Names resolved by the sans-IO stub (wgpy.netstack.dns) over any Network's datagrams: what
`wgpy.tunnel.Tunnel.resolve` runs with the config's `DNS =` servers."""

from __future__ import annotations

import asyncio
import functools
import random

from wgpy.errors import WgpyError
from wgpy.netstack.dns import FIRST_TIMEOUT, Failed, Server, StubResolver
from wgpy.proxy.network import Network


class ResolutionFailed(OSError, WgpyError):
    """No server answered for a name, or every one refused."""


class _Answers(asyncio.DatagramProtocol):
    def __init__(self, server: Server, arrived: asyncio.Queue[tuple[bytes, Server]]) -> None:
        self.server, self.arrived = server, arrived

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.arrived.put_nowait((data, self.server))


async def resolve(
    network: Network,
    servers: list[str],
    name: str,
    rng: random.Random | None = None,
    first_timeout: float = FIRST_TIMEOUT,
) -> list[str]:
    """`name`'s IPv4 then IPv6 addresses, asked of `servers` through `network`. Raises
    ResolutionFailed when no server answers, ValueError for a name DNS cannot carry."""
    loop = asyncio.get_running_loop()
    resolver = StubResolver(servers, rng or random.SystemRandom(), first_timeout=first_timeout)
    lookup = resolver.query(name, loop.time())
    arrived: asyncio.Queue[tuple[bytes, Server]] = asyncio.Queue()
    transports: dict[Server, asyncio.DatagramTransport] = {}
    try:
        for server in resolver.servers:
            transport, _ = await network.create_datagram_endpoint(
                functools.partial(_Answers, server, arrived), remote_addr=server
            )
            transports[server] = transport
        while True:
            for data, server in resolver.datagrams_to_send():
                transports[server].sendto(data)
            for event in resolver.events():
                if event.lookup == lookup:
                    if isinstance(event, Failed):
                        raise ResolutionFailed(f"{name}: {event.reason}")
                    return event.addresses
            await _next(resolver, arrived, loop)
    finally:
        for transport in transports.values():
            transport.close()


async def _next(
    resolver: StubResolver,
    arrived: asyncio.Queue[tuple[bytes, Server]],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Waits for a datagram or the resolver's deadline, and hands either to it."""
    deadline = resolver.next_deadline()
    timeout = None if deadline is None else max(0.0, deadline - loop.time())
    try:
        data, server = await asyncio.wait_for(arrived.get(), timeout)
    except TimeoutError:
        resolver.handle_timer(loop.time())
    else:
        resolver.receive(data, server, loop.time())
