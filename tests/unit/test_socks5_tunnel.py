"""The SOCKS5 listener on a wgpy.tunnel.Tunnel, in one process (tests/tunnels.py's pair): a
CONNECT to an address is begun in the turn its request arrives, with no task, and ends as a
task's would: relayed, refused, unreachable, past its deadline, or given up as the client goes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from tunnels import B4, B6, tunnel_pair

from wgpy import tunnel
from wgpy.proxy.relay import Connections, close_quietly
from wgpy.proxy.socks5 import Reply, encode_address
from wgpy.proxy.socks5_listener import Socks5Listener

TIMEOUT = 10.0
GREETING = b"\x05\x01\x00"  # version 5, one method: no authentication
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def upper_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(1 << 16):
        writer.write(chunk.upper())
    writer.close()


def request(host: str, port: int) -> bytes:
    return b"\x05\x01\x00" + encode_address(host, port)  # CONNECT


async def socks5_client(
    network: tunnel.Tunnel, connect_timeout: float = 5.0
) -> tuple[Stream, Connections]:
    """A client's stream to a SOCKS5 listener's protocol over `network`, and the listener's
    connections."""
    connections = Connections()
    near, far = socket.socketpair()
    listener = Socks5Listener(network, None, connect_timeout, connections)
    await asyncio.get_running_loop().connect_accepted_socket(listener, sock=far)
    return await asyncio.open_connection(sock=near), connections


def run(test: Callable[[tunnel.Tunnel, tunnel.Tunnel], Awaitable[bytes]]) -> bytes:
    async def within() -> bytes:
        async with tunnel_pair() as (a, b):
            return await test(a, b)

    return asyncio.run(asyncio.wait_for(within(), TIMEOUT))


async def reply_of(stream: Stream) -> Reply:
    reader, _ = stream
    assert await reader.readexactly(2) == b"\x05\x00"  # the method chosen
    _, reply, _, kind = await reader.readexactly(4)
    await reader.readexactly((4 if kind == 1 else 16) + 2)  # the bound address and port
    return Reply(reply)


def test_a_connect_to_an_address_is_relayed_through_the_tunnel_both_ways() -> None:
    async def test(a: tunnel.Tunnel, b: tunnel.Tunnel) -> bytes:
        await b.start_server(upper_echo, 7)
        stream, connections = await socks5_client(a)
        stream[1].write(GREETING + request(B6, 7) + b"through")
        stream[1].write_eof()
        assert await reply_of(stream) is Reply.SUCCEEDED
        answer = await stream[0].read()
        await close_quietly(stream[1])
        await connections.drain()
        assert not connections
        return answer

    assert run(test) == b"THROUGH"


def test_the_syn_is_sent_within_the_call_that_takes_the_request() -> None:
    async def test(a: tunnel.Tunnel, b: tunnel.Tunnel) -> bytes:
        await b.start_server(upper_echo, 7)
        await a.ping(B4)  # the handshake is done: what the stack sends next goes at once
        (peer,) = a.device.peers.values()
        listener = Socks5Listener(a, None, 5.0, Connections())
        near, far = socket.socketpair()
        loop = asyncio.get_running_loop()
        _, client = await loop.connect_accepted_socket(listener, sock=far)
        sent = peer.tx_bytes
        client.data_received(GREETING + request(B4, 7))
        assert (a.stack.connections, peer.tx_bytes > sent) == (1, True)
        stream = await asyncio.open_connection(sock=near)
        reply = await reply_of(stream)
        await close_quietly(stream[1])
        return bytes([reply])

    assert run(test) == bytes([Reply.SUCCEEDED])


def test_a_port_nobody_listens_on_is_refused() -> None:
    async def test(a: tunnel.Tunnel, _: tunnel.Tunnel) -> bytes:
        stream, connections = await socks5_client(a)
        stream[1].write(GREETING + request(B4, 81))
        reply = await reply_of(stream)
        assert await stream[0].read() == b""  # and the connection closed
        await close_quietly(stream[1])
        await connections.drain()
        assert not connections
        return bytes([reply])

    assert run(test) == bytes([Reply.CONNECTION_REFUSED])


def test_an_address_no_peer_routes_is_unreachable_at_once() -> None:
    async def test(a: tunnel.Tunnel, _: tunnel.Tunnel) -> bytes:
        stream, _ = await socks5_client(a)
        stream[1].write(GREETING + request("192.0.2.99", 80))
        reply = await reply_of(stream)
        assert a.stack.connections == 0
        await close_quietly(stream[1])
        return bytes([reply])

    assert run(test) == bytes([Reply.NETWORK_UNREACHABLE])


def test_a_silent_destination_expires_at_the_deadline_and_its_connection_is_aborted() -> None:
    async def test(a: tunnel.Tunnel, b: tunnel.Tunnel) -> bytes:
        b.path.close_sockets()  # B hears nothing: A's SYN (its handshake first) goes nowhere
        stream, connections = await socks5_client(a, connect_timeout=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        stream[1].write(GREETING + request(B4, 7))
        reply = await reply_of(stream)
        assert 0.3 <= loop.time() - started < 2.0
        assert a.stack.connections == 0
        await close_quietly(stream[1])
        await connections.drain()
        assert not connections
        return bytes([reply])

    assert run(test) == bytes([Reply.TTL_EXPIRED])


def test_a_proxy_that_stops_gives_up_a_connect_under_way_with_no_reply() -> None:
    async def test(a: tunnel.Tunnel, b: tunnel.Tunnel) -> bytes:
        b.path.close_sockets()
        stream, connections = await socks5_client(a)
        stream[1].write(GREETING + request(B4, 7))
        await stream[0].readexactly(2)  # the method: the request is in
        assert a.stack.connections == 1
        await connections.drain(grace=0.1)  # as the proxy stops
        answer = await stream[0].read()
        while a.stack.connections:  # its RST sent, the connection is gone
            await asyncio.sleep(0.01)
        await close_quietly(stream[1])
        return answer + bytes([len(connections)])

    assert run(test) == b"\x00"  # no reply, the connection closed, none held
