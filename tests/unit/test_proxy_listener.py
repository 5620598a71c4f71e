"""wgpy.proxy.listener: the proxy's TCP listener, a transport made in the turn of each accept."""

from __future__ import annotations

import asyncio
import socket

import pytest

from wgpy.proxy.listener import listen


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def port_of(listener_sockets: list[socket.socket]) -> int:
    port: int = listener_sockets[0].getsockname()[1]
    return port


def test_each_connection_gets_its_protocol_and_the_peer_address() -> None:
    async def main() -> None:
        peers: list[object] = []

        class Recording(Echo):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                peers.append(transport.get_extra_info("peername"))

        listener = await listen(Recording, "127.0.0.1", 0)
        port = port_of(listener.sockets)
        # Several connections waiting at once: one accept per readable turn takes them all.
        streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        for index, (reader, writer) in enumerate(streams):
            writer.write(b"%d" % index)
            assert await reader.readexactly(1) == b"%d" % index
        assert sorted(peers) == sorted(w.get_extra_info("sockname") for _, w in streams)
        for _, writer in streams:
            writer.close()
        listener.close()
        await listener.wait_closed()

    asyncio.run(main())


def test_closed_it_accepts_no_more_and_its_connections_go_on() -> None:
    async def main() -> None:
        listener = await listen(Echo, "127.0.0.1", 0)
        port = port_of(listener.sockets)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        listener.close()
        writer.write(b"still")
        assert await reader.readexactly(5) == b"still"
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    asyncio.run(main())


def test_an_address_in_use_raises_oserror() -> None:
    async def main() -> None:
        first = await listen(Echo, "127.0.0.1", 0)
        with pytest.raises(OSError):
            await listen(Echo, "127.0.0.1", port_of(first.sockets))
        first.close()

    asyncio.run(main())
