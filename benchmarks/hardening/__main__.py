"""Run the hardening areas and regenerate the figures table in docs/HARDENING.md.

    python -m benchmarks.hardening                 # every area, full size: about 90 minutes
    python -m benchmarks.hardening --short         # the CI-sized variants: a few minutes
    python -m benchmarks.hardening --only fuzz,flood --no-write

Needs root and the tools scripts/install-deps installs. The table replaces what stands between
the two FIGURES markers of docs/HARDENING.md; the rest of that page is prose kept by hand.
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
HEADER = "| area | figure | value | held | promise |\n|---|---|---|---|---|"


def run_areas(areas: list[str], short: bool) -> list[Figure]:
    figures: list[Figure] = []
    for area in areas:
        module = importlib.import_module(f"benchmarks.hardening.{area}")
        print(f"== {area}", file=sys.stderr, flush=True)
        figures += module.run(short=short)
    return figures


def table(figures: list[Figure], short: bool) -> str:
    stamp = datetime.date.today().isoformat()
    size = "short (CI) variants" if short else "full runs"
    rows = "\n".join(figure.as_row() for figure in figures)
    return f"Measured {stamp}, {size}, by `python -m benchmarks.hardening`.\n\n{HEADER}\n{rows}\n"


def write_doc(text: str, doc: Path = DOC) -> None:
    page = doc.read_text()
    head, begin, rest = page.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not (begin and end):
        raise SystemExit(f"{doc}: the {BEGIN} and {END} markers are missing")
    doc.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hardening")
    parser.add_argument("--short", action="store_true", help="the CI-sized variants")
    parser.add_argument("--only", default=",".join(AREAS), help="comma-separated areas")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.name}")
    args = parser.parse_args(argv)
    areas = [area for area in args.only.split(",") if area]
    unknown = set(areas) - set(AREAS)
    if unknown:
        parser.error(f"unknown areas: {', '.join(sorted(unknown))}; known: {', '.join(AREAS)}")
    figures = run_areas(areas, args.short)
    text = table(figures, args.short)
    print(text)
    if args.json:
        args.json.write_text(json.dumps([asdict(figure) for figure in figures], indent=2) + "\n")
    if not args.no_write:
        write_doc(text)
    return 0 if all(figure.held for figure in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
