"""An asyncio Transport over a TcpConnection of the user-space stack, so that asyncio's streams
(StreamReader, StreamWriter) and protocols run on the tunnel unchanged.

Flow control goes both ways, as over a kernel socket. Writing: what the connection's bounded send
buffer does not take waits here, and past WRITE_HIGH bytes the protocol is paused (so
`writer.drain()` waits) until WRITABLE_AGAIN brings it under WRITE_LOW. Reading: while the
protocol has paused reading (a full StreamReader), nothing is taken from the connection, whose
receive buffer fills and whose advertised window closes, which stops the peer.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any, cast

from wgpy.io.rootless import RootlessDataPath
from wgpy.netstack.tcp import TcpConnection, TcpError, TcpEvent

WRITE_HIGH = 1 << 16  # asyncio's own write buffer limits
WRITE_LOW = WRITE_HIGH // 4
READ_CHUNK = 1 << 18

_ENDINGS = {
    TcpEvent.RESET: (ConnectionResetError, errno.ECONNRESET),
    TcpEvent.REFUSED: (ConnectionRefusedError, errno.ECONNREFUSED),
    TcpEvent.TIMED_OUT: (TimeoutError, errno.ETIMEDOUT),
}


def ending_error(event: TcpEvent, conn: TcpConnection) -> OSError | None:
    """The OSError a socket would raise for a connection that ended with `event`."""
    if event not in _ENDINGS:
        return None
    kind, code = _ENDINGS[event]
    return kind(code, f"{conn.remote.host} port {conn.remote.port}: {errno.errorcode[code]}")


class StackStreamTransport(asyncio.Transport):
    """`conn` as a transport for `protocol`. The protocol's connection_made is called once the
    connection is established (at once for an accepted one); `on_open` hears of that, or of
    the error that ended the opening."""

    def __init__(
        self,
        path: RootlessDataPath,
        conn: TcpConnection,
        protocol: asyncio.Protocol,
        on_open: Callable[[OSError | None], None] = lambda error: None,
    ) -> None:
        super().__init__()
        self._path = path
        self._conn = conn
        self._protocol = protocol
        self._on_open = on_open
        self._open = False
        self._pending = bytearray()  # written, not yet taken by the connection
        self._writing_paused = False
        self._reading_paused = False
        self._closing = False  # close() called: FIN once _pending is out
        self._eof_written = False
        self._eof_received = False
        self._lost = False
        path.watch(conn, self._on_event)
        path.transports.add(self)

    # -- the connection's events -----------------------------------------------------------

    def accepted(self) -> None:
        """For an accepted connection, established already: the protocol may use it, and what
        arrived with the handshake's end is read."""
        self._opened()
        self._on_event()

    def _opened(self) -> None:
        self._open = True
        self._protocol.connection_made(self)
        self._on_open(None)

    def _on_event(self) -> None:
        for event in self._conn.events():
            if event is TcpEvent.ESTABLISHED:
                if not self._open:
                    self._opened()
            elif event is TcpEvent.WRITABLE_AGAIN:
                self._push()
            elif event in (TcpEvent.DATA_READABLE, TcpEvent.PEER_CLOSED):
                self._read()
            else:  # CLOSED, RESET, REFUSED, TIMED_OUT
                self._ended(ending_error(event, self._conn))
                return

    def _read(self) -> None:
        conn = self._conn
        if not self._open or self._lost:
            return
        while not self._reading_paused and conn.readable:
            self._protocol.data_received(conn.receive_data(READ_CHUNK))
            if conn.ack_due:  # the window opened enough for an update to go out
                self._wake()
        if conn.at_eof and not self._eof_received and not self._reading_paused:
            self._eof_received = True
            keep_open = self._protocol.eof_received()
            if not keep_open and not self._eof_written:
                self.close()
            elif self._eof_written and not self._pending:
                self._lose(None)

    def _ended(self, error: OSError | None) -> None:
        if not self._open:
            self._open = True  # no connection_made: the opener gets the error
            self._path.unwatch(self._conn)
            self._path.transports.discard(self)
            self._lost = True
            self._on_open(error or ConnectionResetError(errno.ECONNRESET, "closed while opening"))
            return
        self._read()
        self._lose(error)

    def _lose(self, error: OSError | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._path.unwatch(self._conn)
        self._path.transports.discard(self)
        self._path.loop.call_soon(self._protocol.connection_lost, error)

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof_written or self._lost:
            return
        if self._pending:
            self._pending += data
        else:
            try:
                taken = self._conn.send(data)
            except TcpError:  # It ended: connection_lost says how.
                return
            if taken < len(data):
                self._pending += memoryview(data)[taken:]
            self._path.stack.wake(self._conn)
            self._path.flush()
        if len(self._pending) > WRITE_HIGH and not self._writing_paused:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _push(self) -> None:
        """What waits here, to the connection, and its end once all of it is there. The caller
        sends it: a turn under way, or write_eof's and close's flush."""
        if self._lost:
            return
        if self._pending:
            try:
                taken = self._conn.send(self._pending)
            except TcpError:
                return
            del self._pending[:taken]
            self._path.stack.wake(self._conn)
        if self._writing_paused and len(self._pending) <= WRITE_LOW:
            self._writing_paused = False
            self._protocol.resume_writing()
        if not self._pending and (self._closing or self._eof_written):
            self._conn.close(orphan=self._closing)
            self._path.stack.wake(self._conn)
            # Done both ways only now: lost earlier, what still waited here would never go.
            if self._closing or self._eof_received:
                self._lose(None)

    def write_eof(self) -> None:
        if self._eof_written or self._closing:
            return
        self._eof_written = True
        self._push()
        self._path.flush()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._pending)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return WRITE_LOW, WRITE_HIGH

    # -- reading ---------------------------------------------------------------------------

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._path.loop.call_soon(self._read)

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._lost

    # -- ending ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        self._push()
        self._path.flush()

    def abort(self) -> None:
        self._conn.abort()
        self._wake()
        if self._open:
            self._lose(None)
        else:
            self._ended(ConnectionAbortedError(errno.ECONNABORTED, "aborted while opening"))

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return tuple(self._conn.remote)
        if name == "sockname":
            return tuple(self._conn.local)
        return default

    def _wake(self) -> None:
        self._path.stack.wake(self._conn)
        self._path.wake()
