"""Run the hardening areas and regenerate the figures table in docs/HARDENING.md.

    python -m benchmarks.hardening                 # every area, full size: about 90 minutes
    python -m benchmarks.hardening --short         # the CI-sized variants: a few minutes
    python -m benchmarks.hardening --only fuzz,flood --no-write
    python -m benchmarks.hardening --from-json soak.json   # a saved --json run's rows

Needs root and the tools scripts/install-deps installs. The table stands between the two FIGURES
markers of docs/HARDENING.md, a row per figure, each with the date it was measured, the variant
and the commit of the code measured (with "-dirty" if the checkout differed from it outside
docs/): the areas run replace their rows and the other areas' rows stay. Rows read back with
--from-json keep their own. The rest of that page is prose kept by hand.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.hardening import Figure

AREAS = ("fuzz", "flood", "admission", "faults", "soak", "secrets")
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "HARDENING.md"
BEGIN, END = "<!-- FIGURES BEGIN -->", "<!-- FIGURES END -->"
HEADER = "| area | figure | value | held | promise | measured |\n|---|---|---|---|---|---|"


@dataclass(frozen=True, slots=True)
class Row:
    """A figure and when, how and at which commit it was measured: one line of the table."""

    figure: Figure
    date: str  # ISO 8601
    variant: str  # "full" or "short"
    commit: str

    def markdown(self) -> str:
        return f"{self.figure.as_row()} {self.date}, {self.variant}, {self.commit} |"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> Row:
        return cls(**{**saved, "figure": Figure(**saved["figure"])})


def run_areas(areas: list[str], short: bool) -> list[Row]:
    commit, variant = measured_commit(), "short" if short else "full"
    rows: list[Row] = []
    for area in areas:
        module = importlib.import_module(f"benchmarks.hardening.{area}")
        print(f"== {area}", file=sys.stderr, flush=True)
        figures = module.run(short=short)
        date = datetime.date.today().isoformat()
        rows += [Row(figure, date, variant, commit) for figure in figures]
    return rows


def measured_commit(root: Path = ROOT) -> str:
    """The commit checked out at `root`, abbreviated, with "-dirty" if the files git tracks
    differ from it outside docs/ (where this table is written)."""
    commit = _git(root, "rev-parse", "--short=12", "HEAD")
    changed = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs")
    return f"{commit}-dirty" if changed else commit


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def merged_table(old: str, areas: set[str], new_rows: list[str]) -> str:
    """The table `old` with the rows of `areas` replaced by `new_rows`, in AREAS order."""
    kept = [
        row for row in old.splitlines()
        if row.startswith("| ") and not row.startswith("| area |") and _area(row) not in areas
    ]  # fmt: skip
    ordered = sorted(kept + new_rows, key=lambda row: AREAS.index(_area(row)))
    return "\n".join([HEADER, *ordered]) + "\n"


def _area(row: str) -> str:
    return row.split("|")[1].strip()


def write_doc(areas: set[str], new_rows: list[str], doc: Path = DOC) -> str:
    page = doc.read_text()
    head, begin, rest = page.partition(BEGIN)
    old, end, tail = rest.partition(END)
    if not (begin and end):
        raise SystemExit(f"{doc}: the {BEGIN} and {END} markers are missing")
    text = merged_table(old, areas, new_rows)
    doc.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hardening")
    parser.add_argument("--short", action="store_true", help="the CI-sized variants")
    parser.add_argument("--only", default=",".join(AREAS), help="comma-separated areas")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.name}")
    parser.add_argument(
        "--from-json", type=Path, help="the rows a --json run saved, instead of running"
    )
    args = parser.parse_args(argv)
    areas = [area for area in args.only.split(",") if area]
    unknown = set(areas) - set(AREAS)
    if unknown:
        parser.error(f"unknown areas: {', '.join(sorted(unknown))}; known: {', '.join(AREAS)}")
    if args.from_json:
        rows = [Row.from_json(saved) for saved in json.loads(args.from_json.read_text())]
    else:
        rows = run_areas(areas, args.short)
    lines = [row.markdown() for row in rows]
    print("\n".join([HEADER, *lines]))
    if args.json:
        args.json.write_text(json.dumps([row.to_json() for row in rows], indent=2) + "\n")
    if not args.no_write:
        write_doc({row.figure.area for row in rows}, lines)
    return 0 if all(row.figure.held for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
