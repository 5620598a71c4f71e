"""The README's demo in network namespaces is the full-tunnel VPN it describes, in under 15 s, and
leaves nothing behind: after success, after a failure, after Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wgpy.client import socket_path
from wgpy.demo.namespaces import INTERNET_HOST, SERVER_WAN, TOOLS
from wgpy.lab import netns

WGPY = [sys.executable, "-m", "wgpy.cli.wgpy"]
NEEDS = tuple(TOOLS)
NAMESPACE = re.compile(r"wgpy-(?:client|server|internet)-\d+-[0-9a-f]{8}")
INTERFACE = re.compile(r"\bwg[cs][0-9a-f]{8}\b")


def demo(env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*WGPY, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip


def section(out: str, title: str) -> str:
    """The lines printed under the step `== title...`, up to the next step."""
    return out.split(f"== {title}", 1)[1].split("\n== ", 1)[0]


def assert_nothing_left(out: str) -> None:
    namespaces, interfaces = set(NAMESPACE.findall(out)), set(INTERFACE.findall(out))
    assert len(namespaces) == 3
    assert not [name for name in namespaces if (netns.NETNS_DIR / name).exists()]
    assert not [name for name in interfaces if socket_path(name).exists()]
    assert not [pid for pid in _pids() if any(name in _cmdline(pid) for name in interfaces)]


@pytest.mark.netns(*NEEDS)
def test_the_demo_is_a_full_tunnel_vpn_through_a_masquerading_server() -> None:
    started = time.monotonic()
    process = demo()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert time.monotonic() - started < 15
    assert out.splitlines()[-1].startswith("demo done")

    client, server = sorted(set(INTERFACE.findall(out)))
    before = section(out, "client's routing before `up`")
    after = section(out, "client's routing after `up`")
    for host in INTERNET_HOST:
        assert " via " in _lookup(before, host), "the client's gateway: the server, unencrypted"
        assert f" dev {client} table 51820 " in _lookup(after, host)
    assert "not from all fwmark 0xca6c lookup 51820" in after
    assert "32764:\tfrom all lookup main suppress_prefixlength 0" in after
    # The tunnel's own packets reach the server's endpoint outside the tunnel.
    assert "198.18.0.1 dev eth0 src 198.18.0.2 mark 0xca6c" in after
    assert "no answer without the tunnel" in out
    assert out.count(", 0% packet loss") == 2
    assert "sha256 matches" in out
    assert f"the internet host saw the request come from {SERVER_WAN[0]}:" in out
    for role, name in (("client", client), ("server", server)):
        shown = section(out, f"{role}: wgpy show {name}")
        assert re.search(r"latest handshake: \d+ seconds? ago", shown)
    assert section(out, "client's routing after `down`") == before
    assert "== the client's routing is as it was before `up`" in out
    assert_nothing_left(out)


@pytest.mark.netns(*NEEDS)
@pytest.mark.parametrize("moment", ["== client: wgpy-quick up", "== client: ping"])
def test_ctrl_c_in_the_middle_of_the_demo_removes_everything(moment: str) -> None:
    process = demo()
    assert process.stdout is not None
    out = ""
    while moment not in out:
        line = process.stdout.readline()
        assert line, f"the demo ended early: {out}"
        out += line
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.strip().splitlines() == ["demo interrupted: everything it made is removed"]
    assert_nothing_left(out + rest)


@pytest.mark.netns(*NEEDS)
def test_a_failing_step_fails_the_demo_and_removes_everything(tmp_path: Path) -> None:
    _executable(tmp_path / "ping", "#!/bin/sh\necho 'ping: connect: Network is down' >&2\nexit 2\n")
    process = demo({**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "demo failed: ping 192.0.2.100 from the client failed" in err
    assert "demo done" not in out
    assert_nothing_left(out)


@pytest.mark.netns(*NEEDS)
def test_a_missing_tool_is_named_with_its_debian_package_in_one_line(tmp_path: Path) -> None:
    for tool in set(NEEDS) - {"nft"}:
        (tmp_path / tool).symlink_to(shutil.which(tool) or tool)
    result = subprocess.run([*WGPY, "demo"], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PATH": str(tmp_path)})  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "wgpy demo: needs nft: apt install nftables; `wgpy demo --simulated` runs without it"
    ]


def _lookup(routing: str, host: str) -> str:
    """The answer to `ip route get HOST` in what show_routing printed."""
    return next(line for line in routing.splitlines() if line.strip().startswith(f"{host} "))


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""
