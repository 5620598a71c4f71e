"""WireGuard from Python with no root and no TUN: the tunnel's network as asyncio objects.

    async with wgpy.tunnel.open("wg0.conf") as t:
        reader, writer = await t.open_connection("intranet.example", 80)
        rtt = await t.ping("10.0.0.1")

The configuration is a wg-quick file (a path, or its text): `Address` gives the user-space stack
its tunnel addresses, `DNS` the resolvers that names are looked up on through the tunnel, `MTU`
its MTU, and the [Peer] sections are as usual. wg-quick's keys that configure a host interface
(Table, the hooks, SaveConfig) do not apply here, and each present gives a NotAppliedWarning.

The tunnel runs the sans-IO device over a UDP socket on the running loop, with the user-space
stack (wgpy.netstack) where a TUN would be; see wgpy.io.rootless. Everything happens on the
loop's thread: a Tunnel is used from the loop that opened it.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from wgpy import config as wgconfig
from wgpy import uapi
from wgpy.client import socket_path
from wgpy.configure import apply_update, device_stats, format_device, format_peers
from wgpy.core.constants import DEFAULT_MTU
from wgpy.core.device import Device
from wgpy.errors import ConfigError, UapiError, WgpyError
from wgpy.io import accel
from wgpy.io.capture_server import CaptureHub
from wgpy.io.device_lock import DeviceLock
from wgpy.io.pooled_random import PooledSystemRandom
from wgpy.io.rootless import RootlessDataPath, serve_configuration, stack_splitter
from wgpy.io.stack_streams import StackStreamTransport
from wgpy.io.stack_transports import StackDatagramTransport, TunnelResolver, normalized
from wgpy.netstack.dns import StubResolver
from wgpy.netstack.ip import literal
from wgpy.netstack.stack import ACCEPT_BACKLOG, Listener, Stack
from wgpy.resolver import resolve as resolve_endpoint

__all__ = ["NotAppliedWarning", "Tunnel", "open"]

P = TypeVar("P", bound=asyncio.BaseProtocol)
ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]

STREAM_LIMIT = 1 << 16  # asyncio's default StreamReader limit
PING_PAYLOAD = b"wgpy tunnel ping"


class NotAppliedWarning(UserWarning, WgpyError):
    """A wg-quick key that configures a host interface, which a tunnel without one ignores."""


def open(config: str | os.PathLike[str], *, name: str | None = None) -> Tunnel:
    """A tunnel for `config`, a wg-quick file's path or its text; `async with` starts it. With
    a `name`, its configuration socket is served as an interface's of that name is (wgpy.client
    .socket_path), so `wg show NAME` and `wgpy show NAME` work on it.

    Errors in the file raise ConfigError (file, line, key) here, before anything starts."""
    if isinstance(config, str) and ("\n" in config or config.lstrip().startswith("[")):
        parsed, file = wgconfig.parse(config), "<string>"
    else:
        parsed, file = wgconfig.load(config), os.fspath(config)
    return Tunnel(parsed, file=file, name=name)


class Tunnel:
    """The tunnel's network: the `Network` shape wgpy.proxy runs on."""

    def __init__(
        self, config: wgconfig.Config, *, file: str = "<string>", name: str | None = None
    ) -> None:
        interface = config.interface
        wgconfig.require_private_key(config, file)
        if not interface.address:
            raise ConfigError("missing in [Interface]: the stack needs its tunnel address",
                              file=file, key="Address")  # fmt: skip
        _warn_not_applied(interface, file)
        self.config = config
        self.file = file
        self.dns_servers = [str(server) for server in interface.dns]
        self.mtu = interface.mtu or DEFAULT_MTU
        # The system's randomness (a random.Random in form): TCP's initial sequence numbers and
        # ephemeral ports must not be predictable from earlier ones (RFC 6528).
        self._rng = PooledSystemRandom()
        self._ping_identifier = self._rng.getrandbits(16)
        self._ping_sequence = 0
        self.name = name
        self._path: RootlessDataPath | None = None
        self._configuration: asyncio.AbstractServer | None = None
        self._capture: CaptureHub | None = None
        self._dns: TunnelResolver | None = None
        self._dns_transport: asyncio.DatagramTransport | None = None

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # As the daemon's (wgpy.io.interface): a batch sealed and opened in one compiled call,
        # a lone packet over libsodium.
        device = Device(
            os.urandom,
            mtu=self.mtu,
            batch_cipher=accel.batch_cipher(),
            lone_cipher=accel.lone_cipher(),
        )
        # Endpoint names resolve on the host (as wg does), blocking: not on the loop's thread.
        update = await loop.run_in_executor(
            None, lambda: wgconfig.to_device_update(self.config, resolve_endpoint, file=self.file)
        )
        addresses = [str(address) for address in self.config.interface.address]
        stack = Stack(
            addresses, self.mtu, self._rng, authenticated=True, split=stack_splitter()
        )  # authenticated by the device
        path = RootlessDataPath(device, stack, loop)
        path.bind(self.config.interface.listen_port or 0, self.config.interface.fwmark or 0)
        apply_update(device, update, loop.time())
        self._path = path
        path.run(())  # arms the timers the configuration set (a persistent keepalive)
        if self.name is not None:
            try:
                self._capture = CaptureHub(self.name, device, DeviceLock())
                self._configuration = await serve_configuration(
                    self.name, self.handle_request, self._capture
                )
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        if self._dns_transport is not None:
            self._dns_transport.close()
            self._dns = self._dns_transport = None
        if self._configuration is not None:
            self._configuration.close()
            self._configuration = None
            if self.name is not None:
                socket_path(self.name).unlink(missing_ok=True)
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        if self._path is not None:
            self._path.close()
            self._path = None

    async def __aenter__(self) -> Tunnel:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def path(self) -> RootlessDataPath:
        if self._path is None:
            raise RuntimeError("the tunnel is not open: use `async with wgpy.tunnel.open(...)`")
        return self._path

    @property
    def device(self) -> Device:
        return self.path.device

    @property
    def stack(self) -> Stack:
        return self.path.stack

    @property
    def listen_port(self) -> int:
        """The UDP port the tunnel's datagrams arrive on."""
        return self.path.listen_port

    def _routed(self, address: str) -> str:
        """`address` in the stack's form, once a peer's AllowedIPs are found to hold it: else
        ENETUNREACH at once, as a socket says for no route, not a silence that times out."""
        packed, text = literal(address)
        if self.path.device.allowed_ips.lookup(packed) is None:
            raise OSError(errno.ENETUNREACH, f"{address}: no peer's AllowedIPs hold it")
        return text

    # -- ICMP ------------------------------------------------------------------------------

    async def ping(self, address: str, timeout: float = 5.0) -> float:
        """Send an ICMP (ICMPv6) echo request to `address` through the tunnel and return the
        round-trip time in seconds; TimeoutError when no reply comes within `timeout`."""
        path = self.path
        host = self._routed(address)
        self._ping_sequence = (self._ping_sequence + 1) & 0xFFFF
        key = (host, self._ping_identifier, self._ping_sequence)
        waiter = path.expect_echo(key)
        started = path.loop.time()
        path.stack.ping(host, self._ping_identifier, self._ping_sequence, PING_PAYLOAD)
        path.wake()
        try:
            await asyncio.wait_for(waiter, timeout)
        finally:
            path.forget_echo(key)
        return path.loop.time() - started

    # -- TCP -------------------------------------------------------------------------------

    async def open_connection(
        self, host: str, port: int, *, limit: int = STREAM_LIMIT
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """asyncio.open_connection through the tunnel: `host` a name (resolved through the
        tunnel) or an address. Each address is tried in turn; the last one's error is raised
        (ConnectionRefusedError, TimeoutError, ...)."""
        loop = self.path.loop
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await self.create_connection(lambda: protocol, host, port)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def create_connection(
        self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.Transport, asyncio.Protocol]:
        """loop.create_connection through the tunnel, as open_connection connects: the
        protocol's connection_made comes as the handshake ends, in the turn that ends it."""
        error: OSError | None = None
        for address in await self.resolve(host):
            protocol = protocol_factory()
            try:
                return await self._connect(address, port, protocol), protocol
            except OSError as failed:
                error = failed
        assert error is not None
        raise error

    def connect_soon(
        self,
        protocol: asyncio.Protocol,
        host: str,
        port: int,
        on_open: Callable[[OSError | None], None],
    ) -> asyncio.Transport | None:
        """A connection to `host` begun in this call, its SYN sent before it returns, when
        `host` is an address (None for a name: create_connection resolves it). The protocol's
        connection_made comes as the handshake ends; `on_open` hears of that, or of the error
        that ended the opening (aborting the transport meanwhile ends it). Raises OSError
        (ENETUNREACH) for an address no peer's AllowedIPs hold."""
        try:
            address = self._routed(host)
        except ValueError:
            return None
        path = self.path
        conn = path.stack.tcp_connect(address, port, path.loop.time())
        transport = StackStreamTransport(path, conn, protocol, on_open)
        path.run(())  # the SYN now: a wake would wait a turn of the loop, the handshake's time
        return transport

    async def _connect(
        self, address: str, port: int, protocol: asyncio.Protocol
    ) -> asyncio.Transport:
        opened: asyncio.Future[None] = self.path.loop.create_future()

        def on_open(error: OSError | None) -> None:
            if not opened.done():
                opened.set_result(None) if error is None else opened.set_exception(error)

        transport = self.connect_soon(protocol, address, port, on_open)
        assert transport is not None  # (an address: resolve gave it)
        try:
            await opened
        except asyncio.CancelledError:
            transport.abort()
            raise
        return transport

    async def start_server(
        self,
        client_connected_cb: ClientConnected,
        port: int,
        host: str | None = None,
        *,
        limit: int = STREAM_LIMIT,
        backlog: int = ACCEPT_BACKLOG,
    ) -> TunnelServer:
        """asyncio.start_server on `port` of the tunnel addresses: `client_connected_cb(reader,
        writer)` for each connection (a coroutine function runs as a task)."""
        path = self.path
        if host is not None and ipaddress.ip_address(host).packed not in path.stack.addresses:
            raise OSError(errno.EADDRNOTAVAIL, f"{host} is not an address of the tunnel")
        listener = path.stack.tcp_listen(port, accept_backlog=backlog)
        server = TunnelServer(path, listener)

        def on_listener() -> None:
            while (conn := listener.accept()) is not None:
                reader = asyncio.StreamReader(limit=limit, loop=path.loop)
                protocol = asyncio.StreamReaderProtocol(reader, client_connected_cb, path.loop)
                StackStreamTransport(path, conn, protocol).accepted()

        path.watch(listener, on_listener)
        return server

    # -- UDP -------------------------------------------------------------------------------

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], P],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
    ) -> tuple[asyncio.DatagramTransport, P]:
        """asyncio's create_datagram_endpoint inside the tunnel: `local_addr`'s port on the
        tunnel addresses (0 or None: a free one), `remote_addr` a host name or address and
        port to send to by default and hear from alone."""
        remote = None
        if remote_addr is not None:
            (host, *_) = await self.resolve(remote_addr[0])
            remote = normalized((self._routed(host), remote_addr[1]))
        path = self.path
        udp = path.stack.udp_bind(local_addr[1] if local_addr else 0)
        protocol = protocol_factory()
        if not isinstance(protocol, asyncio.DatagramProtocol):
            path.stack.udp_close(udp)
            raise TypeError("the protocol factory must make an asyncio.DatagramProtocol")
        transport = StackDatagramTransport(path, udp, protocol, remote)
        protocol.connection_made(transport)
        return transport, protocol

    # -- DNS -------------------------------------------------------------------------------

    async def resolve(self, name: str) -> list[str]:
        """The addresses of `name` (A, then AAAA), asked of the config's DNS servers through
        the tunnel; an IP literal is itself. socket.gaierror when the name has no address, or
        no server answered."""
        try:
            return [literal(name)[1]]
        except ValueError:
            pass
        if not self.dns_servers:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: the configuration has no DNS =")
        if self._dns is None:
            resolver = StubResolver(self.dns_servers, self._rng)
            self._dns_transport, self._dns = await self.create_datagram_endpoint(
                lambda: TunnelResolver(resolver)
            )
        try:
            addresses = await self._dns.lookup(name)
        except ValueError as error:  # not a name DNS can carry
            raise socket.gaierror(socket.EAI_NONAME, str(error)) from None
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: no address in the tunnel's DNS")
        return addresses

    # -- the configuration socket's hook ---------------------------------------------------

    def handle_request(self, request: uapi.Request) -> Iterable[str]:
        """The reply to a configuration-socket request (wgpy.io.uapi_server.Handler), so that
        `wg show` and `wgpy show` work on a tunnel served under a name."""
        path = self.path
        if request.operation == "get":
            return self._get(path)
        if request.operation == "stats":
            return [uapi.format_stats(device_stats(path.device, path.loop.time()))]
        try:
            if request.error is not None:
                raise request.error
            assert request.update is not None
            self._set(path, request.update)
        except UapiError as error:
            return [uapi.format_errno(error.errno)]
        return [uapi.format_errno(0)]

    @staticmethod
    def _get(path: RootlessDataPath) -> Iterator[str]:
        yield format_device(path.device, path.listen_port, path.fwmark)
        yield format_peers(path.device, list(path.device.peers.values()))
        yield uapi.format_errno(0)

    @staticmethod
    def _set(path: RootlessDataPath, update: uapi.DeviceUpdate) -> None:
        port = path.listen_port if update.listen_port is None else update.listen_port
        fwmark = path.fwmark if update.fwmark is None else update.fwmark
        if (port, fwmark) != (path.listen_port, path.fwmark):
            try:
                path.bind(port, fwmark)
            except OSError as error:
                raise UapiError(error.errno or errno.EIO, f"listen_port={port}: {error}") from None
        apply_update(path.device, update, path.loop.time())
        path.run(())


class TunnelServer:
    """What start_server returns: close() stops accepting; wait_closed() returns at once."""

    def __init__(self, path: RootlessDataPath, listener: Listener) -> None:
        self._path = path
        self._listener = listener

    @property
    def port(self) -> int:
        return self._listener.port

    def is_serving(self) -> bool:
        return not self._listener.closed

    def close(self) -> None:
        if not self._listener.closed:
            self._path.unwatch(self._listener)
            self._path.stack.tcp_unlisten(self._listener)
            self._path.wake()

    async def wait_closed(self) -> None:
        return None

    async def __aenter__(self) -> TunnelServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def _warn_not_applied(interface: wgconfig.InterfaceConfig, file: str) -> None:
    present = [
        key
        for key, value in (
            ("Table", interface.table),
            ("PreUp", interface.pre_up),
            ("PostUp", interface.post_up),
            ("PreDown", interface.pre_down),
            ("PostDown", interface.post_down),
            ("SaveConfig", interface.save_config),
        )
        if value
    ]
    for key in present:
        warnings.warn(
            f"{file}: {key}: configures a host interface; a tunnel without one ignores it",
            NotAppliedWarning,
            stacklevel=3,
        )
