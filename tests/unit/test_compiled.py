"""The compiled stack (wgpy/compiled.py) is its sources, compiled: a lossy exchange between two
stacks sends the same packets, byte for byte and at the same times, on either; and the stack runs
from its sources wherever the build is not of the sources beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wgpy import compiled

TESTS = Path(__file__).resolve().parents[1]


def transcript(pure: bool) -> list[str]:
    """tests/stack_transcript.py's lines, on the stack's sources or not: the stack that ran,
    then its digests."""
    env = {name: value for name, value in os.environ.items() if name != compiled.PURE_VARIABLE}
    env["PYTHONPATH"] = str(TESTS)
    if pure:
        env[compiled.PURE_VARIABLE] = "1"
    result = subprocess.run([sys.executable, str(TESTS / "stack_transcript.py")], env=env,
                            capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    return result.stdout.splitlines()


@pytest.mark.skipif(bool(compiled.unusable()), reason=f"the stack is {compiled.unusable()} here "
                    "(scripts/install-deps builds it)")  # fmt: skip
def test_the_compiled_stack_and_its_sources_send_the_same_packets() -> None:
    built, sources = transcript(pure=False), transcript(pure=True)
    assert built[0] == "compiled (mypyc)"
    assert sources[0] == f"pure Python ({compiled.PURE_VARIABLE} is set)"
    assert built[1:] == sources[1:]


def built_beside(directory: Path, names: list[str]) -> None:
    """Sources `names` in `directory`, with what a build of them leaves: the group's library
    and an extension for each."""
    for name in names:
        (directory / name).write_text(f"# {name}\n")
        (directory / name).with_suffix(compiled.EXTENSION_SUFFIX).write_bytes(b"")
    (directory / compiled.library(directory)).write_bytes(b"")


def test_the_extensions_are_used_only_where_built_from_the_sources_beside_them(
    tmp_path: Path,
) -> None:
    assert compiled.unusable(tmp_path) == "not compiled"
    built_beside(tmp_path, ["__init__.py", "dns.py", "ip.py", "tcp.py"])
    assert compiled.unusable(tmp_path) == ""
    (tmp_path / "tcp.py").write_text("# tcp.py, edited\n")
    assert compiled.unusable(tmp_path) == "compiled from other sources"
    (tmp_path / "tcp.py").write_text("# tcp.py\n")
    (tmp_path / "udp.py").write_text("# a module added since\n")
    assert compiled.unusable(tmp_path) == "compiled from other sources"
    (tmp_path / "udp.py").unlink()
    (tmp_path / "ip.py").with_suffix(compiled.EXTENSION_SUFFIX).unlink()
    assert compiled.unusable(tmp_path) == "ip.py not compiled"


def test_the_package_s_own_module_and_the_dns_stub_are_never_compiled(tmp_path: Path) -> None:
    for name in ("__init__.py", "dns.py", "stack.py"):
        (tmp_path / name).write_text("")
    assert [source.name for source in compiled.sources(tmp_path)] == ["stack.py"]
