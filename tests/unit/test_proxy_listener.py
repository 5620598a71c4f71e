"""wgpy.proxy.listener: the proxy's TCP listener, a transport made in the turn of each accept, and
for protocols whose client speaks first, a connection that comes with its first bytes."""

from __future__ import annotations

import asyncio
import socket

import pytest

from wgpy.proxy.listener import DEFER_SECONDS, listen


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


DEFERS = pytest.mark.skipif(
    not hasattr(socket, "TCP_DEFER_ACCEPT"), reason="TCP_DEFER_ACCEPT is Linux's"
)


@DEFERS
def test_a_client_that_speaks_first_comes_with_its_first_bytes_read_in_the_accept_s_turn() -> None:
    async def main() -> list[str]:
        seen: list[str] = []

        class Recording(Echo):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                seen.append("made")
                asyncio.get_running_loop().call_soon(seen.append, "next turn")

            def data_received(self, data: bytes) -> None:
                seen.append(data.decode())
                super().data_received(data)

        listener = await listen(Recording, "127.0.0.1", 0, client_speaks_first=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(listener.sockets))
        await asyncio.sleep(0.1)
        assert seen == []  # the kernel holds it back until it speaks
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.close()
        listener.close()
        return seen

    assert asyncio.run(main())[:3] == ["made", "hello", "next turn"]


@DEFERS
def test_a_client_that_says_nothing_still_comes_once_the_kernel_stops_holding_it() -> None:
    async def main() -> float:
        made = asyncio.get_running_loop().create_future()

        class Waiting(Echo):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                made.set_result(asyncio.get_running_loop().time())

        listener = await listen(Waiting, "127.0.0.1", 0, client_speaks_first=True)
        started = asyncio.get_running_loop().time()
        _, writer = await asyncio.open_connection("127.0.0.1", port_of(listener.sockets))
        accepted = await asyncio.wait_for(made, 10)
        writer.close()
        listener.close()
        return accepted - started

    assert DEFER_SECONDS <= asyncio.run(main()) < 10
