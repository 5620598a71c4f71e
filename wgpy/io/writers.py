"""Writers: one destination's writes (the TUN's, or the UDP sockets') carried out on a thread of
its own, in the order they were handed over.

The data path's thread hands a batch's writes to a writer and goes on to the next batch while
the writer's system call runs with the GIL released: the kernel's work in a TUN write (its TCP
receive) or in a UDP_SEGMENT send then runs on another core than the data path's next receive
and seal or open. One writer per destination keeps that destination's order. The queue between
them is short and bounded: when it is full the data path waits for the writer, so nothing
queues here without bound, and where packets must be dropped, the kernel's bounded buffers
still drop them.

WGPY_WRITERS names the destinations that get a writer: tun, udp, both (tun,udp) or none; by
default the TUN's alone, where the process may run on at least WRITERS_MIN_CPUS CPUs (see
datapath.py for the figures behind the rule).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping, Set
from typing import Final

from wgpy.io.thread_name import name_this_thread
from wgpy.io.tun_batches import INTERFACE_GONE

log = logging.getLogger("wgpy")

WRITERS_VARIABLE: Final = "WGPY_WRITERS"
TUN: Final = "tun"
UDP: Final = "udp"
DESTINATIONS: Final = frozenset({TUN, UDP})
# The writers by default (datapath.py says why the sockets' is not among them).
DEFAULT: Final = frozenset({TUN})
# The CPUs a process needs before writers are on by default: a writer only pays while it runs
# beside the data path's thread on a core of its own. On 2 CPUs, busy with both ends of the
# flows, it lost (datapath.py); 4 leave it a core beside the data path and one other busy
# process, but were not measured: this is the rule's guess.
WRITERS_MIN_CPUS: Final = 4
# Batches handed over and not yet written (the one being written among them), at most, per
# writer: enough to keep the writer busy while the data path prepares the next, few enough that
# they hold ~0.5 MB.
DEPTH: Final = 8

Write = Callable[..., object]  # what it returns is not looked at


def writers_wanted(environ: Mapping[str, str] = os.environ) -> Set[str]:
    """The destinations that get a writer: WGPY_WRITERS's, comma-separated ("none" for none),
    or by default DEFAULT where this process may run on WRITERS_MIN_CPUS CPUs. Raises
    ValueError for a name that is not a destination."""
    value = environ.get(WRITERS_VARIABLE)
    if value is None:
        return DEFAULT if len(os.sched_getaffinity(0)) >= WRITERS_MIN_CPUS else frozenset()
    wanted = frozenset(value.replace(" ", "").split(",")) - {"", "none"}
    if not wanted <= DESTINATIONS:
        raise ValueError(f"{WRITERS_VARIABLE}={value!r}: not a list of tun, udp or none")
    return wanted


class Writer:
    """A thread that carries out the writes handed to it, in order. A write that fails is
    counted and logged (a system call's refusal at debug level, a bug with its traceback), never
    raised: the writer goes on with the next. One that finds the
    interface gone calls `on_gone`, once."""

    def __init__(
        self, name: str, on_gone: Callable[[], None], depth: int = DEPTH, *, kernel_name: str = ""
    ) -> None:
        """`name` is the thread's; `kernel_name` (thread_name.py), the kernel's, if given."""
        self.name = name
        self._kernel_name = kernel_name
        self.failures = 0
        self._on_gone = on_gone
        self._gone = False
        # Both queues are CPython's C SimpleQueue: a put or a get that waits costs no Python-level
        # Condition (queue.Queue's cost a quarter of the data path's time in its handovers).
        # Writes flow through `_jobs`; `_room` holds a token for each write that may still be
        # handed over, taken by the hand-over and returned once the write is done.
        self._depth = depth
        self._jobs: queue.SimpleQueue[tuple[Write, tuple[object, ...]] | None] = queue.SimpleQueue()
        self._room: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(depth):
            self._room.put(None)
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what was handed over, then end the thread and wait for it."""
        thread, self._thread = self._thread, None
        assert thread is not None
        self._jobs.put(None)
        thread.join()

    def idle(self) -> bool:
        """Whether everything handed over has been written: a write made now comes after it."""
        return self._room.qsize() == self._depth

    def hand_over(self, write: Write, *args: object) -> None:
        """`write(*args)` on the writer's thread, after what was handed over before; waits while
        `depth` handed over are not done. Once the writer is stopped, the write is made here."""
        if self._thread is None:
            write(*args)
            return
        self._room.get()
        self._jobs.put((write, args))

    def _serve(self) -> None:
        if self._kernel_name:
            name_this_thread(self._kernel_name)
        while (job := self._jobs.get()) is not None:
            write, args = job
            try:
                write(*args)
            except OSError as error:
                if error.errno in INTERFACE_GONE:
                    self._interface_gone()
                else:
                    self.failures += 1
                    log.debug("(%s) write dropped: %s", self.name, error)
            except Exception:
                self.failures += 1
                log.exception("(%s) write dropped", self.name)
            finally:
                self._room.put(None)

    def _interface_gone(self) -> None:
        if not self._gone:
            self._gone = True
            self._on_gone()
