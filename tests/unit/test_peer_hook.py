"""WGPY_PEER_HOOK (issue 20), the daemon's part: what the environment configures, what a hook's
answer means, and the bounds on running hooks. Hooks here are small /bin/sh scripts."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from pathlib import Path

import pytest

from wgpy.cli import daemon
from wgpy.core.admission import PeerSettings
from wgpy.core.device import PeerWanted
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import short_form, to_base64
from wgpy.io.peer_hook import (
    DEFAULT_LIMIT,
    DEFAULT_TIMEOUT,
    MAX_OUTPUT,
    HookFailed,
    HookSettings,
    PeerHook,
    hook_settings,
    parse_peer_settings,
    run_hook,
)

KEY = bytes(range(32))
WANTED = PeerWanted(KEY, Endpoint("198.18.0.2", 40001))
PSK = bytes(range(32, 64))


# -- the environment -----------------------------------------------------------------------------


def test_without_the_variable_there_is_no_hook() -> None:
    assert hook_settings({}) is None
    assert hook_settings({"WGPY_PEER_HOOK": ""}) is None


def test_the_limit_and_timeout_have_defaults_and_may_be_set() -> None:
    assert hook_settings({"WGPY_PEER_HOOK": "x"}) == HookSettings(
        "x", DEFAULT_LIMIT, DEFAULT_TIMEOUT
    )
    environ = {"WGPY_PEER_HOOK": "x", "WGPY_PEER_HOOK_LIMIT": "8", "WGPY_PEER_HOOK_TIMEOUT": "0.5"}
    assert hook_settings(environ) == HookSettings("x", 8, 0.5)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WGPY_PEER_HOOK_LIMIT", "0"),
        ("WGPY_PEER_HOOK_LIMIT", "four"),
        ("WGPY_PEER_HOOK_TIMEOUT", "0"),
        ("WGPY_PEER_HOOK_TIMEOUT", "nan"),
        ("WGPY_PEER_HOOK_TIMEOUT", "soon"),
    ],
)
def test_a_bad_limit_or_timeout_is_an_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{variable}={value!r}"):
        hook_settings({"WGPY_PEER_HOOK": "x", variable: value})


# -- the answer ----------------------------------------------------------------------------------


def test_peer_lines_are_the_admitted_peers_settings() -> None:
    output = (
        f"allowed_ip=198.18.5.7/32\nallowed_ip=fd00::7/128\npreshared_key={PSK.hex()}\n"
        "persistent_keepalive_interval=25\n\n"
    )
    assert parse_peer_settings(output) == PeerSettings(
        (ipaddress.ip_network("198.18.5.7/32"), ipaddress.ip_network("fd00::7/128")), PSK, 25
    )


def test_no_lines_admit_a_peer_with_nothing_routed_to_it() -> None:
    assert parse_peer_settings("") == PeerSettings()


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("allowed_ip=198.18.5.7/32\nhello\n", "output line 2: not one of"),
        ("endpoint=198.18.0.9:1\n", "output line 1: not one of"),
        ("public_key=00\n", "output line 1: not one of"),
        ("allowed_ip=198.18.5.300/32\n", "output line 1: allowed_ip:"),
        ("persistent_keepalive_interval=70000\n", "output line 1: persistent_keepalive_interval:"),
        ("allowed_ip=-198.18.5.7/32\n", "removes a prefix"),
    ],
)
def test_anything_but_peer_lines_refuses(output: str, reason: str) -> None:
    with pytest.raises(HookFailed, match=reason):
        parse_peer_settings(output)


# -- running it ----------------------------------------------------------------------------------


def test_the_hook_sees_the_interface_key_and_endpoint() -> None:
    environ = {"WGPY_INTERFACE": "wg9", "WGPY_PUBLIC_KEY": to_base64(KEY), "WGPY_ENDPOINT": "x:1"}
    output = run_hook('echo "$WGPY_INTERFACE $WGPY_PUBLIC_KEY $WGPY_ENDPOINT"', environ, 5.0)
    assert output == f"wg9 {to_base64(KEY)} x:1\n"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("exit 3", "exited with status 3"),
        ("kill -9 $$", "killed by signal 9"),
        ("printf '\\377'", "not UTF-8"),
        (f"head -c {MAX_OUTPUT + 1} /dev/zero", f"more than {MAX_OUTPUT} bytes"),
        ("sleep 5", "timed out after 0.3 s"),
        ("exec 1>&-; sleep 5", "timed out after 0.3 s"),
        ("/nonexistent/hook", "exited with status 127"),
    ],
)
def test_a_hook_that_fails_refuses(command: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(HookFailed, match=reason):
        run_hook(command, {}, 0.3)
    assert time.monotonic() - started < 2.0


def test_a_hook_that_hangs_is_killed_with_its_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    with pytest.raises(HookFailed, match="timed out"):
        run_hook(f"sleep 30 & echo $! > {pidfile}; wait", {}, 0.5)
    child = int(pidfile.read_text())
    assert not running(child)


def running(pid: int) -> bool:
    """Whether `pid` lives and is not a zombie (killed, but not yet reaped by its new parent)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True


def test_at_most_limit_hooks_run_at_once_and_each_is_decided(tmp_path: Path) -> None:
    log = tmp_path / "log"
    command = f"echo start >> {log}; sleep 0.2; echo end >> {log}; echo allowed_ip=198.18.5.7/32"
    decided: list[PeerSettings | None] = []
    done = threading.Event()

    def decide(wanted: PeerWanted, settings: PeerSettings | None) -> None:
        decided.append(settings)
        if len(decided) == 6:
            done.set()

    hook = PeerHook(HookSettings(command, limit=2, timeout=5.0), "wg9", decide)
    try:
        for index in range(6):
            hook.ask(PeerWanted(bytes([index]) * 32, WANTED.endpoint))
        assert done.wait(10.0)
    finally:
        hook.close()
    assert decided == [PeerSettings((ipaddress.ip_network("198.18.5.7/32"),))] * 6
    running_now = peak = 0
    for line in log.read_text().split():
        running_now += 1 if line == "start" else -1
        peak = max(peak, running_now)
    assert peak == 2


def test_a_failing_hook_is_decided_as_a_refusal_logged_with_the_keys_short_form(
    caplog: pytest.LogCaptureFixture,
) -> None:
    decided: list[PeerSettings | None] = []
    done = threading.Event()

    def decide(wanted: PeerWanted, settings: PeerSettings | None) -> None:
        decided.append(settings)
        done.set()

    hook = PeerHook(HookSettings("echo garbage", limit=1), "wg9", decide)
    with caplog.at_level(logging.ERROR, logger="wgpy"):
        try:
            hook.ask(WANTED)
            assert done.wait(10.0)
        finally:
            hook.close()
    assert decided == [None]
    assert caplog.messages == [
        f"(wg9) peer {short_form(KEY)} refused by the peer hook: output line 1: not one of "
        "allowed_ip, preshared_key, persistent_keepalive_interval"
    ]
    assert to_base64(KEY) not in caplog.text


def test_a_bad_limit_stops_the_daemon_before_it_creates_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WGPY_PEER_HOOK", "/bin/true")
    monkeypatch.setenv("WGPY_PEER_HOOK_LIMIT", "0")
    assert daemon.run(["--foreground", "wg0"]) == 1
    assert capsys.readouterr().err == "wgpy: WGPY_PEER_HOOK_LIMIT='0': not a positive integer\n"
