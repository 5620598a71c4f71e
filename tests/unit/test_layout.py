"""The layout holds: the protocol core stays pure, mypy checks it strictly, and the namespace tests
keep to their room. The rules read the sources with `ast`, and a breach fails naming its file, its
line and the import or use that breaks the rule.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "wgpy" / "core"
CORE_MODULES = sorted(CORE.rglob("*.py"))
# The user-space network stack keeps the core's rules, and may build on the core.
NETSTACK_MODULES = sorted((ROOT / "wgpy" / "netstack").rglob("*.py"))
PURE_MODULES = CORE_MODULES + NETSTACK_MODULES

# What a core module may not import, and why: each reaches outside the process, waits, or reads
# a clock or the system's randomness. The edges in wgpy.io do that, and pass the core `now`,
# `wall` and `rng`.
IMPURE = {
    "asyncio": "waits on I/O",
    "ctypes": "calls into C",
    "datetime": "reads the clock",
    "os": "reads the environment and files",
    "secrets": "draws the system's randomness",
    "select": "waits on I/O",
    "selectors": "waits on I/O",
    "signal": "handles signals",
    "socket": "opens sockets",
    "subprocess": "starts processes",
    "threading": "starts threads",
    "time": "reads the clock",
}
# The only parts of wgpy the core may import: itself, and the one exception hierarchy.
WGPY_ALLOWED = ("wgpy.core", "wgpy.errors")
NETSTACK_ALLOWED = (*WGPY_ALLOWED, "wgpy.netstack")
NAMESPACE_FIXTURES = ("netns", "netns_pair")  # tests/netns/conftest.py


def imported(path: Path) -> Iterator[tuple[str, ast.stmt]]:
    """Each module the file at `path` imports, absolute, with its import statement; a name taken
    from a module counts as the submodule it may be (`from wgpy import uapi` is wgpy.uapi)."""
    package = ".".join(path.relative_to(ROOT).parent.parts)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            for alias in node.names:
                yield f"{module}.{alias.name}", node


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}: {ast.unparse(node)}"


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def test_the_core_has_modules_to_check() -> None:
    assert {path.stem for path in CORE_MODULES} >= {"device", "handshake", "ippacket", "timers"}


def test_no_core_module_imports_what_reaches_outside_the_process_or_reads_a_clock() -> None:
    """Rule: a core module imports none of IMPURE (DESIGN.md, habit 1: time and randomness are
    passed in). A module that needs one of them belongs in wgpy.io."""
    breaches = [
        f"{where(path, node)} ({IMPURE[top]})"
        for path in PURE_MODULES
        for name, node in imported(path)
        if (top := name.partition(".")[0]) in IMPURE
    ]
    assert not breaches, "\n".join(breaches)


def test_no_core_module_imports_a_part_of_wgpy_outside_the_core_but_its_errors() -> None:
    """Rule: the core imports from wgpy only wgpy.core and wgpy.errors; the edges (wgpy.io),
    the formats, the commands and the lab build on the core, never the other way round."""
    breaches = wgpy_imports_outside(CORE_MODULES, WGPY_ALLOWED)
    assert not breaches, "\n".join(breaches)


def test_no_netstack_module_imports_a_part_of_wgpy_but_the_netstack_the_core_and_errors() -> None:
    """Rule: the stack is as pure as the core and sits beside it: wgpy.tunnel drives it, never
    the other way round."""
    breaches = wgpy_imports_outside(NETSTACK_MODULES, NETSTACK_ALLOWED)
    assert not breaches, "\n".join(breaches)


def wgpy_imports_outside(modules: list[Path], allowed: tuple[str, ...]) -> list[str]:
    """Where `modules` import a part of wgpy that is none of `allowed`."""
    return [
        where(path, node)
        for path in modules
        for name, node in imported(path)
        if within(name, "wgpy") and not any(within(name, package) for package in allowed)
    ]


def test_the_core_draws_on_random_only_through_a_generator_given_a_seed() -> None:
    """Rule: `random` appears only as `random.Random(seed)`. The device seeds its timers' jitter
    from the `rng` it is given, so a run replays; the module's own functions and an unseeded
    Random draw on the system's randomness or the clock."""
    breaches = [
        where(path, node)
        for path in PURE_MODULES
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if _draws_unseeded(node)
    ]
    assert not breaches, "\n".join(breaches)


def _draws_unseeded(node: ast.AST) -> bool:
    """`from random import ...`, `random` renamed (which would hide its uses from this check),
    `random.` anything but Random, or `random.Random()` unseeded."""
    if isinstance(node, ast.ImportFrom):
        return node.module == "random"
    if isinstance(node, ast.Import):
        return any(alias.name == "random" and alias.asname for alias in node.names)
    if isinstance(node, ast.Attribute) and _is_name(node.value, "random"):
        return node.attr != "Random"
    if isinstance(node, ast.Call) and _is_random_random(node.func):
        return not (node.args or node.keywords)
    return False


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _is_random_random(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute) and node.attr == "Random" and _is_name(node.value, "random")
    )


def test_mypy_checks_every_core_module_strictly() -> None:
    overrides = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    strict = set()
    for override in overrides:
        if override.get("strict"):
            modules = override["module"]  # one pattern, or a list of them
            strict |= {modules} if isinstance(modules, str) else set(modules)
    assert {"wgpy.core.*", "wgpy.netstack.*"} <= strict


def test_no_unit_test_asks_for_a_namespace() -> None:
    """Rule: tests/unit runs in process, without root: no test there carries the netns marker or
    takes the netns or netns_pair fixture. Such a test belongs in tests/netns."""
    breaches = [
        where(path, node)
        for path in sorted((ROOT / "tests" / "unit").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if _is_netns_mark(node) or (isinstance(node, ast.arg) and node.arg in NAMESPACE_FIXTURES)
    ]
    assert not breaches, "\n".join(breaches)


def _is_netns_mark(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "netns"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "mark"
    )
