"""The runnable examples that need a network namespace: each runs as its own process, as a reader
would run it, in a namespace of its own."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from wgpy.lab.netns import Namespace

# Each test here needs a namespace, so `-m netns` selects it as it selects the rest of tests/netns.
pytestmark = pytest.mark.netns

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_asyncio_peer_gets_its_udp_echo_back_through_the_tunnel(netns: Namespace) -> None:
    # In a namespace of its own, so the example's 127.0.0.1 is a loopback nobody else uses.
    completed = netns.run(sys.executable, str(EXAMPLES / "asyncio_echo.py"))
    output = completed.stdout

    echoes = re.findall(
        r"^echo came back from 192\.0\.2\.2:7: '(.*)' in [\d.]+ ms$", output, re.MULTILINE
    )
    assert echoes == [
        "hello through the tunnel (handshake included)",
        "hello again (on the session)",
    ]
    assert re.search(
        r"^alice's device sent \d+ bytes to bob and received \d+$", output, re.MULTILINE
    )
