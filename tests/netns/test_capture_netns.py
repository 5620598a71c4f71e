"""`wgpy capture` against a running tunnel in network namespaces.

wgpy in namespace a, wgpy or wireguard-go in b (tests/peers.py). The capture on a's interface
must hold the pings with their directions and b's public key; and with --keylog, tshark must
decrypt a recording of the outer UDP traffic on the veth with the key log alone.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from peers import PAIRS, STANDING_IN, WG_PORT, Peer, make_peers, running

from wgpy.lab.netns import STOP_TIMEOUT, VETH, Namespace, wait_until

pytestmark = [
    pytest.mark.netns("wireguard-go", "wg", "ping", "tshark"),
    pytest.mark.skipif(STANDING_IN, reason="capture is wgpy's own extension"),
]

PINGS = 3
ECHO_REQUEST, ECHO_REPLY = "8", "0"
CAPTURE = (sys.executable, "-m", "wgpy.cli.wgpy", "capture")


def start_capture(peer: Peer, path: Path, *options: str) -> subprocess.Popen[bytes]:
    """`wgpy capture` on `peer`'s interface, once it has written the file's headers."""
    process = peer.ns.popen(
        *CAPTURE, peer.ifname, "-w", str(path), *options, stderr=subprocess.PIPE
    )
    started = wait_until(lambda: path.exists() and path.stat().st_size > 0, timeout=15.0)
    assert started, f"capture did not start: {finished(process)[1]}"
    return process


def finished(process: subprocess.Popen[bytes], timeout: float = 20.0) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr.decode(errors="replace")


def _transport_messages(capture: Path) -> int:
    """How many WireGuard transport messages the capture file being written holds so far."""
    result = subprocess.run(
        ["tshark", "-r", str(capture), "-d", f"udp.port=={WG_PORT},wg", "-Y", "wg.type == 4",
         "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return len(result.stdout.split())


def tshark(*args: str) -> list[list[str]]:
    result = subprocess.run(
        ["tshark", *args, "-T", "fields"], capture_output=True, text=True, timeout=60, check=True
    )
    return [line.split("\t") for line in result.stdout.splitlines()]


def ping(source: Peer, target: Peer) -> None:
    source.ns.run("ping", "-c", str(PINGS), "-i", "0.2", "-w", "10", target.inner[0])


@pytest.mark.parametrize("implementations", PAIRS)
def test_a_capture_holds_the_pings_with_their_direction_and_peer(
    netns_pair: tuple[Namespace, Namespace], implementations: tuple[object, object], tmp_path: Path
) -> None:
    path = tmp_path / "inner.pcapng"
    with running(make_peers(implementations, *netns_pair)) as (a, b):  # type: ignore[arg-type]
        capture = start_capture(a, path, "--count", str(2 * PINGS))
        ping(a, b)
        status, stderr = finished(capture)

    assert status == 0, stderr
    assert f"{2 * PINGS} packets written" in stderr
    fields = ["icmp.type", "frame.packet_flags_direction", "frame.comment", "ip.src", "ip.dst"]
    rows = tshark("-r", str(path), *[arg for name in fields for arg in ("-e", name)])
    comment = f"peer {b.keys.public}"
    request = [ECHO_REQUEST, "0x00000002", comment, a.inner[0], b.inner[0]]
    reply = [ECHO_REPLY, "0x00000001", comment, b.inner[0], a.inner[0]]
    assert rows == [request, reply] * PINGS


@pytest.mark.parametrize(
    ("implementations", "initiator", "preshared_key"),
    [
        pytest.param(PAIRS[0].values[0], "a", True, id="wgpy-wgpy-initiator-psk"),
        pytest.param(PAIRS[1].values[0], "b", False, id="wgpy-wireguard-go-responder"),
    ],
)
def test_the_key_log_lets_tshark_decrypt_the_outer_traffic(
    netns_pair: tuple[Namespace, Namespace],
    implementations: tuple[object, object],
    initiator: str,
    preshared_key: bool,
    tmp_path: Path,
) -> None:
    inner, outer, keylog = (tmp_path / name for name in ("inner.pcapng", "outer.pcapng", "keys"))
    peers = make_peers(implementations, *netns_pair, preshared_key=preshared_key)  # type: ignore[arg-type]
    with running(peers) as (a, b):
        recorder = a.ns.popen(
            "tshark", "-i", VETH, "-f", f"udp port {WG_PORT}", "-w", str(outer),
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert wait_until(lambda: outer.exists() and outer.stat().st_size > 0, timeout=20.0)
        capture = start_capture(a, inner, "--keylog", str(keylog))
        ping(*((a, b) if initiator == "a" else (b, a)))
        capture.send_signal(signal.SIGINT)
        status, stderr = finished(capture)
        # The recorder writes what it captured a moment later, and drops what it has not
        # written when stopped: stop it once the pings' transport messages are in its file.
        wait_until(lambda: _transport_messages(outer) >= 2 * PINGS, timeout=10.0, interval=0.2)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(STOP_TIMEOUT)

    assert status == 0, stderr
    assert "SESSION SECRETS" in stderr and "PRIVATE KEY" in stderr
    assert keylog.stat().st_mode & 0o777 == 0o600
    names = [line.split(" = ")[0] for line in keylog.read_text().splitlines()]
    assert names[:3] == [
        "LOCAL_STATIC_PRIVATE_KEY", "REMOTE_STATIC_PUBLIC_KEY", "LOCAL_EPHEMERAL_PRIVATE_KEY",
    ]  # fmt: skip
    assert ("PRESHARED_KEY" in names) == preshared_key
    decrypted = tshark(
        "-r", str(outer), "-d", f"udp.port=={WG_PORT},wg",
        "-o", f"wg.keylog_file:{keylog}", "-o", "wg.dissect_packet:TRUE",
        "-Y", "icmp", "-e", "icmp.type",
    )  # fmt: skip
    assert [row[0] for row in decrypted] == [ECHO_REQUEST, ECHO_REPLY] * PINGS
    without_keys = tshark(
        "-r", str(outer), "-d", f"udp.port=={WG_PORT},wg", "-Y", "icmp", "-e", "frame.number"
    )  # fmt: skip
    assert without_keys == []


def test_a_capture_of_an_interface_nobody_serves_fails_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CAPTURE, "wgnosuch0", "-w", str(tmp_path / "x.pcapng")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "wgnosuch0" in result.stderr and "No such file or directory" in result.stderr
