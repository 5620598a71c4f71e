"""Bytes both ways between two asyncio streams until both directions end, each half-closed as its
reader reaches the end, and the connections a proxy keeps open while it serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

log = logging.getLogger("wgpy.proxy")
CLOSE_GRACE = 5.0  # seconds open connections get to end once the proxy stops

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(slots=True)
class Counted:
    """The bytes a relay carried: up from the client, down to it."""

    up: int = 0
    down: int = 0


async def relay(client: Stream, upstream: Stream, first: bytes = b"") -> Counted:
    """Copies client to upstream (starting with `first`) and back, until both ends have ended;
    then closes both. A reset on either side ends both directions.

    The streams' transports are handed to protocols of the relay's own, so that what one end
    reads is written to the other in the same callback: a task per direction would take one
    more turn of the loop for every chunk (two per SOCKS5 connect's echo, issue 17)."""
    counted = Counted()
    if first:
        upstream[1].write(first)
        counted.up += len(first)
    link = _Link(asyncio.get_running_loop(), counted)
    up, down = _End(link, client, up=True), _End(link, upstream, up=False)
    up.peer, down.peer = down, up
    try:
        up.start()
        down.start()
        link.started()
        await link.ended
    finally:
        link.close()
        with contextlib.suppress(asyncio.CancelledError):
            await link.closed
    return counted


class _Link:
    """The relay's two ends: `ended` once both directions reached their end or either end was
    lost, `closed` once both transports are. Both are closed as the end comes (once the relay
    holds both), so that they are likely closed when the relay's task wakes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, counted: Counted) -> None:
        self.counted = counted
        self.ends: list[_End] = []
        self.ended: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._holding = False  # both transports' protocols are the ends

    def started(self) -> None:
        self._holding = True
        if self.ended.done():
            self.close()

    def direction_ended(self) -> None:
        if all(end.at_eof for end in self.ends):
            self.end()

    def end(self) -> None:
        if not self.ended.done():
            if self._holding:
                self.close()  # first: their connection_lost comes before the task's wake-up
            self.ended.set_result(None)

    def close(self) -> None:
        for end in self.ends:
            end.transport.close()
        self.lost()

    def lost(self) -> None:
        if all(end.lost for end in self.ends) and not self.closed.done():
            self.closed.set_result(None)


class _End(asyncio.Protocol):
    """One connection of the relay: what its transport reads is written to the `peer`'s, and
    its end half-closes the peer's."""

    peer: _End

    def __init__(self, link: _Link, stream: Stream, up: bool) -> None:
        self.link = link
        self.reader = stream[0]
        self.transport = cast(asyncio.Transport, stream[1].transport)
        self.up = up
        self.at_eof = False
        self.lost = False
        link.ends.append(self)

    def start(self) -> None:
        """Takes the transport from its stream: what the stream had read but nobody had taken
        yet goes first; a transport already lost (reset) ends the relay."""
        buffered = self.reader._buffer  # type: ignore[attr-defined]  # asyncio has no peek
        if buffered:
            self.data_received(bytes(buffered))
            buffered.clear()
        if self.transport.is_closing():
            self.lost = True
            self.link.end()
            return
        self.transport.set_protocol(self)
        self.transport.resume_reading()  # the stream may have paused it, its buffer full
        if self.reader.at_eof() or self.reader.exception() is not None:
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
            if self.peer.transport.can_write_eof():
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
    """The tasks serving open connections, so that stopping lets them end for a while."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a connection's task failed: %r", task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, grace: float = CLOSE_GRACE) -> None:
        """Waits up to `grace` seconds for the open connections to end, then cancels the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
