"""The runnable examples in examples/: each runs as its own process, as a reader would run it.
The one that needs a network namespace is in tests/netns/test_examples.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 60


def counted(output: str, label: str) -> int:
    match = re.search(rf"^{label}: (\d+)", output, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{output}"
    return int(match.group(1))


def test_ten_simulated_minutes_rekey_at_least_four_times_in_under_five_seconds() -> None:
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "ten_minutes.py")],
        capture_output=True, text=True, timeout=TIMEOUT, check=True,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    output = completed.stdout

    assert elapsed < 5.0
    assert re.search(r"^10 simulated minutes in \d+\.\d+ s of wall time$", output, re.MULTILINE)
    assert counted(output, "rekeys") >= 4
    assert counted(output, "handshakes") == counted(output, "rekeys") + 1
    # Bob only receives, so he keeps the tunnel confirmed with one keepalive per 10 s or so.
    assert counted(output, "keepalives") >= 50
    assert re.search(r"^data packets: (\d+) sent, \1 delivered$", output, re.MULTILINE)
    assert counted(output, "drops") == 0
    assert "t= 120.0 s  rekey 1: alice initiated, bob answered" in output


# Root drops to uid 65534 with no capability left, to show the example needs none.
UNPRIVILEGED = (
    ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
     "--inh-caps=-all", "--bounding-set=-all")
    if os.geteuid() == 0 else ()
)  # fmt: skip


def test_an_http_get_crosses_a_wireguard_session_with_no_root_and_no_tun() -> None:
    completed = subprocess.run(
        [*UNPRIVILEGED, sys.executable, str(EXAMPLES / "tunnel_http_get.py")],
        capture_output=True, text=True, timeout=TIMEOUT, check=True,
    )  # fmt: skip
    output = completed.stdout

    assert re.search(
        r"^GET http://192\.0\.2\.1/ -> HTTP/1\.1 200 OK \(37 bytes in [\d.]+ ms", output, re.M
    )
    assert "content-type: text/plain\nhello from the far end of the tunnel\n" in output


@pytest.mark.parametrize("example", ["asyncio_echo.py", "ten_minutes.py", "tunnel_http_get.py"])
def test_every_example_is_documented_in_the_readme(example: str) -> None:
    assert f"examples/{example}" in (EXAMPLES / "README.md").read_text()
