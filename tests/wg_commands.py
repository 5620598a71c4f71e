"""wg(8)'s commands run two ways, to compare them: wgpy's in this process, and /usr/bin/wg."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from wgpy.cli import wg

Result = tuple[int, str, str]  # exit status, stdout, stderr


def in_process(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Runs `wgpy COMMAND ARGS...` in this process, as the `wgpy` fixtures do."""

    def run(command: str, *args: str) -> Result:
        status = wg.run(command, list(args))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def wg_tool(*args: str) -> Result:
    result = subprocess.run(["wg", *args], capture_output=True, text=True, timeout=30, check=False)
    return result.returncode, result.stdout, result.stderr


def write_file(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)
