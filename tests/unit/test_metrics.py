"""`wgpy metrics`: the Prometheus text (wgpy/metrics.py) and the server (wgpy/cli/metrics.py).

The exposition format: https://prometheus.io/docs/instrumenting/exposition_formats/. A live
daemon is scraped in tests/netns/test_metrics.py.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scrapes import get, lines_of

from wgpy import metrics
from wgpy.cli import metrics as cli
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import public_key, to_base64
from wgpy.uapi import (
    DeviceState,
    DeviceStats,
    PeerState,
    PeerStats,
    format_errno,
    format_get,
    format_stats,
)

PRIVATE_KEY = bytes(range(1, 33))
PEER_KEY = bytes(range(100, 132))
OTHER_KEY = bytes(range(200, 232))
PEER = to_base64(PEER_KEY)
PEER_LABELS = f'interface="wg0",public_key="{PEER}",allowed_ips="192.0.2.2/32,fd00:2::/64"'
# Names and labels as the exposition format defines them.
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (\S+)')


def a_state() -> DeviceState:
    peer = PeerState(
        public_key=PEER_KEY,
        endpoint=Endpoint("198.18.0.2", 51820),
        last_handshake_time=(1_700_000_000, 500_000_000),
        tx_bytes=1234,
        rx_bytes=5678,
        allowed_ips=[
            ipaddress.ip_network("192.0.2.2/32"),
            ipaddress.ip_network("fd00:2::/64"),
        ],
    )
    return DeviceState(PRIVATE_KEY, 51820, 0, [peer])


def some_stats() -> DeviceStats:
    peer = PeerStats(PEER_KEY, {"decrypt_failed": 3}, 7, 2, 12.5)
    return DeviceStats({"invalid_mac": 4, "decrypt_failed": 3}, 5, [peer])


# -- the text -----------------------------------------------------------------------------------


def test_every_metric_has_help_and_type_lines_before_its_samples() -> None:
    text = metrics.render("wg0", a_state(), some_stats())
    seen: list[str] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            seen.append(line.split(" ")[2])
        elif line.startswith("# TYPE "):
            name, kind = line.split(" ")[2:]
            assert name == seen[-1] and kind in ("counter", "gauge")
        else:
            assert SAMPLE.fullmatch(line), line
            assert line.split("{")[0] == seen[-1]
    assert len(seen) == len(set(seen)), "each metric is one family, in one place"
    assert text.endswith("\n")


def test_counters_end_in_total_and_gauges_do_not() -> None:
    for family in metrics.families("wg0", a_state(), some_stats()):
        assert METRIC_NAME.fullmatch(family.name)
        assert family.name.endswith("_total") == (family.kind == "counter"), family.name


def test_peer_traffic_has_the_community_exporters_names_and_labels() -> None:
    text = metrics.render("wg0", a_state(), None)
    assert lines_of("wireguard_sent_bytes_total", text) == [
        f"wireguard_sent_bytes_total{{{PEER_LABELS}}} 1234"
    ]
    assert lines_of("wireguard_received_bytes_total", text) == [
        f"wireguard_received_bytes_total{{{PEER_LABELS}}} 5678"
    ]
    assert lines_of("wireguard_latest_handshake_seconds", text) == [
        f"wireguard_latest_handshake_seconds{{{PEER_LABELS}}} 1700000000.5"
    ]
    assert "# TYPE wireguard_sent_bytes_total counter" in text
    assert "# TYPE wireguard_latest_handshake_seconds gauge" in text


def test_the_endpoint_is_a_label_of_the_peer_info_only() -> None:
    text = metrics.render("wg0", a_state(), None)
    assert lines_of("wireguard_peer_info", text) == [
        f'wireguard_peer_info{{{PEER_LABELS},endpoint="198.18.0.2:51820"}} 1'
    ]
    assert text.count("endpoint=") == 1


def test_a_peer_without_endpoint_or_handshake_has_empty_labels_and_zero() -> None:
    state = DeviceState(PRIVATE_KEY, 51820, 0, [PeerState(public_key=PEER_KEY)])
    text = metrics.render("wg0", state, None)
    bare = f'interface="wg0",public_key="{PEER}",allowed_ips=""'
    assert f'wireguard_peer_info{{{bare},endpoint=""}} 1' in text
    assert f"wireguard_latest_handshake_seconds{{{bare}}} 0" in text


def test_the_device_info_names_the_interface_by_its_public_key() -> None:
    text = metrics.render("wg0", a_state(), None)
    device_key = to_base64(public_key(PRIVATE_KEY))
    assert lines_of("wireguard_device_info", text) == [
        f'wireguard_device_info{{interface="wg0",public_key="{device_key}",listen_port="51820"}} 1'
    ]
    assert 'wireguard_peers{interface="wg0"} 1' in text


def test_a_device_without_wgpys_statistics_has_only_the_standard_metrics() -> None:
    text = metrics.render("wg0", a_state(), None)
    assert "wgpy_" not in text
    assert "wireguard_sent_bytes_total" in text


def test_every_drop_reason_is_a_series_from_the_start() -> None:
    text = metrics.render("wg0", a_state(), some_stats())
    drops = lines_of("wgpy_drops_total", text)
    assert len(drops) == len(DropReason)
    assert 'wgpy_drops_total{interface="wg0",reason="invalid_mac"} 4' in drops
    assert 'wgpy_drops_total{interface="wg0",reason="no_route"} 0' in drops


def test_a_drop_reason_this_wgpy_does_not_know_is_exported_as_the_daemon_names_it() -> None:
    stats = DeviceStats({"from_the_future": 2}, 0, [])
    text = metrics.render("wg0", a_state(), stats)
    assert 'wgpy_drops_total{interface="wg0",reason="from_the_future"} 2' in text


def test_per_peer_counters_come_from_the_stats_extension() -> None:
    text = metrics.render("wg0", a_state(), some_stats())
    peer = f'interface="wg0",public_key="{PEER}"'
    assert f'wgpy_peer_drops_total{{{peer},reason="decrypt_failed"}} 3' in text
    assert f"wgpy_handshake_attempts_total{{{peer}}} 7" in text
    assert f"wgpy_cookie_replies_received_total{{{peer}}} 2" in text
    assert f"wgpy_keypair_age_seconds{{{peer}}} 12.5" in text
    assert 'wgpy_cookie_replies_sent_total{interface="wg0"} 5' in text


def test_a_peer_without_a_session_has_no_keypair_age() -> None:
    stats = DeviceStats({}, 0, [PeerStats(PEER_KEY, keypair_age=None)])
    text = metrics.render("wg0", a_state(), stats)
    assert lines_of("wgpy_keypair_age_seconds", text) == []
    assert "# TYPE wgpy_keypair_age_seconds gauge" in text


def test_a_peer_removed_between_the_get_and_the_stats_is_left_out() -> None:
    stats = DeviceStats({}, 0, [PeerStats(PEER_KEY), PeerStats(OTHER_KEY, handshake_attempts=1)])
    text = metrics.render("wg0", a_state(), stats)
    assert to_base64(OTHER_KEY) not in text


def test_a_label_value_escapes_backslash_double_quote_and_line_feed() -> None:
    assert metrics.escape_label_value('a\\b"c\nd') == r"a\\b\"c\nd"
    family = metrics.Family("x", "gauge", "h")
    family.add(1, interface='we"ird\n')
    assert metrics.exposition([family]).splitlines()[-1] == r'x{interface="we\"ird\n"} 1'


def unescape_label_value(text: str) -> str:
    """The reading side of the format: \\\\, \\" and \\n, nothing else."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), text)


