"""The systemd units do what they say when their commands run as systemd runs them (start,
reload, stop), in a namespace: wgpy-quick@.service brings /etc/wireguard/IFNAME.conf up,
syncs it on reload and brings it down; wgpy@.service runs the daemon configured from it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import systemd_units

from wgpy import system_files
from wgpy.client import socket_path
from wgpy.lab.netns import Namespace, unique_ifname, wait_until, wg_genkey

ETC_WIREGUARD = Path("/etc/wireguard")
UNITS = Path("usr/local/lib/systemd/system")

pytestmark = pytest.mark.netns()


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units as `wgpy install-files --destdir` installs them."""
    system_files.install(Path("/usr/local"), system_files.commands_directory(), tmp_path)
    return tmp_path / UNITS


@pytest.fixture
def ifname() -> Iterator[str]:
    """A unique interface name; its /etc/wireguard config is removed at the end."""
    name = unique_ifname("wgu")
    yield name
    (ETC_WIREGUARD / f"{name}.conf").unlink(missing_ok=True)


def write_config(ifname: str, text: str) -> None:
    ETC_WIREGUARD.mkdir(mode=0o700, exist_ok=True)
    path = ETC_WIREGUARD / f"{ifname}.conf"
    path.touch(0o600)
    path.write_text(text)


def config(port: int, peers: int, *interface_lines: str) -> str:
    lines = ["[Interface]", f"PrivateKey = {wg_genkey().private}", f"ListenPort = {port}"]
    lines += interface_lines
    for index in range(peers):
        lines += ["", "[Peer]", f"PublicKey = {wg_genkey().public}",
                  f"AllowedIPs = 192.0.2.{10 + index}/32"]  # fmt: skip
    return "\n".join(lines) + "\n"


def systemctl(ns: Namespace, unit: Path, key: str, ifname: str) -> None:
    """Run the unit's `key` commands (ExecStart, ...) for instance `ifname`, as systemd does."""
    for command in systemd_units.commands(unit.read_text(), key, ifname):
        ns.run(*command)


def wgpy_show(ns: Namespace, ifname: str, field: str) -> str:
    bindir = system_files.commands_directory()
    return ns.run(str(bindir / "wgpy"), "show", ifname, field).stdout


def test_wgpy_quick_service_brings_the_config_up_reloads_it_and_brings_it_down(
    netns: Namespace, units: Path, ifname: str
) -> None:
    unit = units / "wgpy-quick@.service"
    write_config(ifname, config(51820, 1, "Address = 192.0.2.1/24"))
    systemctl(netns, unit, "ExecStart", ifname)
    assert wgpy_show(netns, ifname, "listen-port") == "51820\n"
    assert "inet 192.0.2.1/24" in netns.run("ip", "address", "show", ifname).stdout

    write_config(ifname, config(51821, 2, "Address = 192.0.2.1/24"))
    systemctl(netns, unit, "ExecReload", ifname)
    assert wgpy_show(netns, ifname, "listen-port") == "51821\n"
    assert len(wgpy_show(netns, ifname, "peers").split()) == 2

    systemctl(netns, unit, "ExecStop", ifname)
    assert netns.run("ip", "link", "show", ifname, check=False).returncode != 0
    assert wait_until(lambda: not socket_path(ifname).exists(), 5)


def test_wgpy_service_runs_the_daemon_configured_from_etc_wireguard(
    netns: Namespace, units: Path, ifname: str
) -> None:
    unit = units / "wgpy@.service"
    write_config(ifname, config(51820, 1))
    systemctl(netns, unit, "ExecStart", ifname)  # Type=forking: returns with the daemon running
    systemctl(netns, unit, "ExecStartPost", ifname)
    assert wgpy_show(netns, ifname, "listen-port") == "51820\n"
    assert len(wgpy_show(netns, ifname, "peers").split()) == 1

    write_config(ifname, config(51820, 3))
    systemctl(netns, unit, "ExecReload", ifname)
    assert len(wgpy_show(netns, ifname, "peers").split()) == 3

    (daemon,) = netns.pids()
    os.kill(daemon, signal.SIGTERM)  # systemd's stop, KillMode=control-group
    assert wait_until(lambda: not netns.pids() and not socket_path(ifname).exists(), 5)
    assert netns.run("ip", "link", "show", ifname, check=False).returncode != 0
