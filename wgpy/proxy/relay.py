"""Bytes both ways between two connections (asyncio streams, or transports a listener's protocol
held) until both directions end, each half-closed as its reader reaches the end, and the
connections a proxy keeps open while it serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

log = logging.getLogger("wgpy.proxy")
CLOSE_GRACE = 5.0  # seconds open connections get to end once the proxy stops

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(slots=True)
class Counted:
    """The bytes a relay carried: up from the client, down to it."""

    up: int = 0
    down: int = 0


class Side(NamedTuple):
    """One connection the relay joins: its transport, and what was read from it before the
    relay took it (and whether that reached the end), which goes first."""

    transport: asyncio.Transport
    buffered: bytes = b""
    at_eof: bool = False


def side_of(stream: Stream) -> Side:
    """A stream's connection, with what its reader had read but nobody had taken yet."""
    reader, writer = stream
    buffer = reader._buffer  # type: ignore[attr-defined]  # asyncio has no peek
    buffered = bytes(buffer)
    buffer.clear()
    at_eof = reader.at_eof() or reader.exception() is not None
    return Side(cast(asyncio.Transport, writer.transport), buffered, at_eof)


async def relay(client: Stream, upstream: Stream, first: bytes = b"") -> Counted:
    """Copies client to upstream (starting with `first`) and back, until both ends have ended;
    then closes both. A reset on either side ends both directions; so does cancelling."""
    closed: asyncio.Future[Counted] = asyncio.get_running_loop().create_future()

    def finished(counted: Counted) -> None:
        if not closed.done():  # (cancelled, if the task was cancelled twice)
            closed.set_result(counted)

    link = splice(side_of(client), side_of(upstream), first, finished)
    try:
        return await asyncio.shield(closed)
    except asyncio.CancelledError:
        link.close()
        with contextlib.suppress(asyncio.CancelledError):
            await closed
        raise


def splice(
    client: Side, upstream: Side, first: bytes, on_closed: Callable[[Counted], None]
) -> Link:
    """Starts copying client to upstream (starting with `first`) and back, until both ends
    have ended; then closes both, and once they are closed calls `on_closed` with what it
    carried. A reset on either side ends both directions.

    The transports are handed to protocols of the relay's own, so that what one end reads is
    written to the other in the same callback: a task per direction would take one more turn
    of the loop for every chunk (two per SOCKS5 connect's echo, issue 17)."""
    counted = Counted()
    if first:
        upstream.transport.write(first)
        counted.up += len(first)
    link = Link(counted, on_closed)
    up, down = _End(link, client.transport, up=True), _End(link, upstream.transport, up=False)
    up.peer, down.peer = down, up
    up.start(client)
    down.start(upstream)
    link.started()
    return link


class Link:
    """The relay's two ends: `ended` once both directions reached their end or either end was
    lost; `on_closed` is called once both transports are. Both are closed as the end comes
    (once the relay holds both)."""

    def __init__(self, counted: Counted, on_closed: Callable[[Counted], None]) -> None:
        self.counted = counted
        self.ends: list[_End] = []
        self.ended = False
        self._on_closed: Callable[[Counted], None] | None = on_closed
        self._holding = False  # both transports' protocols are the ends

    def started(self) -> None:
        self._holding = True
        if self.ended:
            self.close()

    def direction_ended(self) -> None:
        # (Loops rather than all() over a generator: one that stops early is closed by an
        # exception, and these run for every connection's end.)
        for end in self.ends:
            if not end.at_eof:
                return
        self.end()

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            if self._holding:
                self.close()

    def close(self) -> None:
        """Both transports closed (a relay cancelled, or a proxy stopping, ends so too)."""
        self.ended = True
        for end in self.ends:
            end.transport.close()
        self.lost()

    def lost(self) -> None:
        for end in self.ends:
            if not end.lost:
                return
        if self._on_closed is not None:
            on_closed, self._on_closed = self._on_closed, None
            on_closed(self.counted)


class _End(asyncio.Protocol):
    """One connection of the relay: what its transport reads is written to the `peer`'s, and
    its end half-closes the peer's."""

    peer: _End

    def __init__(self, link: Link, transport: asyncio.Transport, up: bool) -> None:
        self.link = link
        self.transport = transport
        self.up = up
        self.at_eof = False
        self.lost = False
        link.ends.append(self)

    def start(self, side: Side) -> None:
        """Takes the transport: what was read before goes first; a transport already lost
        (reset) ends the relay."""
        if side.buffered:
            self.data_received(side.buffered)
        if self.transport.is_closing():
            self.lost = True
            self.link.end()
            return
        self.transport.set_protocol(self)
        self.transport.resume_reading()  # paused by the stream (its buffer full) or the listener
        if side.at_eof:
            self.eof_received()

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)
        if self.up:
            self.link.counted.up += len(data)
        else:
            self.link.counted.down += len(data)

    def eof_received(self) -> bool:
        if not self.at_eof:
            self.at_eof = True
            # When the other way has ended too, the link closes both next: the close sends
            # the FIN a half-close would, with a shutdown() fewer.
            if not self.peer.at_eof and self.peer.transport.can_write_eof():
                self.peer.transport.write_eof()
            self.link.direction_ended()
        return True  # the other direction may go on: the link closes the transport

    # This transport's writes are the peer's reads: a full buffer here stops reading there.
    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.link.end()
        self.link.lost()


async def close_quietly(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()


class Connections:
    """The open connections, so that stopping lets them end for a while: each a task serving
    it, or one served by callbacks, held from its start until it releases itself."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._held: dict[object, Callable[[], None]] = {}  # a connection -> what aborts it
        self._emptied: asyncio.Future[None] | None = None  # while draining the held ones

    def start(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def hold(self, connection: object, abort: Callable[[], None]) -> None:
        """`connection` is open until `release`d; `abort` closes it, past the grace."""
        self._held[connection] = abort

    def release(self, connection: object) -> None:
        self._held.pop(connection, None)
        emptied = self._emptied
        if not self._held and emptied is not None and not emptied.done():
            emptied.set_result(None)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a connection's task failed: %r", task.exception())

    def __len__(self) -> int:
        return len(self._tasks) + len(self._held)

    async def drain(self, grace: float = CLOSE_GRACE) -> None:
        """Waits up to `grace` seconds for the open connections to end, then cancels the tasks
        and aborts the connections held."""
        waiting: set[asyncio.Future[Any]] = set(self._tasks)
        if self._held:
            self._emptied = asyncio.get_running_loop().create_future()
            waiting.add(self._emptied)
        if not waiting:
            return
        _, pending = await asyncio.wait(waiting, timeout=grace)
        for abort in list(self._held.values()):
            abort()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
