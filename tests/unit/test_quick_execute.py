"""The executor: all or nothing for `up`, best effort where wg-quick says `|| true` on `down`.

The steps are carried out by a recorder here; the namespace tests run the real ones.
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from wgpy.quick import QuickError
from wgpy.quick.execute import Executor, Interrupted, StepFailed
from wgpy.quick.steps import BestEffort, CreateInterface, RunHook, SetDns, Step, UnsetDns


class Recorder(Executor):
    """Runs no step: records each, and fails the ones whose command is in `failing`."""

    def __init__(
        self, failing: frozenset[str] = frozenset(), action: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(ipr=None, log=io.StringIO())
        self.done: list[str] = []
        self.failing = failing
        self.action = action
        self._handlers = _Every(self._record)

    def _record(self, step: Step) -> None:
        self.done.append(str(step))
        if str(step) in self.failing:
            raise QuickError("it failed")
        if str(step) == "act":
            self.action()


class _Every(dict[type[Step], Callable[[Any], None]]):
    def __init__(self, handler: Callable[[Any], None]) -> None:
        super().__init__()
        self.handler = handler

    def __missing__(self, key: type[Step]) -> Callable[[Any], None]:
        return self.handler


UP = [
    CreateInterface("wg0"),
    RunHook("echo pre"),
    SetDns("resolvconf", "wg0", ("198.19.8.1",)),
    RunHook("act"),
]


def test_up_runs_every_step_in_order_and_undoes_nothing() -> None:
    executor = Recorder()
    executor.up(UP)
    assert executor.done == ["wgpy wg0", "echo pre", "resolvconf -a wg0 -m 0 -x", "act"]


def test_a_failed_step_undoes_the_steps_done_in_reverse_then_raises() -> None:
    executor = Recorder(failing=frozenset({"act"}))
    with pytest.raises(StepFailed, match=r"^act: it failed$"):
        executor.up(UP)
    assert executor.done[4:] == ["resolvconf -d wg0 -f", "ip link delete dev wg0"]


def test_an_undo_that_fails_does_not_stop_the_others() -> None:
    executor = Recorder(failing=frozenset({"act", "resolvconf -d wg0 -f"}))
    with pytest.raises(StepFailed):
        executor.up(UP)
    assert executor.done[-1] == "ip link delete dev wg0"
    assert "[!] resolvconf -d wg0 -f: it failed" in executor.log.getvalue()  # type: ignore[attr-defined]


def test_a_step_that_may_fail_halfway_is_undone_too_when_it_fails() -> None:
    # resolvconf ended by a Ctrl-C may have written its record before it died.
    executor = Recorder(failing=frozenset({"resolvconf -a wg0 -m 0 -x"}))
    with pytest.raises(StepFailed):
        executor.up(UP)
    assert executor.done[3:] == ["resolvconf -d wg0 -f", "ip link delete dev wg0"]


def test_a_signal_waits_for_the_step_under_way_then_everything_is_undone() -> None:
    executor = Recorder(action=lambda: os.kill(os.getpid(), signal.SIGINT))
    plan = [*UP, RunHook("echo after")]
    with pytest.raises(Interrupted) as caught:
        executor.up(plan)
    assert str(caught.value) == "interrupted by SIGINT; rolled back"
    assert executor.done[3:] == ["act", "resolvconf -d wg0 -f", "ip link delete dev wg0"]


class ClosedLog(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_a_closed_log_stops_up_and_everything_is_undone_unlogged() -> None:
    executor = Recorder()
    executor.log = ClosedLog()
    with pytest.raises(Interrupted, match=r"^its output was closed; rolled back$"):
        executor.up(UP)
    assert executor.done == ["wgpy wg0", "ip link delete dev wg0"]


def test_sigterm_during_up_undoes_what_was_done() -> None:
    executor = Recorder(action=lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(Interrupted, match="SIGTERM"):
        executor.up(UP)
    assert executor.done[4:] == ["resolvconf -d wg0 -f", "ip link delete dev wg0"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_down_goes_on_past_best_effort_steps_and_stops_at_others() -> None:
    down = [RunHook("pre"), BestEffort(UnsetDns("resolvconf", "wg0")), RunHook("post")]
    executor = Recorder(failing=frozenset({"resolvconf -d wg0 -f"}))
    executor.down(down)
    assert executor.done == ["pre", "resolvconf -d wg0 -f", "post"]
    stopping = Recorder(failing=frozenset({"pre"}))
    with pytest.raises(StepFailed):
        stopping.down(down)
    assert stopping.done == ["pre"]


def test_each_step_is_printed_as_its_command() -> None:
    executor = Recorder()
    executor.up(UP[:2])
    assert executor.log.getvalue() == "[#] wgpy wg0\n[#] echo pre\n"  # type: ignore[attr-defined]


def test_a_program_that_exits_after_up_ignores_signals_once_every_step_is_done() -> None:
    executor = Recorder()
    try:
        executor.up(UP, ignore_signals_after=True)
        assert signal.getsignal(signal.SIGINT) == signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert executor.done[-1] == "act"
