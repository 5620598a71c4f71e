"""The `wgpy` command line: wireguard-go's contract (any name is an interface's), without taking
a mistyped command or option for one silently."""

from __future__ import annotations

import io
import os
import sys

import pytest

from wgpy.cli import STANDBY_VARIABLE, daemon, wgpy


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argument lists `wgpy` passed on to start an interface (none is started)."""
    calls: list[list[str]] = []

    def run(argv: list[str]) -> int:
        calls.append(argv)
        return 0

    monkeypatch.setattr(daemon, "run", run)
    return calls


@pytest.mark.parametrize(
    "argv", [["-v"], ["--bogus"], ["-f", "-v"], ["--foreground", "--debug"], ["wg0", "-v"]]
)
def test_an_unknown_option_is_refused_and_starts_nothing(
    argv: list[str], started: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert wgpy.main(argv) == 1
    assert capsys.readouterr().err.startswith(f"wgpy: unknown option `{argv[-1]}'\nUsage: wgpy")
    assert started == []


@pytest.mark.parametrize(
    "name, command", [("gnekey", "genkey"), ("genke", "genkey"), ("shwo", "show"), ("dem", "demo")]
)
def test_a_name_one_edit_from_a_command_is_still_an_interface_with_a_warning(
    name: str, command: str, started: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert wgpy.main([name]) == 0
    assert started == [[name]]
    assert capsys.readouterr().err == (
        f"wgpy: `{name}' is taken as an interface name; did you mean {command}?\n"
    )


@pytest.mark.parametrize(
    "argv", [["bogus"], ["wg0"], ["-f", "wg0"], ["--foreground", "tun1"], ["-f"], ["a", "b"]]
)
def test_any_other_name_is_an_interface_as_wireguard_go_has_it(
    argv: list[str], started: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert wgpy.main(argv) == 0
    assert started == [argv]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "a, b, apart",
    [
        ("genkey", "genkey", False),
        ("gnekey", "genkey", True),  # neighbours swapped
        ("genkex", "genkey", True),  # one substituted
        ("genke", "genkey", True),  # one deleted
        ("genkeys", "genkey", True),  # one inserted
        ("xgenkey", "genkey", True),
        ("egnkye", "genkey", False),  # two swaps
        ("gkeney", "genkey", False),
        ("set", "show", False),
        ("", "set", False),
    ],
)
def test_one_edit_apart_is_a_single_insertion_deletion_substitution_or_swap(
    a: str, b: str, apart: bool
) -> None:
    assert wgpy.one_edit_apart(a, b) is apart
    assert wgpy.one_edit_apart(b, a) is apart


def test_an_interface_name_over_15_bytes_names_the_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert daemon.run(["sixteen-chars-ab"]) == 1
    assert capsys.readouterr().err == (
        "wgpy: invalid interface name 'sixteen-chars-ab': 16 bytes long,"
        " an interface name at most 15\n"
    )


@pytest.mark.parametrize("said, starts", [(b"", False), (b"stop\n", False), (b"start\n", True)])
def test_a_standby_starts_only_when_wgpy_quick_says_start(
    said: bytes, starts: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr(daemon, "_daemonize", lambda name, *rest: started.append(name) or 0)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(said)))
    monkeypatch.setenv(STANDBY_VARIABLE, "1")
    assert daemon.run(["wg0"]) == 0
    assert started == (["wg0"] if starts else [])
    assert STANDBY_VARIABLE not in os.environ  # nothing the daemon runs inherits it


def test_a_bad_busy_poll_window_is_refused_before_any_interface_is_made(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WGPY_BUSY_POLL", "soon")
    monkeypatch.setattr(daemon, "open_tun", lambda *args: pytest.fail("an interface was made"))
    assert daemon.run(["-f", "wg0"]) == 1
    assert capsys.readouterr().err == (
        "wgpy: WGPY_BUSY_POLL='soon': not microseconds from 0 to 1000000\n"
    )
