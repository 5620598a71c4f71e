"""Run the hardening areas and regenerate the figures table in docs/HARDENING.md.

    python -m benchmarks.hardening                 # every area, full size: about 90 minutes
    python -m benchmarks.hardening --short         # the CI-sized variants: a few minutes
    python -m benchmarks.hardening --only fuzz,flood --no-write
    python -m benchmarks.hardening --from-json soak.json   # a saved --json run's figures

Needs root and the tools scripts/install-deps installs. The table stands between the two FIGURES
markers of docs/HARDENING.md, a row per figure, each dated: the areas run replace their rows and
the other areas' rows stay. The rest of that page is prose kept by hand.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks.hardening import Figure

AREAS = ("fuzz", "flood", "faults", "soak", "secrets")
DOC = Path(__file__).resolve().parents[2] / "docs" / "HARDENING.md"
BEGIN, END = "<!-- FIGURES BEGIN -->", "<!-- FIGURES END -->"
HEADER = "| area | figure | value | held | promise | measured |\n|---|---|---|---|---|---|"


def run_areas(areas: list[str], short: bool) -> list[Figure]:
    figures: list[Figure] = []
    for area in areas:
        module = importlib.import_module(f"benchmarks.hardening.{area}")
        print(f"== {area}", file=sys.stderr, flush=True)
        figures += module.run(short=short)
    return figures


def rows(figures: list[Figure], short: bool) -> list[str]:
    measured = f"{datetime.date.today().isoformat()}, {'short' if short else 'full'}"
    return [f"{figure.as_row()} {measured} |" for figure in figures]


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
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.name}")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="the figures a --json run saved (add --short if it was)",
    )
    args = parser.parse_args(argv)
    areas = [area for area in args.only.split(",") if area]
    unknown = set(areas) - set(AREAS)
    if unknown:
        parser.error(f"unknown areas: {', '.join(sorted(unknown))}; known: {', '.join(AREAS)}")
    if args.from_json:
        figures = [Figure(**figure) for figure in json.loads(args.from_json.read_text())]
    else:
        figures = run_areas(areas, args.short)
    new_rows = rows(figures, args.short)
    print("\n".join([HEADER, *new_rows]))
    if args.json:
        args.json.write_text(json.dumps([asdict(figure) for figure in figures], indent=2) + "\n")
    if not args.no_write:
        write_doc({figure.area for figure in figures}, new_rows)
    return 0 if all(figure.held for figure in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
