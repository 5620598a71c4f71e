"""A connection the proxy accepted, as an asyncio Transport over its socket: what the listener's
protocols (SOCKS5, HTTP, -L forwards, the relay, asyncio's streams) use of one, and no more.

The selector loop's own (_SelectorSocketTransport) files a weak reference to itself, wraps its
socket, looks up both addresses, makes connection_made and its reader's registration callbacks
of the next turn, and as it closes, looks up its reader and writer again in lookups that raise.
That was 4.4% of the proxy's instructions for a SOCKS5 connect (callgrind, issue 17). Here the
reader is registered at once, the local address looked up only when asked for, and the
transport knows what it registered.

The semantics are asyncio's: a write goes out at once, and what the socket does not take waits
for it to become writable (the protocol paused past WRITE_HIGH bytes waiting, resumed at
WRITE_LOW); write_eof shuts the sending side once that is out, and close waits for it too;
connection_lost comes in a callback of its own, the socket closed after it. The socket's error
or the protocol's (a bug, reported to the loop's exception handler) ends the connection, and
connection_lost gets it: nothing raises into the loop.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

READ_SIZE = 1 << 18  # asyncio's max_size for a socket read
WRITE_HIGH = 1 << 16  # asyncio's default write buffer limits
WRITE_LOW = WRITE_HIGH // 4


class SocketTransport(asyncio.Transport):
    """`sock` (connected, non-blocking) for `protocol`, whose connection_made is called here."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        peername: object,
    ) -> None:
        super().__init__()
        self._info: dict[str, object] = {"peername": peername, "socket": sock}
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = cast(asyncio.Protocol, protocol)
        self._buffer = bytearray()  # written, not yet taken by the socket
        self._high, self._low = WRITE_HIGH, WRITE_LOW
        self._reading = True  # not paused by the protocol
        self._reader = self._writer = False  # registered with the loop
        self._at_eof = False  # the peer's end was read
        self._eof_written = False
        self._writing_paused = False
        self._closing = False
        self._lost = False  # connection_lost is on its way
        try:
            self._protocol.connection_made(self)
        except Exception as error:
            self._fail(error)
            return
        self._watch_reading()

    # -- reading ---------------------------------------------------------------------------

    def read_waiting(self) -> None:
        """Read now what may have come with the connection, not after a turn of the loop."""
        if self._reader:
            self._read_ready()

    def _read_ready(self) -> None:
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._fail(error)
            return
        try:
            if data:
                self._protocol.data_received(data)
                return
            self._at_eof = True
            self._watch_reading()
            if not self._protocol.eof_received():
                self.close()
        except Exception as error:
            self._fail(error)

    def pause_reading(self) -> None:
        self._reading = False
        self._watch_reading()

    def resume_reading(self) -> None:
        self._reading = True
        self._watch_reading()

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def _watch_reading(self) -> None:
        """The loop watches for input while the protocol reads, the peer has not ended, and the
        transport is not closing."""
        wanted = self._reading and not self._at_eof and not self._closing
        if wanted and not self._reader:
            self._loop.add_reader(self._fd, self._read_ready)
        elif self._reader and not wanted:
            self._loop.remove_reader(self._fd)
        self._reader = wanted

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_written:
            raise RuntimeError("write() after write_eof()")
        if not data or self._lost:
            return
        if not self._buffer:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as error:
                self._fail(error)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
            self._writer = True
        self._buffer += data
        if len(self._buffer) > self._high and not self._writing_paused:
            self._writing_paused = True
            self._tell_protocol("pause_writing")

    def _write_ready(self) -> None:
        try:
            sent = self._sock.send(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._fail(error)
            return
        del self._buffer[:sent]
        if self._writing_paused and len(self._buffer) <= self._low:
            self._writing_paused = False
            self._tell_protocol("resume_writing")
        if self._buffer or self._lost:
            return
        self._loop.remove_writer(self._fd)
        self._writer = False
        if self._closing:
            self._lose(None)
        elif self._eof_written:
            self._shut_down()

    def write_eof(self) -> None:
        if self._eof_written or self._closing:
            return
        self._eof_written = True
        if not self._buffer:
            self._shut_down()

    def _shut_down(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            self._fail(error)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = WRITE_HIGH if low is None else 4 * low
        self._high, self._low = high, high // 4 if low is None else low

    # -- ending ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading; the end once what was written is out."""
        if self._closing:
            return
        self._closing = True
        self._watch_reading()
        if not self._buffer:
            self._lose(None)

    def abort(self) -> None:
        self._lose(None)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def _fail(self, error: Exception) -> None:
        """The socket's error, or the protocol's (a bug: logged as the loop would): the end."""
        if not isinstance(error, OSError):
            self._loop.call_exception_handler(
                {"message": "protocol failed", "exception": error, "transport": self}
            )
        self._lose(error)

    def _lose(self, error: Exception | None) -> None:
        if self._lost:
            return
        self._lost = self._closing = True
        self._buffer.clear()
        self._watch_reading()
        if self._writer:
            self._loop.remove_writer(self._fd)
            self._writer = False
        self._loop.call_soon(self._connection_lost, error)

    def _connection_lost(self, error: Exception | None) -> None:
        try:
            self._protocol.connection_lost(error)
        finally:
            self._sock.close()

    # -- the rest of a Transport -----------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname" and name not in self._info:
            try:
                self._info[name] = self._sock.getsockname()
            except OSError:
                return default
        return self._info.get(name, default)

    def _tell_protocol(self, method: str) -> None:
        try:
            getattr(self._protocol, method)()
        except Exception as error:
            self._fail(error)