@given(st.text())
def test_any_label_value_reads_back_and_stays_on_one_line_between_its_quotes(value: str) -> None:
    escaped = metrics.escape_label_value(value)
    assert "\n" not in escaped
    assert re.fullmatch(r'(?:[^"\\]|\\.)*', escaped, re.DOTALL)
    assert unescape_label_value(escaped) == value


def test_help_text_escapes_backslash_and_line_feed_but_not_double_quotes() -> None:
    assert metrics.escape_help('a\\b\n"c"') == r'a\\b\n"c"'
    family = metrics.Family("x", "counter", "two\nlines")
    assert metrics.exposition([family]) == "# HELP x two\\nlines\n# TYPE x counter\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (2**64 - 1, "18446744073709551615"),
        (3.0, "3"),
        (0.125, "0.125"),
        (1e300, "1e+300"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
    ],
)
def test_values_are_written_as_the_format_reads_them(value: float, text: str) -> None:
    assert metrics.format_value(value) == text


# -- the listening address ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9586", "127.0.0.1", 9586),
        ("127.1.2.3:0", "127.1.2.3", 0),
        ("[::1]:80", "::1", 80),
    ],
)
def test_a_loopback_address_is_accepted(text: str, host: str, port: int) -> None:
    assert cli.parse_listen(text) == cli.Listen(host=host, port=port)


def test_a_unix_socket_path_is_accepted() -> None:
    assert cli.parse_listen("unix:/run/wgpy/m.sock") == cli.Listen(path=Path("/run/wgpy/m.sock"))


