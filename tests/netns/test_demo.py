"""The README's demo in network namespaces does what it says: a tunnel, pings, an intact
transfer, nothing left behind."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from wgpy.lab import netns

WGPY = [sys.executable, "-m", "wgpy.cli.wgpy"]


@pytest.mark.netns("ping", "wireguard-go")
def test_the_namespace_demo_pings_transfers_and_cleans_up() -> None:
    result = subprocess.run([*WGPY, "demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count(" 0% packet loss") == 3
    assert "sha256 at bob matches" in out
    assert re.search(r"latest handshake: \d+ seconds? ago", out)
    created = set(re.findall(r"wgpy-\d+-[0-9a-f]{8}", out))
    assert len(created) == 2
    assert not [name for name in created if (netns.NETNS_DIR / name).exists()]
