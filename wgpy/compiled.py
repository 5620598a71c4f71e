"""wgpy's two compiled parts, each held to the pure-Python code it was made from: the data path's
accelerator (wgpy/io/accel.py) and the user-space stack compiled by mypyc. WGPY_PURE=1 turns
both off.

The stack's modules (wgpy/netstack, but for the DNS stub) are built by setup.py as C extensions
beside their sources, from those very sources: the same code, about twice as fast, and what a
connect through `wgpy proxy` waits on (issue 17). Python would import a module's extension
before its source, so a finder ahead of Python's decides for the whole package, once, as the
first of its modules is imported: the extensions where they were built from the sources beside
them, or else (or with WGPY_PURE set) every module from its source. An edited checkout thus
runs what it holds, never a stale build. setup.py names the modules' shared library for a
digest of the sources it compiles (`group`), so the library's presence says what it was built
from.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

PURE_VARIABLE: Final = "WGPY_PURE"
STACK: Final = "wgpy.netstack"
# The stack's modules left to Python: the package's, and the DNS stub, which calls dnspython (not
# in a build's isolated environment) and is off the per-packet path.
UNCOMPILED: Final = frozenset({"__init__.py", "dns.py"})
EXTENSION_SUFFIX: Final = importlib.machinery.EXTENSION_SUFFIXES[0]
_STACK_DIRECTORY: Final = Path(__file__).parent / "netstack"


def pure_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(PURE_VARIABLE, "") in ("1", "true", "yes")


def sources(directory: Path = _STACK_DIRECTORY) -> list[Path]:
    """The stack's sources that setup.py compiles."""
    return sorted(p for p in directory.glob("*.py") if p.name not in UNCOMPILED)


def group(directory: Path = _STACK_DIRECTORY) -> str:
    """The name of the shared library that a build of the sources in `directory` makes (mypyc's
    group): the package's, with 16 hex digits of the sources' SHA-256."""
    digest = hashlib.sha256()
    for source in sources(directory):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return f"{STACK}._compiled_{digest.hexdigest()[:16]}"


def library(directory: Path = _STACK_DIRECTORY) -> str:
    """The file that shared library is, in `directory`, once built (mypyc's name for it)."""
    return group(directory).rpartition(".")[2] + "__mypyc" + EXTENSION_SUFFIX


def unusable(directory: Path = _STACK_DIRECTORY) -> str:
    """Why the extensions in `directory` are not to be used; empty when they are."""
    if not (directory / library(directory)).exists():
        built = any(directory.glob("_compiled_*__mypyc" + EXTENSION_SUFFIX))
        return "compiled from other sources" if built else "not compiled"
    missing = [s.name for s in sources(directory) if not s.with_suffix(EXTENSION_SUFFIX).exists()]
    return f"{missing[0]} not compiled" if missing else ""


def stack_path() -> str:
    """Which stack is in use and why, for `wgpy --version`."""
    return _FINDER.choice()[1]


class _StackFinder(importlib.abc.MetaPathFinder):
    """Finds the stack's modules as their sources where the extensions are not to be used, and
    leaves them to Python's finders where they are."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._choice: tuple[bool, str] | None = None

    def choice(self) -> tuple[bool, str]:
        """(whether the extensions are used, what is used and why), decided on first call."""
        if self._choice is None:
            why = f"{PURE_VARIABLE} is set" if pure_wanted() else unusable(self.directory)
            self._choice = (False, f"pure Python ({why})") if why else (True, "compiled (mypyc)")
        return self._choice

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != STACK or self.choice()[0]:
            return None
        source = self.directory / f"{name}.py"
        return (
            importlib.util.spec_from_file_location(fullname, source) if source.is_file() else None
        )


_FINDER: Final = _StackFinder(_STACK_DIRECTORY)


def install() -> None:
    """Put the stack's finder ahead of Python's (wgpy/__init__.py, once)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
