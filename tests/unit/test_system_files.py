"""`wgpy install-files` installs systemd units that systemd accepts and that mirror Debian's
wg-quick@.service, man pages that man renders without a warning, and bash completions that offer
the commands, options and interfaces, as wireguard-tools' do for wg and wg-quick."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import systemd_units

from wgpy import system_files
from wgpy.cli import wg
from wgpy.cli import wgpy as wgpy_cli

WGPY = [sys.executable, "-m", "wgpy.cli.wgpy"]
PREFIX = Path("/usr/local")
DEBIAN_WG_QUICK_UNIT = Path("/lib/systemd/system/wg-quick@.service")
# The commands `wgpy --help` lists (IFNAME and --version aside), wg's first.
LISTED = re.findall(r"^  ([a-z][\w-]*)", wgpy_cli.USAGE, re.MULTILINE)
WGPY_COMMANDS = [*wg.COMMANDS, *(command for command in LISTED if command not in wg.COMMANDS)]


def needs(*tools: str) -> pytest.MarkDecorator:
    absent = [tool for tool in tools if shutil.which(tool) is None]
    return pytest.mark.skipif(bool(absent), reason=f"needs {absent} (scripts/install-deps)")


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    """A staging root where `wgpy install-files --destdir` has installed everything."""
    install_files("--destdir", str(tmp_path))
    return tmp_path


def install_files(*args: str) -> list[str]:
    result = subprocess.run([*WGPY, "install-files", *args], capture_output=True, text=True,
                            timeout=30, check=True)  # fmt: skip
    assert result.stderr == ""
    return result.stdout.splitlines()


def installed(root: Path, target: str) -> Path:
    return root / PREFIX.relative_to("/") / target


# Installing ---------------------------------------------------------------------------------------


def test_install_files_puts_each_file_where_its_consumer_looks_and_uninstall_removes_them(
    tmp_path: Path,
) -> None:
    out = install_files("--destdir", str(tmp_path))
    paths = [installed(tmp_path, file.target) for file in system_files.FILES]
    assert out[: len(paths)] == [f"installed {path}" for path in paths]
    assert out[-1].startswith("Then: systemctl daemon-reload")
    for file, path in zip(system_files.FILES, paths, strict=True):
        assert path.read_text() == system_files.rendered(file, system_files.commands_directory())
        assert path.stat().st_mode & 0o777 == 0o644

    assert install_files("--destdir", str(tmp_path), "--uninstall") == [
        f"removed {path}" for path in paths
    ]
    assert not [path for path in paths if path.exists()]


def test_the_units_run_the_commands_of_this_installation_by_absolute_path(staged: Path) -> None:
    bindir = system_files.commands_directory()
    assert (bindir / "wgpy-quick").is_file()
    for file in system_files.FILES:
        text = installed(staged, file.target).read_text()
        assert system_files.BINDIR_PLACEHOLDER not in text
        commands = re.findall(r"^Exec\w+=(?:/bin/bash -c 'exec )?(\S+)", text, re.MULTILINE)
        assert all(command.startswith(f"{bindir}/wgpy") for command in commands), commands


def test_install_files_names_a_destination_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "usr").write_text("a file where a directory should be")
    result = subprocess.run([*WGPY, "install-files", "--destdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 1
    systemd_dir = installed(tmp_path, "lib/systemd/system")
    assert result.stderr == f"wgpy install-files: {systemd_dir}: Not a directory\n"


# systemd ------------------------------------------------------------------------------------------


@needs("systemd-analyze", "man")
@pytest.mark.parametrize("unit", ["wgpy-quick@wg0.service", "wgpy@wg0.service",
                                  "wgpy-quick.target"])  # fmt: skip
def test_systemd_analyze_verify_accepts_the_units(unit: str, staged: Path) -> None:
    units = installed(staged, "lib/systemd/system")
    # The trailing colon keeps man's own path, for the wg(8) and wg-quick(8) the units cite.
    env = {**os.environ, "MANPATH": f"{installed(staged, 'share/man')}:"}
    result = subprocess.run(["systemd-analyze", "verify", "--man=yes", str(units / unit)],
                            capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.skipif(not DEBIAN_WG_QUICK_UNIT.exists(), reason="needs wireguard-tools")
def test_wgpy_quick_service_is_debians_wg_quick_service_with_wgpy_quick(staged: Path) -> None:
    bindir = system_files.commands_directory()
    debian = systemd_units.sections(DEBIAN_WG_QUICK_UNIT.read_text()
                   .replace("/usr/bin/wg-quick", f"{bindir}/wgpy-quick")
                   .replace("/usr/bin/wg ", f"{bindir}/wgpy ")
                   .replace("wg-quick", "wgpy-quick"))  # fmt: skip
    ours = systemd_units.sections(
        installed(staged, "lib/systemd/system/wgpy-quick@.service").read_text()
    )
    assert ours["Service"] == debian["Service"]
    assert ours["Install"] == debian["Install"]
    unit_semantics = ("After", "Wants", "PartOf", "Description")
    assert {key: ours["Unit"][key] for key in unit_semantics} == {
        key: debian["Unit"][key] for key in unit_semantics
    }


def test_wgpy_service_configures_the_daemon_from_etc_wireguard(staged: Path) -> None:
    bindir = system_files.commands_directory()
    service = systemd_units.sections(
        installed(staged, "lib/systemd/system/wgpy@.service").read_text()
    )["Service"]
    assert service["Type"] == ["forking"], "`wgpy IFNAME` returns once the socket exists"
    assert service["ExecStart"] == [f"{bindir}/wgpy %i"]
    assert service["ExecStartPost"] == [f"{bindir}/wgpy setconf %i /etc/wireguard/%i.conf"]
    assert service["ExecReload"] == [f"{bindir}/wgpy syncconf %i /etc/wireguard/%i.conf"]
    assert service["Environment"] == ["WG_ENDPOINT_RESOLUTION_RETRIES=infinity"]


# Man pages ----------------------------------------------------------------------------------------


def render(page: Path) -> str:
    env = {**os.environ, "MANWIDTH": "100"}
    result = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                            text=True, timeout=30, env=env)  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout


@needs("man", "groff")
def test_wgpy_8_renders_and_documents_every_command(staged: Path) -> None:
    text = render(installed(staged, "share/man/man8/wgpy.8"))
    assert text.startswith("WGPY(8)")
    assert "wgpy - run and configure WireGuard interfaces in user space" in text
    commands = text.split("\nCOMMANDS\n")[1].split("\nENVIRONMENT\n")[0]
    assert not [command for command in WGPY_COMMANDS if not re.search(rf"\b{command}\b", commands)]
    for variable in ("LOG_LEVEL", "WGPY_UNDER_LOAD_THRESHOLD", "WGPY_RUN_DIR"):
        assert variable in text


@needs("man", "groff")
def test_wgpy_quick_8_renders_as_wg_quick_8_does(staged: Path) -> None:
    text = render(installed(staged, "share/man/man8/wgpy-quick.8"))
    assert text.startswith("WGPY-QUICK(8)")
    assert "wgpy-quick [ up | down | save | strip ] [ CONFIG_FILE | INTERFACE ]" in text
    for heading in ("DESCRIPTION", "CONFIGURATION", "EXAMPLES", "SEE ALSO"):
        assert f"\n{heading}\n" in text
    assert "systemctl enable --now wgpy-quick@wgvpn0" in text


# Bash completion ----------------------------------------------------------------------------------


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """The directory the completion runs in, with a config file and another file."""
    home = tmp_path / "home"
    (home / "etc").mkdir(parents=True)
    (home / "home.conf").write_text("")
    (home / "notes.txt").write_text("")
    return home


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Path]:
    """A run directory with the configuration sockets of wg0 and wgvpn1."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sockets = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    for sock, name in zip(sockets, ("wg0", "wgvpn1"), strict=True):
        sock.bind(str(run_dir / f"{name}.sock"))
    yield run_dir
    for sock in sockets:
        sock.close()


