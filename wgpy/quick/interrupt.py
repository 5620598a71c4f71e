"""SIGINT and SIGTERM in wgpy-quick: an exception before anything changes, a request honoured
between steps while `up` or `down` changes the host, nothing while `up` rolls back.

A step cut off halfway (a netlink exchange, the daemon's start) could be neither finished nor
undone, so `up` lets the step under way end, then undoes every step done: the interface never
outlives an interrupted `up`. (A hook is in the terminal's process group: a Ctrl-C ends it
itself, and `up` rolls back as for any failed hook.)
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """wgpy-quick stopped early. A KeyboardInterrupt, so that no `except Exception` takes it;
    `str()` is the one line to report: why, and what became of the changes."""

    def __init__(self, reason: str, outcome: str = "nothing was changed") -> None:
        self.reason, self.outcome = reason, outcome
        super().__init__(f"{reason}; {outcome}")


def signal_name(signum: int) -> str:
    return f"interrupted by {signal.Signals(signum).name}"


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted wherever the program is."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(signal_name(signum))

    with _handled(interrupt):
        yield


@contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """SIGINT and SIGTERM are noted in the list yielded, for the caller to act on when it may."""
    pending: list[int] = []

    def note(signum: int, frame: object) -> None:
        pending.append(signum)

    with _handled(note):
        yield pending


@contextmanager
def signals_ignored() -> Iterator[None]:
    with _handled(signal.SIG_IGN):
        yield


def ignored_from_now() -> None:
    """For a program about to exit with its changes all made: a signal from now on changes
    nothing, and must not claim to stop anything. (No context above restores its handler.)"""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextmanager
def _handled(handler: signal._HANDLER) -> Iterator[None]:
    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, earlier in previous.items():
            if signal.getsignal(signum) == handler:  # unless ignored_from_now
                signal.signal(signum, earlier)
