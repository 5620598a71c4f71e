"""`wgpy setconf|syncconf|set|show|showconf` on a real wireguard-go in a network namespace: wgpy
configures it, and shows it as wg(8) does. tests/unit/test_cli_wg.py holds the rest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from wg_commands import Result, in_process, wg_tool, write_file

from wgpy.lab.netns import Namespace, start_wireguard_go, unique_ifname


@pytest.fixture
def wgpy(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `wgpy COMMAND ARGS...` in this process: (exit status, stdout, stderr)."""
    return in_process(capsys)


WIREGUARD_GO_CONFIG = """\
[Interface]
ListenPort = 51820
FwMark = 0x1234
PrivateKey = {private}

[Peer]
PublicKey = {peer1}
PresharedKey = {psk}
AllowedIPs = 192.0.2.0/25, fd00:2::/64
Endpoint = 198.18.0.2:51820
PersistentKeepalive = 25

[Peer]
PublicKey = {peer2}
AllowedIPs = 192.0.2.128/25, fd00:3::/64
Endpoint = [fd00:1::2]:51821
"""
THIRD_PEER = "\n[Peer]\nPublicKey = {peer3}\n"


def sorted_blocks(text: str) -> list[str]:
    """wireguard-go lists peers in Go map order, which changes from one request to the next."""
    interface, *peers = (block.strip("\n") for block in text.split("\n\n"))
    return [interface, *sorted(peers)]


def sorted_lines(text: str) -> list[str]:
    interface, *peers = text.splitlines()
    return [interface, *sorted(peers)]


@pytest.mark.netns("wireguard-go", "wg")
def test_wgpy_configures_wireguard_go_and_shows_what_wg_shows(
    netns: Namespace, wgpy: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("WGPY_RUN_DIR", "WG_HIDE_KEYS", "WG_COLOR_MODE"):
        monkeypatch.delenv(variable, raising=False)
    ifname = unique_ifname()
    start_wireguard_go(netns, ifname)
    keys = {name: wg_tool("genkey")[1].strip() for name in ("private", "peer1", "peer2", "peer3")}
    keys["psk"] = wg_tool("genpsk")[1].strip()
    two_peers = WIREGUARD_GO_CONFIG.format(**keys)

    def same_as_wg() -> None:
        wg_dump = netns.run("wg", "show", ifname, "dump").stdout
        assert sorted_lines(wgpy("show", ifname, "dump")[1]) == sorted_lines(wg_dump)
        wg_showconf = netns.run("wg", "showconf", ifname).stdout
        assert sorted_blocks(wgpy("showconf", ifname)[1]) == sorted_blocks(wg_showconf)
        wg_show = netns.run("wg", "show", ifname).stdout
        assert sorted_blocks(wgpy("show", ifname)[1]) == sorted_blocks(wg_show)

    path = write_file(tmp_path, "wg.conf", two_peers + THIRD_PEER.format(**keys))
    assert wgpy("setconf", ifname, path) == (0, "", "")
    assert wgpy("set", ifname, "peer", keys["peer3"], "allowed-ips", "198.18.5.0/24") == (0, "", "")
    same_as_wg()
    assert sorted_blocks(wgpy("showconf", ifname)[1]) == sorted_blocks(
        f"{two_peers}{THIRD_PEER.format(**keys)}AllowedIPs = 198.18.5.0/24\n"
    )

    # syncconf drops the peer the file no longer has and leaves the device as the file says.
    assert wgpy("syncconf", ifname, write_file(tmp_path, "two.conf", two_peers)) == (0, "", "")
    same_as_wg()
    assert sorted_blocks(wgpy("showconf", ifname)[1]) == sorted_blocks(two_peers)
