"""`Network` over Linux's stack in a namespace of wgpy run's (`--stack kernel`, and `wgpy run
-p`): every socket is made inside by the namespace's socket broker and used from here, so the
listeners stay in the caller's namespace and the connections go out through the tunnel. Names
are asked of the config's DNS servers, through the tunnel too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket

from wgpy.io.socket_broker import Broker
from wgpy.proxy.network import (
    PING_TIMEOUT,
    ClientConnected,
    DatagramFactory,
    HostNetwork,
    Server,
    is_address,
)
from wgpy.proxy.resolve import ResolutionFailed, resolve


class NamespaceNetwork:
    def __init__(self, broker: Broker, dns_servers: list[str]) -> None:
        self._broker = broker
        self._dns_servers = dns_servers

    async def socket(self, family: int, kind: int, protocol: int = 0) -> socket.socket:
        """A non-blocking socket made inside the namespace."""
        loop = asyncio.get_running_loop()
        (sock,) = await loop.run_in_executor(
            None, lambda: self._broker.request(socket=[family, kind, protocol])
        )
        sock.setblocking(False)
        return sock

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """To each of the name's addresses in turn; the first failure is raised if all fail."""
        loop = asyncio.get_running_loop()
        first_error: OSError | None = None
        for address in await self.resolve(host):
            sock = await self.socket(_family_of(address), socket.SOCK_STREAM)
            try:
                await loop.sock_connect(sock, (address, port))
            except OSError as error:
                sock.close()
                first_error = first_error or error
                continue
            return await asyncio.open_connection(sock=sock)
        raise first_error or OSError(f"{host}: no address")

    async def create_datagram_endpoint(
        self,
        protocol_factory: DatagramFactory,
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        loop = asyncio.get_running_loop()
        if remote_addr is not None and not is_address(remote_addr[0]):
            remote_addr = ((await self.resolve(remote_addr[0]))[0], remote_addr[1])
        address = remote_addr or local_addr
        family = _family_of(address[0]) if address is not None else socket.AF_INET
        sock = await self.socket(family, socket.SOCK_DGRAM)
        try:
            if local_addr is not None:
                sock.bind(local_addr)
            if remote_addr is not None:
                await loop.sock_connect(sock, remote_addr)
        except BaseException:
            sock.close()
            raise
        return await loop.create_datagram_endpoint(protocol_factory, sock=sock)

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
        sock = await self.socket(_family_of(host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.start_server(client_connected_cb, sock=sock)

    async def ping(self, address: str, timeout: float = PING_TIMEOUT) -> float:
        # HostNetwork's ping over a ping socket made inside (ping_group_range is open there).
        version = ipaddress.ip_address(address).version
        family, protocol = (
            (socket.AF_INET, socket.IPPROTO_ICMP)
            if version == 4
            else (socket.AF_INET6, socket.IPPROTO_ICMPV6)
        )
        sock = await self.socket(family, socket.SOCK_DGRAM, protocol)
        with contextlib.closing(sock):
            return await HostNetwork().ping(address, timeout, sock=sock)


def _family_of(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
