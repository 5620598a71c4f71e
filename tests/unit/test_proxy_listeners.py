"""The SOCKS5 and HTTP listeners (wgpy.proxy.socks5_listener, http_listener) and the stopping of
open connections (wgpy.proxy.relay), in process: each client is one end of a socket pair, and the
Network a fake whose connections are socket pairs too, to an echo or a one-shot HTTP origin."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

from wgpy.proxy import socks5_listener
from wgpy.proxy.http_listener import HttpHandler
from wgpy.proxy.network import OnOpen
from wgpy.proxy.relay import Connections, close_quietly
from wgpy.proxy.socks5 import Reply, encode_address
from wgpy.proxy.socks5_listener import Socks5Listener

Origin = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
    writer.write_eof()


async def http_origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one request with its own head as the body, then closes."""
    head = await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + head)
    await close_quietly(writer)


class FakeNetwork:
    """open_connection: to `origin` over a socket pair, or `error` raised, or never answering."""

    def __init__(self, origin: Origin | None = None, error: OSError | None = None) -> None:
        self.origin, self.error = origin, error
        self.opened: list[tuple[str, int]] = []

    async def open_connection(self, host: str, port: int) -> Stream:
        self.opened.append((host, port))
        if self.error is not None:
            raise self.error
        if self.origin is None:
            await asyncio.Event().wait()  # silent
        return await paired(self.origin)  # type: ignore[arg-type]

    def connect_soon(
        self, protocol: asyncio.Protocol, host: str, port: int, on_open: OnOpen
    ) -> asyncio.Transport | None:
        return None  # as a socket's network: create_connection in the request's task

    async def create_connection(
        self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.Transport, asyncio.Protocol]:
        reader, writer = await self.open_connection(host, port)
        transport, protocol = writer.transport, protocol_factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        # What the origin sent while the connect waited comes next, as a socket's would.
        buffered = bytes(reader._buffer)  # type: ignore[attr-defined]
        if buffered:
            transport.get_protocol().data_received(buffered)  # type: ignore[attr-defined]
        return transport, protocol


# The servers' tasks until each ends. The loop holds a task only weakly, and a stream's
# protocol its reader too: a task awaiting its read is otherwise garbage, and a collection
# could destroy it mid-test, the client then waiting for an answer that never comes.
serving: set[asyncio.Task[None]] = set()


async def paired(server: Origin) -> Stream:
    """A stream whose far end `server` serves, as a task."""
    near, far = socket.socketpair()
    far_stream = await asyncio.open_connection(sock=far)
    task = asyncio.ensure_future(server(*far_stream))
    serving.add(task)
    task.add_done_callback(serving.discard)
    task.add_done_callback(lambda _: far_stream[1].close())
    return await asyncio.open_connection(sock=near)


def run(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        client: Callable[[Stream], Awaitable[bytes]]) -> bytes:  # fmt: skip
    """`client`'s result, talking to `handler` serving the other end of its connection."""

    async def both() -> bytes:
        stream = await paired(handler)
        try:
            async with asyncio.timeout(5):
                return await client(stream)
        finally:
            await close_quietly(stream[1])

    return asyncio.run(both())


def run_socks5(
    network: FakeNetwork, timeout: float, client: Callable[[Stream], Awaitable[bytes]]
) -> bytes:
    """`client`'s result, talking to a SOCKS5 listener's protocol on the other end of its
    connection; the listener's connections have all ended by the time it returns."""

    async def both() -> bytes:
        connections = Connections()
        near, far = socket.socketpair()
        listener = Socks5Listener(network, None, timeout, connections)
        await asyncio.get_running_loop().connect_accepted_socket(listener, sock=far)
        stream = await asyncio.open_connection(sock=near)
        try:
            async with asyncio.timeout(5):
                return await client(stream)
        finally:
            await close_quietly(stream[1])
            await connections.drain(grace=5)
            assert not connections

    return asyncio.run(both())


