"""Whether a file has input waiting, asked without reading it.

The edges drain a file after the first read of a wake-up. Asking poll(0) first spares the read
that would fail with EAGAIN when nothing more waits, which is the usual case between pings: on
the virtual machines measured, an idle CPU comes back with cold caches, and a failed read (its
exception and the code that makes it) then costs about twice a poll(0), some 20 microseconds a
packet; round trips through a bare tunnel loop were 0.47 against 0.40 ms.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from functools import partial
from typing import Protocol


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def input_waiting(file: int | _HasFileno) -> Callable[[], list[tuple[int, int]]]:
    """A check that returns a non-empty list when `file` has input waiting."""
    poller = select.poll()
    poller.register(file, select.POLLIN)
    return partial(poller.poll, 0)
