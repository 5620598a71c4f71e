"""The README's simulated demo does what it says: a handshake, data both ways, a rekey, no drop.
The demo in network namespaces is tests/netns/test_demo.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from wgpy.demo import namespaces

WGPY = [sys.executable, "-m", "wgpy.cli.wgpy"]


def test_the_simulated_demo_handshakes_exchanges_data_and_rekeys() -> None:
    out = subprocess.run([*WGPY, "demo", "--simulated"], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    assert out.count("handshake initiation") == 2, "the first handshake and the rekey"
    assert "bob's TUN receives: 'hello bob'" in out
    assert "alice's TUN receives: 'yes, on fresh keys'" in out
    assert out.rstrip().endswith("dropped 0")


def test_the_namespace_demo_says_what_the_machine_lacks_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert namespaces.missing_tools() == "needs root (network namespaces)"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    absent = {"ping", "nft"}
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool in absent else real_which(tool))
    assert namespaces.missing_tools() == "needs ping, nft: apt install iputils-ping nftables"