@pytest.mark.parametrize("text", ["0.0.0.0:9586", "198.18.0.1:9586", "[::]:9586", "[fd00::1]:1"])
def test_any_other_address_is_refused_because_there_is_no_authentication(text: str) -> None:
    with pytest.raises(ValueError, match="no authentication"):
        cli.parse_listen(text)


@pytest.mark.parametrize(
    "text", ["9586", "localhost:9586", "127.0.0.1", "127.0.0.1:port", "127.0.0.1:65536", "::1:80",
             "unix:"],
)  # fmt: skip
def test_a_malformed_address_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"ADDR:PORT|IP address|brackets|path"):
        cli.parse_listen(text)


def test_the_command_refuses_a_public_address_and_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.run(["wg0", "--listen", "0.0.0.0:9586"]) == 2
    assert "refusing to listen on 0.0.0.0:9586" in capsys.readouterr().err


def test_the_command_refuses_an_invalid_interface_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.run(["../etc", "--listen", "unix:/nonexistent/m.sock"]) == 2
    assert "invalid interface name" in capsys.readouterr().err


# -- scraping through the configuration socket -------------------------------------------------


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WGPY_RUN_DIR", str(tmp_path))
    return tmp_path


def test_an_interface_that_is_not_running_scrapes_as_503_with_the_reason(run_dir: Path) -> None:
    status, body = cli.scrape("wg0")
    assert status is HTTPStatus.SERVICE_UNAVAILABLE
    assert (
        body
        == f"wg0: the interface is not running ({run_dir}/wg0.sock: No such file or directory)\n"
    )


@pytest.fixture
def fake_daemon(run_dir: Path) -> Iterator[list[bytes]]:
    """A configuration socket for wg0 answering `get` with a_state() and `stats` with
    some_stats(), one request per connection; yields the requests it got."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(run_dir / "wg0.sock"))
    server.listen()
    replies = {b"get=1\n\n": format_get(a_state()), b"stats=1\n\n": format_stats(some_stats())}
    requests: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                request = connection.recv(4096)
                requests.append(request)
                connection.sendall(replies.get(request, format_errno(22)).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield requests
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    thread.join(5)


def test_a_scrape_asks_for_the_state_and_the_statistics(fake_daemon: list[bytes]) -> None:
    status, body = cli.scrape("wg0")
    assert status is HTTPStatus.OK
    assert body == metrics.render("wg0", a_state(), some_stats())
    assert fake_daemon == [b"get=1\n\n", b"stats=1\n\n"]


# -- the server, on a unix socket -------------------------------------------------------------


@contextmanager
def served(path: Path, scrape: cli.Scrape) -> Iterator[Path]:
    """`open_server` on the unix socket `path`, serving from a thread for the block."""
    server = cli.open_server(cli.Listen(path=path), scrape)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Path]:
    """A server whose scrape answers "up 1"; yields its socket's path."""
    with served(tmp_path / "metrics.sock", lambda: (HTTPStatus.OK, "up 1\n")) as path:
        yield path


def test_get_metrics_answers_with_the_exposition_content_type(serving: Path) -> None:
    assert get(serving, "/metrics") == (200, metrics.CONTENT_TYPE, "up 1\n")


def test_other_paths_are_not_found(serving: Path) -> None:
    assert get(serving, "/secrets")[0] == 404


def test_the_socket_is_for_its_owner_and_group_only(serving: Path) -> None:
    assert stat.S_IMODE(serving.stat().st_mode) == cli.SOCKET_MODE


def test_a_503_from_the_scrape_reaches_the_client_as_plain_text(tmp_path: Path) -> None:
    down = (HTTPStatus.SERVICE_UNAVAILABLE, "wg0: down\n")
    with served(tmp_path / "metrics.sock", lambda: down) as path:
        assert get(path, "/metrics") == (503, "text/plain", "wg0: down\n")


def test_closing_the_server_removes_its_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.sock"
    cli.open_server(cli.Listen(path=path), lambda: (HTTPStatus.OK, "")).server_close()
    assert not path.exists()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "metrics.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # bound, never listening: what a killed server leaves
    with served(path, lambda: (HTTPStatus.OK, "up 1\n")):
        assert get(path, "/metrics")[2] == "up 1\n"


def test_a_socket_another_server_listens_on_is_left_alone(serving: Path) -> None:
    with pytest.raises(OSError, match="Address already in use"):
        cli.open_server(cli.Listen(path=serving), lambda: (HTTPStatus.OK, ""))
    assert get(serving, "/metrics")[0] == 200


def test_a_file_that_is_not_a_socket_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(OSError):
        cli.open_server(cli.Listen(path=path), lambda: (HTTPStatus.OK, ""))
    assert path.read_text() == "keep me"
