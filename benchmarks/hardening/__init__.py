"""Hardening runs (issue 8): each area module measures one promise and returns its figures.

Every area module has `run(short: bool) -> list[Figure]`. `short=True` is the variant the test suite
runs in CI (a minute or less); `short=False` is the full run whose figures go into
docs/HARDENING.md. `python -m benchmarks.hardening` runs them and regenerates that table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure and whether the promise it stands for held."""

    area: str  # "fuzz", "flood", "admission", "faults", "soak", "secrets"
    name: str  # what was measured, e.g. "datagrams sent"
    value: str  # the figure as it should read in the table, units included
    held: bool  # the promise behind the figure held in this run
    note: str = ""  # the promise, or how the figure was taken

    def as_row(self) -> str:
        verdict = "yes" if self.held else "**NO**"
        return f"| {self.area} | {self.name} | {self.value} | {verdict} | {self.note} |"
