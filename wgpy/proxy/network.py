"""The network a proxy reaches its destinations through, and the host's own as one.

`Network` is the shape the listeners and forwards of wgpy.proxy use. `wgpy.tunnel.Tunnel` has it
over the user-space stack (a connection into the WireGuard tunnel); `HostNetwork` has it over the
host's sockets, for `--stack kernel` and for testing the proxy with no tunnel at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]
OnOpen = Callable[[OSError | None], None]  # how a connection's opening ended: None, it stands
DatagramFactory = Callable[[], asyncio.DatagramProtocol]
Socket = socket.socket  # (HostNetwork's method `socket` hides the module in its body)
PING_TIMEOUT = 5.0


class Server(Protocol):
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class Network(Protocol):
    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...

    async def create_connection(
        self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.Transport, asyncio.Protocol]: ...

    # A connection begun in the call where the network can (see wgpy.tunnel.Tunnel's), else
    # None, and create_connection's task makes it.
    def connect_soon(
        self, protocol: asyncio.Protocol, host: str, port: int, on_open: OnOpen
    ) -> asyncio.Transport | None: ...

    async def create_datagram_endpoint(
        self,
        protocol_factory: DatagramFactory,
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]: ...

    async def resolve(self, name: str) -> list[str]: ...

    async def start_server(
        self, client_connected_cb: ClientConnected, port: int, host: str | None = None
    ) -> Server: ...

    async def ping(self, address: str, timeout: float = PING_TIMEOUT) -> float: ...


class HostNetwork:
    """`Network` over the host's own sockets and resolver. A subclass that makes its sockets
    elsewhere (`socket`) has the same network there (wgpy.proxy.namespace_network)."""

    async def socket(self, family: int, kind: int, protocol: int = 0) -> socket.socket:
        """A new non-blocking socket of this network."""
        sock = socket.socket(family, kind, protocol)
        sock.setblocking(False)
        return sock

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """To each of the name's addresses in turn; the first failure is raised if all fail, so
        its errno (ECONNREFUSED...) tells the proxy's client what happened."""
        return await asyncio.open_connection(sock=await self._connected(host, port))

    async def create_connection(
        self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.Transport, asyncio.Protocol]:
        """open_connection's connection, for a protocol of the caller's (as asyncio's)."""
        loop = asyncio.get_running_loop()
        sock = await self._connected(host, port)
        return await loop.create_connection(protocol_factory, sock=sock)

    def connect_soon(
        self, protocol: asyncio.Protocol, host: str, port: int, on_open: OnOpen
    ) -> asyncio.Transport | None:
        """None: a socket's connect takes the loop's turns, as create_connection's."""
        return None

    async def _connected(self, host: str, port: int) -> Socket:
        loop = asyncio.get_running_loop()
        first_error: OSError | None = None
        for address in await self.resolve(host):
            sock = await self.socket(family_of(address), socket.SOCK_STREAM)
            try:
                await loop.sock_connect(sock, (address, port))
            except OSError as error:
                sock.close()
                first_error = first_error or error
                continue
            return sock
        raise first_error or OSError(f"{host}: no address")

    async def create_datagram_endpoint(
        self,
        protocol_factory: DatagramFactory,
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        """Bound to `local_addr` and connected to `remote_addr` where given (names resolved)."""
        loop = asyncio.get_running_loop()
        local_addr = local_addr and ((await self.resolve(local_addr[0]))[0], local_addr[1])
        remote_addr = remote_addr and ((await self.resolve(remote_addr[0]))[0], remote_addr[1])
        address = remote_addr or local_addr
        family = family_of(address[0]) if address is not None else socket.AF_INET
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
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def start_server(
        self, client_connected_cb: ClientConnected, port: int, host: str | None = None
    ) -> Server:
        return await asyncio.start_server(client_connected_cb, host, port)

    async def ping(self, address: str, timeout: float = PING_TIMEOUT) -> float:
        """One ICMP echo over an unprivileged ping socket (net.ipv4.ping_group_range must hold
        the caller's group); the round trip in seconds. Raises TimeoutError, OSError."""
        loop = asyncio.get_running_loop()
        version = ipaddress.ip_address(address).version
        family, protocol, request_type = (
            (socket.AF_INET, socket.IPPROTO_ICMP, 8)
            if version == 4
            else (socket.AF_INET6, socket.IPPROTO_ICMPV6, 128)
        )
        with await self.socket(family, socket.SOCK_DGRAM, protocol) as sock:
            payload = os.urandom(16)
            # The kernel sets the identifier and, for ping sockets, the checksum.
            await loop.sock_sendto(sock, struct.pack("!BBHHH", request_type, 0, 0, 0, 1) + payload,
                                   (address, 0))  # fmt: skip
            started = loop.time()
            async with asyncio.timeout(timeout):
                while not (await loop.sock_recv(sock, 2048)).endswith(payload):
                    pass
            return loop.time() - started


@functools.lru_cache(maxsize=64)  # asked of the same few addresses for every connection
def is_address(host: str) -> bool:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    return False


def family_of(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def describe(address: Any) -> str:
    """host:port, with brackets around an IPv6 host; what else a transport reports, as text."""
    if not isinstance(address, tuple) or len(address) < 2:
        return str(address) or "?"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Described:
    """`describe(address)` made only if a log record is: a connect's addresses go to debug
    records, which are mostly off, and describing them is ~2 us each (issue 17)."""

    __slots__ = ("address",)

    def __init__(self, address: Any) -> None:
        self.address = address

    def __str__(self) -> str:
        return describe(self.address)


def ip_address_of(address: Any) -> tuple[str, int]:
    """(IP, port) of a transport's address, or the unspecified one when it has none (a SOCKS5
    reply must carry some address)."""
    if isinstance(address, tuple) and len(address) >= 2 and is_address(str(address[0])):
        return str(address[0]), int(address[1])
    return "0.0.0.0", 0
