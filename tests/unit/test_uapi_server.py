"""The configuration socket's connection handling and the daemon's command-line contract."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wgpy.io import uapi_server


def echo_handler(operation: str, lines: list[str]) -> str:
    return f"{operation}:{len(lines)}\n"


@pytest.fixture
def conn() -> Iterator[uapi_server.Connection]:
    left, right = socket.socketpair()
    right.close()
    yield uapi_server.Connection(left, echo_handler)
    left.close()


def test_several_requests_on_one_connection_each_get_a_reply(conn: uapi_server.Connection) -> None:
    reply, done = conn.feed(b"get=1\n\nset=1\nlisten_port=1\n\nget=1\n")
    assert (reply, done) == (b"get:0\nset:1\n", False)
    reply, done = conn.feed(b"\n")
    assert (reply, done) == (b"get:0\n", False)
    assert conn.feed(b"") == (b"", True)


def test_an_unknown_operation_gets_an_errno_and_the_connection_closes(
    conn: uapi_server.Connection,
) -> None:
    reply, done = conn.feed(b"frobnicate=1\n\n")
    assert reply.startswith(b"errno=-") and done


def test_a_request_larger_than_the_limit_is_refused(conn: uapi_server.Connection) -> None:
    reply, done = conn.feed(b"set=1\n" + b"x" * (uapi_server.MAX_REQUEST_BYTES + 1))
    assert reply == b"errno=-90\n\n" and done


def test_a_stale_socket_file_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WGPY_RUN_DIR", str(tmp_path))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "wg7.sock"))
    stale.close()  # The file stays, nobody listens.
    server = uapi_server.listen("wg7")
    try:
        assert (tmp_path / "wg7.sock").stat().st_mode & 0o777 == 0o600
        with pytest.raises(OSError, match="served by another process"):
            uapi_server.listen("wg7")
    finally:
        server.close()


@pytest.mark.parametrize("name", ["x" * 16, "a/b", "", ".."])
def test_an_invalid_interface_name_exits_1_with_one_line(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wgpy.cli.wgpy", name], capture_output=True, text=True,
        env={**os.environ, "WGPY_RUN_DIR": "/nonexistent"}, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
