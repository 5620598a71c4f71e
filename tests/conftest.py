"""What a skip means depends on where the suite runs.

On a developer's machine a test that lacks root, a tool or a device skips, saying what it needs.
In CI (the environment variable CI set to true, as .ci/run and the usual CI services set it) the
machine is meant to have everything, so nothing may be skipped: a test's skip is reported as its
failure, with the skip's reason, and a run that skipped anything else (a whole module, at
collection) exits 1. An expected failure (xfail) is not a skip and stays as it is.

Hypothesis runs without its per-example deadline: that is a timing assertion, and speed belongs
to the benchmarks. On the shared VM measured, one example of the accelerator's segmentation took
254 ms once and 0.2 ms when Hypothesis ran it again, which fails a test for nothing it checks.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from hypothesis import settings

CI_VARIABLE = "CI"

settings.register_profile("wgpy", deadline=None)
settings.load_profile("wgpy")


def in_ci() -> bool:
    return os.environ.get(CI_VARIABLE, "").lower() in {"1", "true", "yes"}


def pytest_configure(config: pytest.Config) -> None:
    if in_ci():
        config.pluginmanager.register(NothingSkipped(), "wgpy-nothing-skipped-in-ci")


class NothingSkipped:
    """The hooks that hold a run in CI to skipping nothing."""

    def __init__(self) -> None:
        self.skipped_at_collection: list[str] = []

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.skipped and not hasattr(report, "wasxfail"):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where nothing may be: {_reason(report)}"
        return report

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:
            self.skipped_at_collection.append(f"{report.nodeid}: {_reason(report)}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # pytest exits 0 with skips; any other status already says that something went wrong.
        if self.skipped_at_collection and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.skipped_at_collection:
            terminalreporter.section("skipped in CI, where nothing may be")
            for line in self.skipped_at_collection:
                terminalreporter.line(line)


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """A skip's reason: pytest keeps a skip's longrepr as (path, line, "Skipped: reason")."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")
