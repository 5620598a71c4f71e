"""Everything `wgpy proxy` serves at once: SOCKS5 and HTTP listeners and forwards over one
Network, started together and stopped together (listeners first, then the open connections get
CLOSE_GRACE seconds to end)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from wgpy.proxy.forwards import Target, TcpForward, UdpForward
from wgpy.proxy.http_listener import HttpHandler
from wgpy.proxy.listener import listen as listen_on
from wgpy.proxy.network import HostNetwork, Network, Server
from wgpy.proxy.relay import CLOSE_GRACE, Connections
from wgpy.proxy.socks5_listener import Socks5Listener
from wgpy.proxy.spec import Forward, Listen
from wgpy.proxy.upstream import CONNECT_TIMEOUT

log = logging.getLogger("wgpy.proxy")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class ProxySpec:
    socks5: list[Listen] = field(default_factory=list)
    http: list[Listen] = field(default_factory=list)
    local_forwards: list[Forward] = field(default_factory=list)  # -L
    remote_forwards: list[Forward] = field(default_factory=list)  # -R
    credentials: Mapping[str, str] | None = None
    connect_timeout: float = CONNECT_TIMEOUT


class Proxy:
    def __init__(self, network: Network, spec: ProxySpec, host: Network | None = None) -> None:
        self.network = network
        self.host = host or HostNetwork()  # this machine's side of the forwards
        self.spec = spec
        self.connections = Connections()
        self.servers: list[Server] = []

    async def start(self) -> None:
        """Starts every listener; raises OSError (with the listener named) if one cannot bind,
        after closing those already started."""
        spec, timeout = self.spec, self.spec.connect_timeout
        try:
            socks5 = Socks5Listener(self.network, spec.credentials, timeout, self.connections)
            for listen in spec.socks5:
                await self._serve("socks5", listen, socks5)
            http = HttpHandler(self.network, timeout)
            for listen in spec.http:
                await self._listen("http", listen, http)
            for forward in spec.local_forwards:
                await self._forward("-L", forward, self.host, self.network, listen_host=True)
            for forward in spec.remote_forwards:
                await self._forward("-R", forward, self.network, self.host, listen_host=False)
        except OSError:
            await self.stop(grace=0)
            raise

    async def _listen(self, what: str, listen: Listen, handler: Handler) -> None:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections.start(handler(reader, writer))

        def protocol() -> asyncio.Protocol:
            reader = asyncio.StreamReader()
            return asyncio.StreamReaderProtocol(reader, accepted)

        await self._serve(what, listen, protocol)

    async def _serve(
        self, what: str, listen: Listen, protocol: Callable[[], asyncio.Protocol]
    ) -> None:
        try:
            # (SOCKS5 and HTTP, whose clients speak first: their connections come with their
            # first bytes. The -L forwards listen through their Network: theirs may not.)
            server = await listen_on(protocol, listen.host, listen.port, client_speaks_first=True)
        except OSError as error:
            raise OSError(
                error.errno, f"{what} {listen.host}:{listen.port}: {error.strerror}"
            ) from None
        self.servers.append(server)
        log.info("%s listening on %s:%d", what, listen.host, listen.port)

    async def _forward(
        self, what: str, forward: Forward, on: Network, to: Network, listen_host: bool
    ) -> None:
        target = Target(to, forward.host, forward.port)
        host = forward.listen.host if listen_host else None
        port = forward.listen.port
        try:
            if forward.transport == "tcp":
                tcp = TcpForward(target, self.connections, self.spec.connect_timeout)
                server = await tcp.start(on, host, port)
            else:
                server = await UdpForward(target).start(on, host or "0.0.0.0", port)
        except OSError as error:
            raise OSError(
                error.errno, f"{what} {forward.transport}:{port}: {error.strerror}"
            ) from None
        self.servers.append(server)
        log.info("%s %s:%s:%d -> %s", what, forward.transport, host or "", port, target)

    async def stop(self, grace: float = CLOSE_GRACE) -> None:
        servers, self.servers = self.servers, []
        for server in servers:
            server.close()
        await self.connections.drain(grace)
        for server in servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()
