"""The pieces of `wgpy run` that need no namespace: why it cannot work on a machine (each
setting read from a file the test writes), the socket broker between two ends in one process,
-p's syntax, the default interface name, exit statuses, and where a user's sockets live."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from wgpy import client
from wgpy.cli.proxy import choose_stack
from wgpy.cli.run import interface_name, parse_publish
from wgpy.io import socket_broker, userns
from wgpy.proxy.spec import Forward, Listen, SpecError
from wgpy.run.inside import exit_status


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine where everything allows `wgpy run`: the sysctls as files, a TUN device file."""
    settings = {
        "_MAX_USER_NAMESPACES": "15000",
        "_USERNS_CLONE": "1",
        "_APPARMOR_RESTRICT": "0",
    }
    for attribute, value in settings.items():
        path = tmp_path / attribute
        path.write_text(value + "\n")
        monkeypatch.setattr(userns, attribute, path)
    tun = tmp_path / "tun"
    tun.write_text("")
    tun.chmod(0o666)
    monkeypatch.setattr(userns, "TUN_DEVICE", tun)
    monkeypatch.setattr(userns.os, "geteuid", lambda: 1000)
    return tmp_path


def test_a_machine_that_allows_it_has_no_reason(machine: Path) -> None:
    assert userns.unavailable_reason() is None


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("_MAX_USER_NAMESPACES", "0", "user.max_user_namespaces = 0"),
    ("_USERNS_CLONE", "0", "kernel.unprivileged_userns_clone = 0"),
    ("_APPARMOR_RESTRICT", "1", "kernel.apparmor_restrict_unprivileged_userns = 1"),
])  # fmt: skip
def test_each_setting_that_forbids_it_is_named_with_the_way_out(
    machine: Path, setting: str, value: str, named: str
) -> None:
    (machine / setting).write_text(value + "\n")

    reason = userns.unavailable_reason()

    assert reason is not None and named in reason and "wgpy proxy" in reason
    assert "\n" not in reason


def test_a_missing_or_closed_tun_device_is_named(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tun = machine / "tun"
    tun.chmod(0o600)
    with monkeypatch.context() as as_another_user:  # root could open it whatever its mode
        as_another_user.setattr(userns.os, "access", lambda path, mode: False)
        closed = userns.unavailable_reason()
    tun.unlink()
    missing = userns.unavailable_reason()

    assert closed is not None and "not accessible" in closed and "(mode 600)" in closed
    assert missing is not None and missing.startswith(f"no {tun}") and "wgpy proxy" in missing


def test_the_broker_passes_the_sockets_it_makes_and_the_errno_that_stopped_them() -> None:
    def make(request: dict[str, Any]) -> list[socket.socket]:
        if request["kind"] == "refused":
            raise OSError(errno.EADDRINUSE, "taken")
        return [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]

    client_end, server_end = socket_broker.channel()
    ended: list[bool] = []
    thread = socket_broker.serve(server_end, make, on_end=lambda: ended.append(True))
    broker = socket_broker.Broker(client_end)
    (made,) = broker.request(kind="udp")
    with made:
        made.bind(("127.0.0.1", 0))
        assert made.type == socket.SOCK_DGRAM
    with pytest.raises(OSError) as refused:
        broker.request(kind="refused")
    broker.close()
    thread.join(5)

    assert refused.value.errno == errno.EADDRINUSE
    assert ended == [True]


@pytest.mark.parametrize(("value", "forward"), [
    ("8080:80", Forward("tcp", Listen("127.0.0.1", 8080), "127.0.0.1", 80)),
    ("127.0.0.1:8080:80", Forward("tcp", Listen("127.0.0.1", 8080), "127.0.0.1", 80)),
    ("0.0.0.0:53:5353/udp", Forward("udp", Listen("0.0.0.0", 53), "127.0.0.1", 5353)),
    ("[::1]:8080:80/tcp", Forward("tcp", Listen("::1", 8080), "127.0.0.1", 80)),
])  # fmt: skip
def test_publish_reads_as_podman_writes_it(value: str, forward: Forward) -> None:
    assert parse_publish(value) == forward


@pytest.mark.parametrize("value", ["80", "8080:80/sctp", "a:b:c:d", "8080:http", "99999:80"])
def test_publish_refuses_what_does_not_read(value: str) -> None:
    with pytest.raises(SpecError, match="-p"):
        parse_publish(value)


def test_the_interface_is_named_after_the_config_as_wg_quick_does() -> None:
    assert interface_name("/etc/wireguard/wg0.conf") == "wg0"
    assert interface_name("a name far too long for an interface.conf") == "wgrun"


def test_exit_statuses_are_a_shells() -> None:
    assert [exit_status(code) for code in (0, 3, -15, -9)] == [0, 3, 143, 137]


def test_a_user_without_xdg_runtime_dir_has_the_sockets_in_run_user_uid_when_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = os.stat(tmp_path).st_uid or 4242
    (tmp_path / str(uid)).mkdir()
    os.chown(tmp_path / str(uid), uid, -1)
    monkeypatch.delenv("WGPY_RUN_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(client, "USER_RUNTIME_DIRS", tmp_path)
    monkeypatch.setattr(client.os, "geteuid", lambda: uid)
    theirs = client.socket_path("wg0")
    monkeypatch.setattr(client.os, "geteuid", lambda: uid + 1)
    none_of_theirs = client.socket_path("wg0")

    assert theirs == tmp_path / str(uid) / "wireguard" / "wg0.sock"
    assert none_of_theirs == Path("/var/run/wireguard/wg0.sock")


def test_the_proxys_auto_stack_is_kernel_where_run_would_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(userns, "unavailable_reason", lambda: None)
    allowed = choose_stack("auto")
    monkeypatch.setattr(userns, "unavailable_reason", lambda: "no /dev/net/tun")
    refused = choose_stack("auto")

    assert (allowed, refused) == ("kernel", "userspace")
    assert [choose_stack(stack) for stack in ("kernel", "userspace", "host")] == [
        "kernel", "userspace", "host",
    ]  # fmt: skip
