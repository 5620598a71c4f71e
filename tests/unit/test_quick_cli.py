"""The wgpy-quick command line: arguments, files, and bad input refused before anything changes.

None of these tests may reach the host's network: the CLI's netlink socket is replaced by one
that fails the test if it is ever opened.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pyroute2
import pytest

from wgpy import __version__, resolver
from wgpy import config as wgconfig
from wgpy.cli import quick
from wgpy.quick import QuickError, configfile
from wgpy.resolver import ResolutionError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SERVER_KEY = "hpVWQU+/sVq3wjDycxiVWgoadwkYVoumsYjjMDcal1w="
PRIVATE_KEY = "KGg6uZuejMxXWv9DDedoOgcgrgw8WpGB3WTHLSotkm8="


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        pytest.fail("wgpy-quick opened a netlink socket")

    monkeypatch.setattr(pyroute2, "IPRoute", refuse)


def write(directory: Path, name: str, text: str, mode: int = 0o600) -> Path:
    directory.chmod(0o700)
    path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_help_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert quick.main(["--help"]) == 0
    assert capsys.readouterr().err.startswith("Usage: wgpy-quick [ up | down | save | strip ]")


@pytest.mark.parametrize("argv", [[], ["up"], ["bounce", "wg0"], ["up", "wg0", "wg1"]])
def test_anything_else_prints_the_usage_and_fails(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert quick.main(argv) == 1
    assert capsys.readouterr().err.startswith("Usage: wgpy-quick")


def test_strip_prints_only_what_wg_understands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "wg0.conf", (CONFIGS / "client-full.conf").read_text())
    assert quick.main(["strip", str(path)]) == 0
    stripped = capsys.readouterr().out
    assert stripped == wgconfig.strip(wgconfig.load(path))
    assert "Address" not in stripped and "DNS" not in stripped
    assert wgconfig.parse(stripped).peers == wgconfig.load(path).peers


def config_with(*lines: str, peers: int = 1) -> str:
    peer = f"\n[Peer]\nPublicKey = {SERVER_KEY}\nAllowedIPs = 198.19.8.0/24\n"
    return "[Interface]\n" + "".join(f"{line}\n" for line in lines) + peer * peers


BAD_INPUTS = {
    "an unknown key": (config_with(f"PrivateKey = {PRIVATE_KEY}", "Color = blue"), 3, "Color"),
    "a bad key": (config_with("PrivateKey = c2hvcnQ="), 2, "PrivateKey"),
    "a bad CIDR": (
        config_with(f"PrivateKey = {PRIVATE_KEY}", "Address = 198.19.8.2/40"),
        3,
        "Address",
    ),
    "a bad endpoint": (
        config_with(f"PrivateKey = {PRIVATE_KEY}") + "Endpoint = 192.0.2.1\n",
        7,
        "Endpoint",
    ),
    "a duplicate peer": (config_with(f"PrivateKey = {PRIVATE_KEY}", peers=2), 9, "PublicKey"),
}


@pytest.mark.parametrize("text, line, key", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_up_refuses_bad_input_naming_file_line_and_key(
    text: str, line: int, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "wg0.conf", text)
    assert quick.main(["up", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"wgpy-quick: {path}:{line}: {key}: ")


def test_an_endpoint_that_does_not_resolve_is_refused_naming_file_line_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unknown(host: str, port: int) -> tuple[str, int]:
        raise ResolutionError(f"Name or service not known: `{host}:{port}'")

    monkeypatch.setattr(resolver, "resolve", unknown)
    text = config_with(f"PrivateKey = {PRIVATE_KEY}") + "Endpoint = vpn.example.com:51820\n"
    path = write(tmp_path, "wg0.conf", text)
    assert quick.main(["up", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"wgpy-quick: {path}:{text.count(chr(10))}: Endpoint: Name or service not known:"
        " `vpn.example.com:51820'\n"
    )


@pytest.mark.parametrize("retries, tries", [("0", 1), ("2", 3)])
def test_up_tries_a_name_as_often_as_wg_endpoint_resolution_retries_says(
    retries: str,
    tries: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    asked: list[str] = []
    getaddrinfo = socket.getaddrinfo  # wg reads a port with it too: those go through

    def unreachable_dns(host: str | None, *args: Any) -> Any:
        if host is None:
            return getaddrinfo(host, *args)
        asked.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", unreachable_dns)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", retries)
    text = config_with(f"PrivateKey = {PRIVATE_KEY}") + "Endpoint = vpn.example.com:51820\n"
    path = write(tmp_path, "wg0.conf", text)
    assert quick.main(["up", str(path)]) == 1
    assert asked == ["vpn.example.com"] * tries
    err = capsys.readouterr().err
    assert err.count("Trying again in") == tries - 1
    assert err.endswith(
        f"wgpy-quick: {path}:{text.count(chr(10))}: Endpoint: Temporary failure in name"
        " resolution: `vpn.example.com:51820'\n"
    )


def test_a_missing_file_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert quick.main(["up", "/nonexistent/wg0.conf"]) == 1
    assert capsys.readouterr().err == "wgpy-quick: `/nonexistent/wg0.conf' does not exist\n"


FILE_NAMES = {
    "wg 0.conf": ": `wg 0' has a character other than a-z A-Z 0-9 _ = + . -",
    "sixteen-chars-ab.conf": ": `sixteen-chars-ab' has 16 characters, an interface name at most 15",
    "wg0.cfg": "",
}


@pytest.mark.parametrize("name, why", FILE_NAMES.items(), ids=FILE_NAMES.keys())
def test_the_file_name_must_be_an_interface_name_and_conf_and_the_error_says_why(
    name: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, name, config_with(f"PrivateKey = {PRIVATE_KEY}"))
    assert quick.main(["strip", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"wgpy-quick: The config file must be a valid interface name, followed by .conf{why}\n"
    )


def test_a_file_that_cannot_be_read_is_named_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wg0.conf"
    path.mkdir()  # unreadable as a file even by root
    assert quick.main(["strip", str(path)]) == 1
    assert capsys.readouterr().err == f"wgpy-quick: {path}: Is a directory\n"


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert quick.main(["--version"]) == 0
    assert capsys.readouterr().out == f"wgpy-quick {__version__}\n"


def test_a_file_others_can_read_gets_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "wg0.conf", config_with(f"PrivateKey = {PRIVATE_KEY}"), mode=0o644)
    tmp_path.chmod(0o755)
    assert quick.main(["strip", str(path)]) == 0
    assert capsys.readouterr().err == f"Warning: `{path}' is world accessible\n"


def test_a_private_file_or_a_private_directory_gets_none(tmp_path: Path) -> None:
    private = write(tmp_path, "wg0.conf", "", mode=0o600)
    tmp_path.chmod(0o755)
    assert not configfile.world_accessible(private)
    readable = write(tmp_path, "wg1.conf", "", mode=0o644)  # in a directory only root enters
    assert not configfile.world_accessible(readable)


def test_a_bare_name_means_a_file_in_the_config_directory(tmp_path: Path) -> None:
    path = write(tmp_path, "wg0.conf", "")
    assert configfile.locate("wg0", config_dir=tmp_path) == (path.resolve(), "wg0")


def test_the_interface_is_named_after_the_link_not_its_target(tmp_path: Path) -> None:
    target = write(tmp_path, "target.conf", "")
    (tmp_path / "wg1.conf").symlink_to(target)
    assert configfile.locate(str(tmp_path / "wg1.conf")) == (target.resolve(), "wg1")


def test_an_unknown_bare_name_is_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(QuickError, match=r"^`.*/wg9.conf' does not exist$"):
        configfile.locate("wg9", config_dir=tmp_path)


def test_a_saved_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    path = write(tmp_path, "wg0.conf", "old\n", mode=0o644)
    old_umask = os.umask(0)
    try:
        configfile.write_atomically(path, "[Interface]\n")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "[Interface]\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [path]
