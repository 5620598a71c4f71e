"""Bytes both ways between two asyncio streams until both directions end, each half-closed as its
reader reaches the end, and the connections a proxy keeps open while it serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("wgpy.proxy")
CHUNK = 256 * 1024
CLOSE_GRACE = 5.0  # seconds open connections get to end once the proxy stops


@dataclass(slots=True)
class Counted:
    """The bytes a relay carried: up from the client, down to it."""

    up: int = 0
    down: int = 0


async def relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    first: bytes = b"",
) -> Counted:
    """Copies client to upstream (starting with `first`) and back, until both ends have ended;
    then closes both. A reset on either side ends both directions."""
    counted = Counted()
    if first:
        upstream[1].write(first)
        counted.up += len(first)

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool) -> None:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
            if up:
                counted.up += len(data)
            else:
                counted.down += len(data)
        if writer.can_write_eof():
            writer.write_eof()

    tasks = [
        asyncio.ensure_future(pump(client[0], upstream[1], up=True)),
        asyncio.ensure_future(pump(upstream[0], client[1], up=False)),
    ]
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        await close_quietly(client[1], upstream[1])
    return counted


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
