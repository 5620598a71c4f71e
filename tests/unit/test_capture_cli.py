"""`wgpy capture` against a fake daemon: a unix socket under WGPY_RUN_DIR that answers the
`capture=1` request with a canned stream."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_daemon import IFNAME, FakeDaemon
from pcapng_blocks import blocks

from wgpy.capture import encode_dropped, encode_packet, encode_secrets
from wgpy.cli import capture
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.keys import to_base64
from wgpy.core.observer import Direction, HandshakeSecrets

PEER = bytes(range(32))
PACKETS = [ipv4_packet("192.0.2.1", "192.0.2.2", bytes([n]) * n) for n in range(1, 4)]
SECRETS = HandshakeSecrets(bytes([1]) * 32, PEER, bytes([3]) * 32)
STREAM = (
    b"errno=0\n\n"
    + encode_secrets(SECRETS, 10.0)
    + b"".join(encode_packet(PEER, Direction.OUTBOUND, p, 11.0) for p in PACKETS)
    + encode_dropped(5, 12.0)
)
ENHANCED_PACKET = 6


StartDaemon = Callable[[bytes], FakeDaemon]


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StartDaemon]:
    monkeypatch.setenv("WGPY_RUN_DIR", str(tmp_path))
    started: list[FakeDaemon] = []

    def start(reply: bytes) -> FakeDaemon:
        started.append(FakeDaemon(tmp_path, reply))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


def packets_in(path: Path) -> list[bytes]:
    """The packet data of each enhanced packet block."""
    found = []
    for kind, body in blocks(path.read_bytes()):
        if kind == ENHANCED_PACKET:
            length = int.from_bytes(body[12:16], "little")
            found.append(body[20 : 20 + length])
    return found


def test_the_stream_becomes_a_pcapng_of_its_packets_until_the_daemon_ends_it(
    daemon: StartDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = daemon(STREAM)
    path = tmp_path / "out.pcapng"
    assert capture.run([IFNAME, "-w", str(path)]) == 0

    assert fake.request == b"capture=1\n\n"
    assert packets_in(path) == PACKETS
    assert f"peer {to_base64(PEER)}".encode() in path.read_bytes()
    assert "3 packets written" in capsys.readouterr().err


def test_the_capture_reports_what_the_daemon_dropped_for_a_slow_reader(
    daemon: StartDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon(STREAM)
    assert capture.run([IFNAME, "-w", str(tmp_path / "out.pcapng")]) == 0
    assert "3 packets written" in (err := capsys.readouterr().err) and "5 lost" in err


def test_count_ends_the_capture_after_that_many_packets(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon(STREAM)
    path = tmp_path / "out.pcapng"
    assert capture.run([IFNAME, "-w", str(path), "--count", "2"]) == 0
    assert packets_in(path) == PACKETS[:2]


def test_the_key_log_is_asked_for_written_0600_and_announced_loudly(
    daemon: StartDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("--keylog is for root only")
    fake = daemon(STREAM)
    keylog = tmp_path / "keys"
    assert capture.run([IFNAME, "-w", str(tmp_path / "o"), "--keylog", str(keylog)]) == 0

    assert fake.request == b"capture=1\nkeylog=true\n\n"
    assert keylog.read_text().startswith(f"LOCAL_STATIC_PRIVATE_KEY = {to_base64(bytes([1]) * 32)}")
    assert keylog.stat().st_mode & 0o777 == 0o600
    assert "SESSION SECRETS" in capsys.readouterr().err


def test_the_key_log_is_refused_to_anyone_but_root(
    daemon: StartDaemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    keylog = tmp_path / "keys"
    assert capture.run([IFNAME, "-w", str(tmp_path / "o"), "--keylog", str(keylog)]) == 1
    assert "root only" in capsys.readouterr().err
    assert not keylog.exists()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"errno=-1\n\n", "the daemon refused: Operation not permitted"),
        (b"", "does not offer capture"),  # wireguard-go closes the connection
        (b"errno=0\n\n\x09" + bytes(15), "malformed stream"),
    ],
    ids=["refused", "not-wgpy", "garbage"],
)
def test_a_capture_the_daemon_does_not_serve_fails_with_the_reason(
    daemon: StartDaemon,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reply: bytes,
    message: str,
) -> None:
    daemon(reply)
    assert capture.run([IFNAME, "-w", str(tmp_path / "out.pcapng")]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[IFNAME], [IFNAME, "-w", "x", "--count", "0"]])
def test_a_usage_error_exits_2(argv: list[str]) -> None:
    assert capture.run(argv) == 2
