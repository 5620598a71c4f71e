"""`Network` over Linux's stack in a namespace of wgpy run's (`--stack kernel`, and `wgpy run
-p`): every socket is made inside by the namespace's socket broker (wgpy.io.socket_broker) and
used from here, so the listeners stay in the caller's namespace and the connections go out
through the tunnel. Names are asked of the config's DNS servers, through the tunnel too.
"""

from __future__ import annotations

import asyncio
import socket

from wgpy.io.socket_broker import Broker
from wgpy.proxy.network import ClientConnected, HostNetwork, Server, family_of, is_address
from wgpy.proxy.resolve import ResolutionFailed, resolve


class NamespaceNetwork(HostNetwork):
    def __init__(self, broker: Broker, dns_servers: list[str]) -> None:
        self._broker = broker
        self._dns_servers = dns_servers

    async def socket(self, family: int, kind: int, protocol: int = 0) -> socket.socket:
        """A new non-blocking socket made inside the namespace."""
        loop = asyncio.get_running_loop()
        (sock,) = await loop.run_in_executor(
            None, lambda: self._broker.request(socket=[family, kind, protocol])
        )
        sock.setblocking(False)
        return sock

    async def resolve(self, name: str) -> list[str]:
        if is_address(name):
            return [name]
        if not self._dns_servers:
            raise ResolutionFailed(f"{name}: the config has no DNS = to ask")
        return await resolve(self, self._dns_servers, name)

    async def start_server(
        self, client_connected_cb: ClientConnected, port: int, host: str | None = None
    ) -> Server:
        """Listening inside, on `host` (every IPv4 address by default)."""
        host = host or "0.0.0.0"
        sock = await self.socket(family_of(host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.start_server(client_connected_cb, sock=sock)