def socks5_connect(host: str, port: int, then: bytes = b"") -> Callable[[Stream], Awaitable[bytes]]:
    async def client(stream: Stream) -> bytes:
        reader, writer = stream
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00" + encode_address(host, port) + then)
        writer.write_eof()
        return await reader.read()

    return client


def test_socks5_connect_relays_to_the_networks_connection_and_back() -> None:
    network = FakeNetwork(echo)
    answer = run_socks5(network, 5.0, socks5_connect("svc.example", 80, b"hello"))
    assert answer[:6] == b"\x05\x00" + b"\x05\x00\x00\x01"  # the method; success, an IPv4 bound
    assert answer[2 + 10 :] == b"hello"
    assert network.opened == [("svc.example", 80)]


def test_socks5_debug_log_names_the_destination_of_each_connect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="wgpy.proxy")
    run_socks5(FakeNetwork(echo), 5.0, socks5_connect("2001:db8::1", 80, b"hello"))
    opened = [r.getMessage() for r in caplog.records if r.getMessage().endswith(": opened")]
    assert len(opened) == 1 and opened[0].endswith(" -> [2001:db8::1]:80: opened")
    closed = [r.getMessage() for r in caplog.records if ": closed, " in r.getMessage()]
    assert closed == [opened[0].replace(": opened", ": closed, 5 bytes up, 5 down")]


class SlowNetwork(FakeNetwork):
    """Connects only after `delay` seconds: what either end sends meanwhile waits in its stream
    when the relay starts."""

    def __init__(self, origin: Origin, delay: float) -> None:
        super().__init__(origin)
        self.delay = delay

    async def open_connection(self, host: str, port: int) -> Stream:
        stream = await super().open_connection(host, port)
        await asyncio.sleep(self.delay)
        return stream


async def banner_then_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"banner;")
    await echo(reader, writer)


def test_the_relay_carries_what_both_ends_sent_before_it_started_and_the_clients_end() -> None:
    async def client(stream: Stream) -> bytes:
        reader, writer = stream
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00" + encode_address("svc.example", 22))
        await asyncio.sleep(0.05)  # the request's read is over; the connect still waits
        writer.write(b"late")
        writer.write_eof()
        return await reader.read()

    answer = run_socks5(SlowNetwork(banner_then_echo, 0.2), 5.0, client)
    assert answer[2 + 10 :] == b"banner;late"


@pytest.mark.parametrize(
    ("network", "reply"),
    [
        (FakeNetwork(error=ConnectionRefusedError(111, "refused")), Reply.CONNECTION_REFUSED),
        (FakeNetwork(error=socket.gaierror(-2, "unknown")), Reply.HOST_UNREACHABLE),
        (FakeNetwork(error=OSError(113, "no route")), Reply.HOST_UNREACHABLE),
        (FakeNetwork(), Reply.TTL_EXPIRED),  # silent past the connect timeout
    ],
)
def test_socks5_reports_why_the_connection_failed(network: FakeNetwork, reply: Reply) -> None:
    answer = run_socks5(network, 0.2, socks5_connect("198.18.0.7", 80))
    assert answer[2:4] == bytes([5, reply])


def test_http_forwards_the_request_in_origin_form_and_relays_the_response() -> None:
    async def client(stream: Stream) -> bytes:
        reader, writer = stream
        writer.write(b"GET http://svc.example:8080/p?q HTTP/1.1\r\nHost: svc.example:8080\r\n"
                     b"Proxy-Connection: keep-alive\r\n\r\n")  # fmt: skip
        return await reader.read()

    network = FakeNetwork(http_origin)
    answer = run(HttpHandler(network, 5.0), client)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"GET /p?q HTTP/1.1\r\n" in answer and b"proxy-connection" not in answer.lower()
    assert network.opened == [("svc.example", 8080)]


