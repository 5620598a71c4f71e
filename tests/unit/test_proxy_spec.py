"""`wgpy proxy`'s options (wgpy.proxy.spec, wgpy.cli.proxy): listeners and forwards read as
written, loopback by default, a non-loopback listener refused without --socks5-auth, the password
file refused unless only its owner can read it, and every error one line, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from wgpy.cli import proxy as cli
from wgpy.errors import ConfigError
from wgpy.proxy import spec
from wgpy.proxy.spec import Forward, Listen

CONFIG = "[Interface]\nPrivateKey = oK56DE9Ue9zK76rAc8pBl6opph+1v36lm7cXXsQKrQM=\n"


@pytest.mark.parametrize(
    ("value", "listen"),
    [
        ("1080", Listen("127.0.0.1", 1080)),
        ("0.0.0.0:1080", Listen("0.0.0.0", 1080)),
        ("[::1]:1080", Listen("::1", 1080)),
        ("localhost:0", Listen("localhost", 0)),
    ],
)
def test_a_listener_binds_loopback_unless_an_address_is_given(value: str, listen: Listen) -> None:
    assert spec.parse_listen("--socks5", value) == listen


def test_forwards_read_both_ways_with_bracketed_ipv6() -> None:
    assert spec.parse_local_forward("tcp:8080:svc.example:80") == Forward(
        "tcp", Listen("127.0.0.1", 8080), "svc.example", 80
    )
    assert spec.parse_local_forward("udp:[::1]:5353:[fd00::53]:53") == Forward(
        "udp", Listen("::1", 5353), "fd00::53", 53
    )
    assert spec.parse_remote_forward("TCP:2222:127.0.0.1:22") == Forward(
        "tcp", Listen("0.0.0.0", 2222), "127.0.0.1", 22
    )


@pytest.mark.parametrize(
    "value", ["sctp:1:h:2", "tcp:1:h", "tcp:0:h:2", "tcp:1:h:65536", "tcp:1:fd00::1:2", "tcp:x:h:2"]
)
def test_a_malformed_forward_is_a_spec_error_naming_it(value: str) -> None:
    with pytest.raises(spec.SpecError, match="-L"):
        spec.parse_local_forward(value)


def test_a_non_loopback_listener_is_refused_without_authentication() -> None:
    listens = [Listen("127.0.0.1", 1), Listen("198.18.0.1", 2)]
    refusal = spec.exposure_refusal(listens, authenticated=False)
    assert refusal is not None and "198.18.0.1:2" in refusal and "\n" not in refusal
    assert spec.exposure_refusal(listens, authenticated=True) is None
    assert spec.exposure_refusal(listens[:1], authenticated=False) is None


def test_credentials_are_user_colon_password_lines() -> None:
    text = "# users\nalice:pass:with:colons\n\nbob:x\n"
    assert spec.parse_credentials(text, "users") == {"alice": "pass:with:colons", "bob": "x"}
    with pytest.raises(ConfigError, match="users:2: not user:password"):
        spec.parse_credentials("a:b\nnocolon\n", "users")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = cli.run(argv)
    return status, capsys.readouterr().err


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "wg0.conf"
    path.write_text(CONFIG)
    return path


def test_the_command_refuses_a_public_listener_without_auth_in_one_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = run([str(config), "--http", "0.0.0.0:3128"], capsys)
    assert status == 1
    assert err.startswith("wgpy proxy: refusing to listen on 0.0.0.0:3128") and err.count("\n") == 1


def test_the_command_refuses_a_password_file_others_can_read(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users"
    users.write_text("alice:secret\n")
    users.chmod(0o644)
    status, err = run([str(config), "--socks5", "1080", "--socks5-auth", str(users)], capsys)
    assert status == 1 and "mode 0644" in err and "secret" not in err


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[Interface]\nListenPort = nope\n", ":2: ListenPort"),
        (
            "[Interface]\nAddress = 192.0.2.2/32\n",
            ": PrivateKey: missing in [Interface]",
        ),  # before anything
    ],
)
def test_a_config_error_names_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text(text)
    status, err = run([str(bad), "--socks5", "1080"], capsys)
    assert status == 1 and f"{bad}{where}" in err


def test_nothing_to_serve_is_an_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run([str(config)], capsys)
    assert status == 1 and "nothing to serve" in err