def complete(staged: Path, command: str, line: str, cwd: Path, **variables: str) -> list[str]:
    """What bash offers for the last word of `line` (empty after a trailing space)."""
    script = installed(staged, f"share/bash-completion/completions/{command}")
    words = line.split() + ([""] if line.endswith(" ") else [])
    function = "_wgpy_completion" if command == "wgpy" else "_wgpy_quick_completion"
    program = "\n".join([
        # compopt acts only inside bash's completion machinery, and the function is called here.
        "compopt() { :; }",
        *(f"{name}={value}" for name, value in variables.items()),
        f"source {script}",
        f"COMP_WORDS=({' '.join(_quoted(word) for word in words)})",
        f"COMP_CWORD={len(words) - 1}",
        "COMPREPLY=()",
        f"{function}",
        'printf "%s\\n" "${COMPREPLY[@]}"',
    ])  # fmt: skip
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], cwd=cwd,
                            capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert result.stderr == ""
    return [word for word in result.stdout.splitlines() if word]


def _quoted(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


@needs("bash")
def test_wgpy_completes_its_commands_and_their_options(staged: Path, cwd: Path) -> None:
    assert sorted(complete(staged, "wgpy", "wgpy ", cwd)) == sorted(
        [*WGPY_COMMANDS, "help", "--version", "--foreground"]
    )
    assert complete(staged, "wgpy", "wgpy gen", cwd) == ["genkey", "genpsk"]
    assert complete(staged, "wgpy", "wgpy demo -", cwd) == ["--simulated"]
    assert "--peer-key" in complete(staged, "wgpy", "wgpy probe 192.0.2.1:51820 -", cwd)
    assert complete(staged, "wgpy", "wgpy install-files --un", cwd) == ["--uninstall"]


@needs("bash")
def test_wgpy_completes_running_interfaces_and_what_follows_them(
    staged: Path, running: Path, cwd: Path
) -> None:
    env = {"WGPY_RUN_DIR": str(running)}
    assert complete(staged, "wgpy", "wgpy show ", cwd, **env) == [
        "wg0", "wgvpn1", "all", "interfaces"
    ]  # fmt: skip
    assert complete(staged, "wgpy", "wgpy setconf wgv", cwd, **env) == ["wgvpn1"]
    assert complete(staged, "wgpy", "wgpy show wg0 end", cwd, **env) == ["endpoints"]
    assert complete(staged, "wgpy", "wgpy set wg0 ", cwd) == [
        "listen-port", "fwmark", "private-key", "peer"
    ]  # fmt: skip
    assert complete(staged, "wgpy", "wgpy set wg0 fwmark 1 listen-port 2 ", cwd) == [
        "private-key", "peer"
    ]  # fmt: skip
    assert complete(staged, "wgpy", "wgpy set wg0 peer ABC= endpoint 192.0.2.1:1 ", cwd) == [
        "preshared-key", "allowed-ips", "persistent-keepalive", "remove", "peer"
    ]  # fmt: skip
    assert complete(staged, "wgpy", "wgpy set wg0 peer A= remove peer B= e", cwd) == ["endpoint"]
    assert complete(staged, "wgpy", "wgpy syncconf wg0 h", cwd, **env) == ["home.conf"]
    assert complete(staged, "wgpy", "wgpy capture wg0 -w n", cwd, **env) == ["notes.txt"]


@needs("bash")
def test_wgpy_quick_completes_configs_for_up_and_running_interfaces_for_down(
    staged: Path, running: Path, cwd: Path, tmp_path: Path
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "wgoffice.conf").write_text("")
    env = {"WGPY_RUN_DIR": str(running), "_wgpy_quick_config_dirs": f"({etc})"}
    assert complete(staged, "wgpy-quick", "wgpy-quick ", cwd) == [
        "up", "down", "save", "strip", "--help", "--version"
    ]  # fmt: skip
    assert complete(staged, "wgpy-quick", "wgpy-quick up ", cwd, **env) == [
        "wgoffice", "home.conf", "etc"
    ]  # fmt: skip
    assert complete(staged, "wgpy-quick", "wgpy-quick down ", cwd, **env) == [
        "wg0", "wgvpn1"
    ]  # fmt: skip
    assert complete(staged, "wgpy-quick", "wgpy-quick strip wgo", cwd, **env) == ["wgoffice"]
