"""wgpy.proxy.socket_transport: an accepted connection as an asyncio Transport, with asyncio's
own transport's semantics for what the proxy's protocols use."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from wgpy.proxy.socket_transport import WRITE_HIGH, SocketTransport

BIG = 4 * 1024 * 1024  # more than the two sockets' buffers hold


class Recorder(asyncio.Protocol):
    """What the transport told its protocol, in order."""

    def __init__(self) -> None:
        self.keep_open = True  # eof_received's answer
        self.failing = False  # data_received raises, as a protocol's bug would
        self.calls: list[str] = []
        self.received = bytearray()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.calls.append("made")

    def data_received(self, data: bytes) -> None:
        if self.failing:
            raise ValueError("a bug")
        self.received += data

    def eof_received(self) -> bool:
        self.calls.append("eof")
        return self.keep_open

    def pause_writing(self) -> None:
        self.calls.append("pause")

    def resume_writing(self) -> None:
        self.calls.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append("lost")
        self.lost.set_result(exc)


def run(test: Callable[[SocketTransport, Recorder, socket.socket], Awaitable[None]]) -> None:
    """`test` with a transport over one end of a connected pair and the other end, blocking."""

    async def main() -> None:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        recorder = Recorder()
        transport = SocketTransport(asyncio.get_running_loop(), ours, recorder, "peer")
        try:
            await test(transport, recorder, theirs)
        finally:
            transport.abort()
            await asyncio.sleep(0)  # its connection_lost, which closes the socket
            theirs.close()

    asyncio.run(main())


async def read_all(sock: socket.socket, size: int) -> bytes:
    """`size` bytes from `sock`, read on a thread while the loop runs."""

    def read() -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data)

    return await asyncio.to_thread(read)


def test_what_is_read_goes_to_the_protocol_and_a_write_goes_out_at_once() -> None:
    async def test(transport: SocketTransport, recorder: Recorder, peer: socket.socket) -> None:
        peer.sendall(b"hello")
        await asyncio.sleep(0.05)
        assert bytes(recorder.received) == b"hello" and recorder.calls == ["made"]
        transport.write(b"world")
        assert transport.get_write_buffer_size() == 0
        assert peer.recv(5) == b"world"
        assert transport.get_extra_info("peername") == "peer"
        assert transport.get_extra_info("sockname") == peer.getpeername()

    run(test)


def test_what_the_socket_does_not_take_waits_and_pauses_the_protocol_until_it_drains() -> None:
    async def test(transport: SocketTransport, recorder: Recorder, peer: socket.socket) -> None:
        data = bytes(range(256)) * (BIG // 256)
        transport.write(data)
        assert transport.get_write_buffer_size() > WRITE_HIGH and recorder.calls[-1] == "pause"
        assert await read_all(peer, len(data)) == data
        await asyncio.sleep(0.05)
        assert transport.get_write_buffer_size() == 0 and recorder.calls[-1] == "resume"

    run(test)


def test_write_eof_ends_the_sending_side_once_what_waits_is_out() -> None:
    async def test(transport: SocketTransport, recorder: Recorder, peer: socket.socket) -> None:
        transport.write(b"x" * BIG)
        transport.write_eof()
        with pytest.raises(RuntimeError):
            transport.write(b"more")
        assert await read_all(peer, BIG + 1) == b"x" * BIG  # then the end
        peer.sendall(b"still read")  # only the sending side is shut
        await asyncio.sleep(0.05)
        assert bytes(recorder.received) == b"still read" and not transport.is_closing()

    run(test)


def test_close_sends_what_waits_then_loses_the_connection() -> None:
    async def test(transport: SocketTransport, recorder: Recorder, peer: socket.socket) -> None:
        transport.write(b"y" * BIG)
        transport.close()
        assert transport.is_closing() and not transport.is_reading()
        assert await read_all(peer, BIG + 1) == b"y" * BIG
        assert await recorder.lost is None and recorder.calls[-1] == "lost"

    run(test)


def test_abort_drops_what_waits_and_loses_the_connection_at_once() -> None:
    async def test(transport: SocketTransport, recorder: Recorder, peer: socket.socket) -> None:
        transport.write(b"z" * BIG)
        transport.abort()
        assert transport.get_write_buffer_size() == 0
        assert await recorder.lost is None
        assert len(await read_all(peer, BIG)) < BIG

    run(test)


@pytest.mark.parametrize("keep_open", [True, False])
def test_the_peers_end_is_told_and_closes_unless_the_protocol_keeps_it_open(
    keep_open: bool,
) -> None:
    async def test(transport: SocketTransport, recorder: Recorder, peer: socket.socket) -> None:
        recorder.keep_open = keep_open
        peer.shutdown(socket.SHUT_WR)
        await asyncio.sleep(0.05)
        assert recorder.calls[:2] == ["made", "eof"]
        assert transport.is_closing() is not keep_open
        if keep_open:  # it may still write
            transport.write(b"after")
            assert peer.recv(5) == b"after"
        else:
            assert await recorder.lost is None

    run(test)


def test_reading_paused_takes_nothing_until_resumed() -> None:
    async def test(transport: SocketTransport, recorder: Recorder, peer: socket.socket) -> None:
        transport.pause_reading()
        assert not transport.is_reading()
        peer.sendall(b"held")
        await asyncio.sleep(0.05)
        assert recorder.received == b""
        transport.resume_reading()
        await asyncio.sleep(0.05)
        assert recorder.received == b"held"

    run(test)


def test_a_broken_connection_ends_with_its_error() -> None:
    async def test(transport: SocketTransport, recorder: Recorder, peer: socket.socket) -> None:
        peer.close()
        transport.write(b"w" * BIG)
        assert isinstance(await recorder.lost, BrokenPipeError)
        assert transport.is_closing()

    run(test)


def test_a_protocol_that_fails_ends_its_connection_and_the_loop_hears_of_it() -> None:
    async def test(transport: SocketTransport, recorder: Recorder, peer: socket.socket) -> None:
        reported: list[dict[str, object]] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        recorder.failing = True
        peer.sendall(b"boom")
        assert isinstance(await recorder.lost, ValueError)
        assert [type(context["exception"]) for context in reported] == [ValueError]
        assert peer.recv(1) == b""  # closed

    run(test)
