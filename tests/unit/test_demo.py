"""The README's simulated demo does what it says: a handshake, data both ways, a rekey, no drop.
The demo in network namespaces is tests/netns/test_demo.py."""

from __future__ import annotations

import subprocess
import sys

WGPY = [sys.executable, "-m", "wgpy.cli.wgpy"]


def test_the_simulated_demo_handshakes_exchanges_data_and_rekeys() -> None:
    out = subprocess.run([*WGPY, "demo", "--simulated"], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    assert out.count("handshake initiation") == 2, "the first handshake and the rekey"
    assert "bob's TUN receives: 'hello bob'" in out
    assert "alice's TUN receives: 'yes, on fresh keys'" in out
    assert out.rstrip().endswith("dropped 0")
