"""The configuration socket's connection handling and the daemon's command-line contract."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpy import uapi
from wgpy.configure import apply_update, get_reply
from wgpy.core.device import Device
from wgpy.core.keys import generate_private_key
from wgpy.io import uapi_server


def echo_handler(request: uapi.Request) -> list[str]:
    peers = len(request.update.peers) if request.update is not None else 0
    return [f"{request.operation}:{peers}\n"]


@pytest.fixture
def conn() -> Iterator[uapi_server.Connection]:
    left, right = socket.socketpair()
    right.close()
    yield uapi_server.Connection(left, echo_handler)
    left.close()


def feed(connection: uapi_server.Connection, data: bytes) -> tuple[bytes, bool]:
    """The replies to `data`, and whether the connection is then over."""
    return b"".join(connection.feed(data)), connection.closing


def test_several_requests_on_one_connection_each_get_a_reply(conn: uapi_server.Connection) -> None:
    first = f"get=1\n\nset=1\npublic_key={PEER.hex()}\n\nget=1\n".encode()
    assert feed(conn, first) == (b"get:0\nset:1\n", False)
    assert feed(conn, b"\n") == (b"get:0\n", False)
    assert feed(conn, b"") == (b"", True)


def test_an_unknown_operation_gets_an_errno_and_the_connection_closes(
    conn: uapi_server.Connection,
) -> None:
    reply, closing = feed(conn, b"get=1\n\nfrobnicate=1\n\n")
    assert reply == b"get:0\nerrno=-71\n\n" and closing


def test_a_set_larger_than_the_old_mebibyte_bound_is_read_as_it_streams(
    conn: uapi_server.Connection,
) -> None:
    request = set_of(8000).encode()
    assert len(request) > 3 << 19
    replies = [
        feed(conn, request[start : start + 65536]) for start in range(0, len(request), 65536)
    ]
    assert replies[-1] == (b"set:8000\n", False)
    assert all(reply == (b"", False) for reply in replies[:-1])


def test_a_line_over_the_bound_gets_einval_and_the_connection_ends(
    conn: uapi_server.Connection,
) -> None:
    request = b"set=1\nfwmark=" + b"0" * uapi.MAX_LINE_BYTES + b"\n\nget=1\n\n"
    assert feed(conn, request) == (b"errno=-22\n\n", True)


# A long stream cut short or spoilt anywhere ---------------------------------------------------


PEER = bytes(range(32))


def set_of(count: int) -> str:
    """A `set` of `count` peers, each with an endpoint, a keepalive and two allowed IPs."""
    peers = "".join(
        f"public_key={n.to_bytes(32, 'big').hex()}\nendpoint=192.0.2.{n % 250 + 1}:51820\n"
        f"persistent_keepalive_interval=25\nreplace_allowed_ips=true\n"
        f"allowed_ip=10.{n >> 8 & 255}.{n & 255}.1/32\nallowed_ip=fd00::{n:x}/128\n"
        for n in range(1, count + 1)
    )
    return f"set=1\nreplace_peers=true\n{peers}\n"


class PureServer:
    """The configuration side of the daemon over a device: what `Interface` does, without
    sockets or threads."""

    def __init__(self) -> None:
        self.device = Device(os.urandom, generate_private_key(os.urandom))

    def get(self) -> str:
        return get_reply(self.device, 51820, 0)

    def handle(self, request: uapi.Request) -> list[str]:
        if request.operation == "get":
            return [self.get()]
        if request.error is not None:
            return [uapi.format_errno(request.error.errno)]
        assert request.update is not None
        apply_update(self.device, request.update, 0.0)
        return [uapi.format_errno(0)]

    def exchange(self, chunks: list[bytes]) -> tuple[bytes, bool]:
        """What a new connection replies to `chunks`, and whether it is then over."""
        left, right = socket.socketpair()
        with left, right:
            connection = uapi_server.Connection(left, self.handle)
            replies = b""
            for chunk in chunks:
                replies += b"".join(connection.feed(chunk))
                if connection.closing:
                    break
            return replies, connection.closing


LONG_SET = set_of(200).encode()
LINE_STARTS = [0, *(i + 1 for i, byte in enumerate(LONG_SET[:-2]) if byte == ord("\n"))]
SPOILT_LINES = [b"allowed_ip=10.0.0.256/32", b"endpoint=192.0.2.1", b"no equals sign", b"peer=1"]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@pytest.fixture(scope="module")
def server() -> PureServer:
    """A server holding a configuration that no failed request may change."""
    server = PureServer()
    assert server.exchange([set_of(3).encode()]) == (b"errno=0\n\n", False)
    return server


@settings(max_examples=40)
@given(
    cut=st.integers(len(b"set=1\n"), len(LONG_SET) - 1),
    chunks=st.lists(st.integers(0, 10**9), max_size=6),
)
def test_a_long_set_cut_short_anywhere_gets_eproto_and_applies_nothing(
    server: PureServer, cut: int, chunks: list[int]
) -> None:
    before = server.get()
    assert server.exchange([*chunked(LONG_SET[:cut], chunks), b""]) == (b"errno=-71\n\n", True)
    assert server.get() == before
    assert server.exchange([b"get=1\n\n"]) == (before.encode(), False)


@settings(max_examples=40)
@given(
    line=st.sampled_from(LINE_STARTS[1:]),
    spoilt=st.sampled_from(SPOILT_LINES),
    chunks=st.lists(st.integers(0, 10**9), max_size=6),
)
def test_a_long_set_spoilt_anywhere_gets_its_errno_applies_nothing_and_the_connection_goes_on(
    server: PureServer, line: int, spoilt: bytes, chunks: list[int]
) -> None:
    before = server.get()
    request = LONG_SET[:line] + spoilt + b"\n" + LONG_SET[line:] + b"get=1\n\n"
    replies, closing = server.exchange(chunked(request, chunks))
    status, _, rest = replies.partition(b"\n\n")
    assert status in (b"errno=-22", b"errno=-71") and not closing
    assert server.get() == before
    assert rest == before.encode(), "the get after it is answered"


@settings(max_examples=20)
@given(line=st.sampled_from(LINE_STARTS[1:]), chunks=st.lists(st.integers(0, 10**9), max_size=6))
def test_a_long_set_with_an_overlong_line_anywhere_gets_einval_and_applies_nothing(
    server: PureServer, line: int, chunks: list[int]
) -> None:
    before = server.get()
    request = LONG_SET[:line] + b"x" * (uapi.MAX_LINE_BYTES + 1) + LONG_SET[line:]
    assert server.exchange(chunked(request, chunks)) == (b"errno=-22\n\n", True)
    assert server.get() == before
    assert server.exchange([b"get=1\n\n"]) == (before.encode(), False)


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
