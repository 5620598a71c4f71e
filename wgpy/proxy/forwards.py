"""Port forwards: a listener on one Network whose connections (TCP) or datagrams (UDP) go to a
fixed host and port through another. `-L` listens on this machine and connects through the
tunnel; `-R` listens on the tunnel's address and connects from this machine.

A UDP forward keeps a flow per source address: its own endpoint towards the target, so that the
target's answers find their way back; a flow idle for UDP_IDLE seconds is closed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import cast

from wgpy.proxy.network import Network, Server, describe
from wgpy.proxy.relay import Connections, close_quietly, relay
from wgpy.proxy.upstream import connect, describe_error

log = logging.getLogger("wgpy.proxy")
UDP_IDLE = 60.0  # seconds, as a stateful firewall keeps a UDP flow without replies
UDP_FLOWS = 1024  # at most, per forward: the oldest idle one gives way


@dataclass(frozen=True, slots=True)
class Target:
    network: Network
    host: str
    port: int

    def __str__(self) -> str:
        return describe((self.host, self.port))


class TcpForward:
    """Each connection accepted goes to `target`, bytes both ways."""

    def __init__(self, target: Target, connections: Connections, connect_timeout: float) -> None:
        self.target = target
        self.connections = connections
        self.connect_timeout = connect_timeout

    async def start(self, network: Network, host: str | None, port: int) -> Server:
        return await network.start_server(self._accepted, port, host)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.start(self._serve(reader, writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer, target = describe(writer.get_extra_info("peername")), self.target
        try:
            upstream = await connect(target.network, target.host, target.port, self.connect_timeout)
        except (OSError, ValueError) as error:
            log.debug("forward %s -> %s: %s", peer, target, describe_error(error))
            await close_quietly(writer)
            return
        log.debug("forward %s -> %s: opened", peer, target)
        counted = await relay((reader, writer), upstream)
        log.debug("forward %s -> %s: closed, %d bytes up, %d down", peer, target, counted.up,
                  counted.down)  # fmt: skip


@dataclass(slots=True)
class _Flow:
    transport: asyncio.Future[asyncio.DatagramTransport]
    last: float
    up: int = 0
    down: int = 0
    queued: list[bytes] = field(default_factory=list)


class UdpForward(asyncio.DatagramProtocol):
    """Each source's datagrams go to `target` from an endpoint of that source's own."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[str, int], _Flow] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, network: Network, host: str, port: int) -> Server:
        await network.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (Python 3.11's selector transport for datagrams does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._sweeper = asyncio.get_running_loop().call_later(UDP_IDLE, self._sweep)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        source = (addr[0], addr[1])
        loop = asyncio.get_running_loop()
        flow = self.flows.get(source)
        if flow is None:
            if len(self.flows) >= UDP_FLOWS:
                self._close_flow(min(self.flows, key=lambda key: self.flows[key].last))
            flow = _Flow(asyncio.ensure_future(self._open(source)), loop.time())
            flow.transport.add_done_callback(lambda _: self._flush(source))
            self.flows[source] = flow
            log.debug("forward udp %s -> %s: opened", describe(source), self.target)
        flow.last = loop.time()
        flow.up += 1
        if flow.transport.done() and flow.transport.exception() is None:
            flow.transport.result().sendto(data)
        else:
            flow.queued.append(data)

    async def _open(self, source: tuple[str, int]) -> asyncio.DatagramTransport:
        target = self.target
        addresses = await target.network.resolve(target.host)
        transport, _ = await target.network.create_datagram_endpoint(
            lambda: _Back(self, source), remote_addr=(addresses[0], target.port)
        )
        return transport

    def _flush(self, source: tuple[str, int]) -> None:
        flow = self.flows.get(source)
        if flow is None or flow.transport.cancelled():
            return
        if flow.transport.exception() is not None:
            error = flow.transport.exception()
            log.debug("forward udp %s -> %s: %s", describe(source), self.target, error)
            del self.flows[source]
            return
        for data in flow.queued:
            flow.transport.result().sendto(data)
        flow.queued.clear()

    def answer(self, source: tuple[str, int], data: bytes) -> None:
        flow = self.flows.get(source)
        if flow is not None and self.transport is not None:
            flow.down += 1
            flow.last = asyncio.get_running_loop().time()
            self.transport.sendto(data, source)

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        for source in [key for key, flow in self.flows.items() if now - flow.last >= UDP_IDLE]:
            self._close_flow(source)
        self._sweeper = asyncio.get_running_loop().call_later(UDP_IDLE / 4, self._sweep)

    def _close_flow(self, source: tuple[str, int]) -> None:
        flow = self.flows.pop(source)
        if flow.transport.done() and flow.transport.exception() is None:
            flow.transport.result().close()
        else:
            flow.transport.cancel()
        log.debug("forward udp %s -> %s: closed, %d datagrams up, %d down", describe(source),
                  self.target, flow.up, flow.down)  # fmt: skip

    # As a Server: close() and wait_closed().
    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for source in list(self.flows):
            self._close_flow(source)
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        await asyncio.sleep(0)


class _Back(asyncio.DatagramProtocol):
    def __init__(self, forward: UdpForward, source: tuple[str, int]) -> None:
        self.forward, self.source = forward, source

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.forward.answer(self.source, data)
