"""The configuration socket's one client (wgpy.client), against the server's own socket and
against a fake daemon that answers one request with fixed bytes. How `wgpy show|set` word its
errors is tests/test_cli_wg.py's."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import pytest
from fake_daemon import IFNAME, FakeDaemon

from wgpy import client
from wgpy.errors import UapiError
from wgpy.io import uapi_server
from wgpy.uapi import CaptureRequest, DeviceUpdate

Answering = Callable[[bytes], FakeDaemon]


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WGPY_RUN_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def answering(run_dir: Path) -> Iterator[Answering]:
    """`answering(reply)`: a fake daemon serving IFNAME that answers one request with `reply`."""
    with ExitStack() as stack:
        yield lambda reply: stack.enter_context(closing(FakeDaemon(run_dir, reply)))


def test_the_sockets_are_wg_s_unless_wgpy_run_dir_moves_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WGPY_RUN_DIR", raising=False)
    assert client.socket_path("wg0") == Path("/var/run/wireguard/wg0.sock")
    monkeypatch.setenv("WGPY_RUN_DIR", "/run/elsewhere")
    assert client.socket_path("wg0") == Path("/run/elsewhere/wg0.sock")


def test_a_user_other_than_root_has_the_sockets_in_their_own_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = os.geteuid() or 4242  # as root, another user's runtime directory is made for the test
    theirs, inherited = tmp_path / "theirs", tmp_path / "inherited"
    theirs.mkdir()
    inherited.mkdir()
    if os.geteuid() == 0:
        os.chown(theirs, user, -1)
        os.chown(inherited, user + 1, -1)
    else:
        inherited = Path("/")  # root's: not this user's
    monkeypatch.delenv("WGPY_RUN_DIR", raising=False)
    monkeypatch.setattr(client.os, "geteuid", lambda: user)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(theirs))
    assert client.socket_path("wg0") == theirs / "wireguard" / "wg0.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(inherited))  # as su or setpriv leave it
    assert client.socket_path("wg0") == Path("/var/run/wireguard/wg0.sock")


def test_the_server_listens_where_the_client_connects(run_dir: Path) -> None:
    with uapi_server.listen("wg0") as server, client.connect("wg0"):
        assert Path(server.getsockname()) == client.socket_path("wg0")


def test_a_socket_that_refuses_the_connection_is_removed(run_dir: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(run_dir / "wg0.sock"))  # bound, never listening
    with pytest.raises(ConnectionRefusedError):
        client.get_device("wg0")
    assert not (run_dir / "wg0.sock").exists()


def test_set_raises_the_errno_the_device_replies(answering: Answering) -> None:
    fake = answering(b"errno=-98\n\n")
    with pytest.raises(UapiError) as caught:
        client.set_device(IFNAME, DeviceUpdate(listen_port=51820))
    assert caught.value.errno == errno.EADDRINUSE
    assert fake.request == b"set=1\nlisten_port=51820\n\n"


def test_a_reply_cut_short_is_a_protocol_error(answering: Answering) -> None:
    answering(b"")
    with pytest.raises(UapiError) as caught:
        client.set_device(IFNAME, DeviceUpdate(listen_port=51820))
    assert caught.value.errno == errno.EPROTO


def test_a_device_that_hangs_up_on_stats_has_none(answering: Answering) -> None:
    answering(b"")  # as wireguard-go does
    assert client.get_stats(IFNAME) is None


def test_a_capture_returns_the_stream_s_first_bytes_with_its_socket(answering: Answering) -> None:
    fake = answering(b"errno=0\n\nfirst records")
    sock, first = client.open_capture(IFNAME, CaptureRequest(keylog=True))
    with sock:
        assert first + sock.recv(100) == b"first records"
    assert fake.request == b"capture=1\nkeylog=true\n\n"


@pytest.mark.parametrize(
    ("reply", "error"),
    [(b"errno=-1\n\n", errno.EPERM), (b"", errno.EOPNOTSUPP)],
    ids=["refused", "not-offered"],
)
def test_a_capture_the_daemon_does_not_serve_raises_why(
    answering: Answering, reply: bytes, error: int
) -> None:
    answering(reply)
    with pytest.raises(UapiError) as caught:
        client.open_capture(IFNAME, CaptureRequest())
    assert caught.value.errno == error