def test_http_connect_tunnels_after_its_200() -> None:
    async def client(stream: Stream) -> bytes:
        reader, writer = stream
        writer.write(b"CONNECT svc.example:443 HTTP/1.1\r\nHost: x\r\n\r\nping")
        writer.write_eof()
        return await reader.read()

    answer = run(HttpHandler(FakeNetwork(echo), 5.0), client)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nping")


def test_http_answers_502_when_the_origin_refuses_and_504_when_it_is_silent() -> None:
    async def client(stream: Stream) -> bytes:
        reader, writer = stream
        writer.write(b"CONNECT svc.example:443 HTTP/1.1\r\nHost: x\r\n\r\n")
        return await reader.read()

    refused = FakeNetwork(error=ConnectionRefusedError(111, "refused"))
    assert run(HttpHandler(refused, 5.0), client).startswith(b"HTTP/1.1 502 ")
    assert run(HttpHandler(FakeNetwork(), 0.2), client).startswith(b"HTTP/1.1 504 ")


def test_stopping_waits_for_open_connections_then_cancels_what_remains() -> None:
    async def scenario() -> tuple[bool, bool]:
        connections = Connections()
        quick = connections.start(asyncio.sleep(0.05))
        endless = connections.start(asyncio.Event().wait())
        await connections.drain(grace=0.3)
        return quick.done() and not quick.cancelled(), endless.cancelled()

    assert asyncio.run(scenario()) == (True, True)


def test_a_socks5_client_silent_past_the_negotiation_timeout_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socks5_listener, "NEGOTIATION_TIMEOUT", 0.1)

    async def client(stream: Stream) -> bytes:
        reader, writer = stream
        writer.write(b"\x05\x01\x00")  # the greeting, then nothing
        return await reader.read()

    assert run_socks5(FakeNetwork(echo), 5.0, client) == b"\x05\x00"  # then the end


def test_a_socks5_client_gone_while_its_connect_waits_is_released_when_the_connect_ends() -> None:
    network = FakeNetwork()  # silent: the connect waits for its timeout

    async def client(stream: Stream) -> bytes:
        reader, writer = stream
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00" + encode_address("198.18.0.7", 80))
        return await reader.readexactly(2)  # then it goes

    started = time.monotonic()
    run_socks5(network, 0.2, client)  # (its drain asserts that the connection released)
    assert time.monotonic() - started < 2  # at the connect's timeout, not the drain's grace
    assert network.opened == [("198.18.0.7", 80)]


def test_stopping_closes_socks5_connections_still_open_past_the_grace() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        connections = Connections()
        listener = Socks5Listener(FakeNetwork(echo), None, 5.0, connections)
        loop = asyncio.get_running_loop()
        ends = []
        for then in (b"", b"\x05\x01\x00" + encode_address("198.18.0.7", 80)):
            near, far = socket.socketpair()
            await loop.connect_accepted_socket(listener, sock=far)
            reader, writer = await asyncio.open_connection(sock=near)
            writer.write(b"\x05\x01\x00" + then)  # one negotiating, one relaying
            ends.append((reader, writer))
        await asyncio.sleep(0.05)
        await connections.drain(grace=0.1)
        answers = [await asyncio.wait_for(reader.read(), 1) for reader, _ in ends]
        for _, writer in ends:
            writer.close()
        assert not connections
        return answers[0], answers[1][:4]

    assert asyncio.run(scenario()) == (b"\x05\x00", b"\x05\x00\x05\x00")


def test_what_a_socks5_client_sends_past_the_early_data_limit_waits_and_arrives_intact() -> None:
    payload = random.Random(17).randbytes(4 * socks5_listener.EARLY_DATA_LIMIT)

    async def client(stream: Stream) -> bytes:
        reader, writer = stream
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00" + encode_address("svc.example", 7))
        writer.write(payload)  # while the connect waits: past the limit, reading pauses
        writer.write_eof()
        return await reader.read()

    answer = run_socks5(SlowNetwork(echo, 0.2), 5.0, client)
    assert answer[2 + 10 :] == payload
