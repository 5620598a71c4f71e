"""docs/HARDENING.md's table (benchmarks/hardening/__main__.py): every row says when, how and at
which commit it was measured, and keeps that when it is read back from a saved run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks.hardening import Figure
from benchmarks.hardening.__main__ import HEADER, Row, main, measured_commit, merged_table

SAVED = Row(Figure("soak", "bytes moved", "10 GiB", True, "arrives whole"), "2026-11-25", "full",
            "0123456789ab")  # fmt: skip


def test_a_row_shows_its_date_variant_and_commit() -> None:
    assert SAVED.markdown() == (
        "| soak | bytes moved | 10 GiB | yes | arrives whole | 2026-11-25, full, 0123456789ab |"
    )


def test_rows_read_back_from_json_keep_their_own_date_and_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved, again = tmp_path / "saved.json", tmp_path / "again.json"
    saved.write_text(json.dumps([SAVED.to_json()]))

    status = main(["--from-json", str(saved), "--json", str(again), "--no-write"])

    assert status == 0
    assert SAVED.markdown() in capsys.readouterr().out.splitlines()
    assert [Row.from_json(row) for row in json.loads(again.read_text())] == [SAVED]


def test_the_areas_run_replace_their_rows_and_the_others_stay() -> None:
    old = "\n".join([HEADER, _row("fuzz", "old"), _row("soak", "kept"), _row("flood", "old")])

    table = merged_table(old, {"fuzz", "flood"}, [_row("flood", "new"), _row("fuzz", "new")])

    assert table.splitlines()[2:] == [
        _row("fuzz", "new"),
        _row("flood", "new"),
        _row("soak", "kept"),
    ]


def test_the_commit_is_the_checkouts_and_dirty_when_code_differs_from_it(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    for path in ("wgpy/device.py", "docs/HARDENING.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("first\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = _git(tmp_path, "rev-parse", "--short=12", "HEAD")

    (tmp_path / "docs/HARDENING.md").write_text("a table written by the run\n")
    assert measured_commit(tmp_path) == head
    (tmp_path / "wgpy/device.py").write_text("changed\n")
    assert measured_commit(tmp_path) == f"{head}-dirty"


def _row(area: str, value: str) -> str:
    return Row(Figure(area, "a figure", value, True), "2026-12-01", "full", "c0ffee").markdown()


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()
