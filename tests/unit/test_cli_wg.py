"""`wgpy show|showconf|set|setconf|addconf|syncconf`: wg(8) over the configuration socket.

The expected texts below are what /usr/bin/wg (wireguard-tools v1.0.20210914) printed for the same
replies and arguments; the tests at the end check that against wg itself, on a fake device, and
tests/netns/test_cli_wg.py on a real wireguard-go in a network namespace.
"""

from __future__ import annotations

import errno
import ipaddress
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from wg_commands import Result, in_process, wg_tool, write_file

from wgpy import uapi
from wgpy.cli import wg
from wgpy.client import DEFAULT_RUN_DIR
from wgpy.core import keys
from wgpy.lab.netns import missing_requirements, unique_ifname
from wgpy.uapi import DeviceState, DeviceUpdate, PeerState, PeerUpdate

# Keys from the example on https://www.wireguard.com/xplatform/, in hex and in base64.
PRIVATE_HEX = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a"
PRIVATE = "6EtabScXwQA6E7QxVwNT26ypFGzxUMX4V1aA/rpSAno="
PUBLIC = "wVMuGz01CPx+vDVPpnliDzPyhxSVQuaExnt7DYE2Kyk="
PEER1_HEX = "b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33"
PEER1 = "uFmW/sycfx/G0lcqdu2hHVm80gvo5UOxXOS9hajnWjM="
PSK_HEX = "188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52"
PSK = "GIUVCT6VL18i6GXO8wEucvi18LWYrAMJ1drM47cPz1I="
PEER2_HEX = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376"
PEER2 = "WEAuaVuhdyscyTCXVfBDJR6nf9zxD75jmJzrfhkyE3Y="
PEER3_HEX = "662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58"
PEER3 = "Zi4U/VlFVvUiYEcDNANRJYkDtk81VTdj8ZQmqypRXFg="
ZERO_HEX = "0" * 64

NOW = 1_700_000_000

# A `get` reply as wireguard-go writes it. The peers come in an order `wg show` changes: peer 3
# has had no handshake, peer 2 had one 40,000,000 s ago, peer 1 65 s ago.
GET_REPLY = f"""\
private_key={PRIVATE_HEX}
listen_port=51820
fwmark=3405691582
public_key={PEER3_HEX}
preshared_key={ZERO_HEX}
protocol_version=1
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=2000000000000
rx_bytes=5
persistent_keepalive_interval=0
public_key={PEER2_HEX}
preshared_key={ZERO_HEX}
protocol_version=1
endpoint=192.0.2.9:1
last_handshake_time_sec={NOW - 40_000_000}
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=3661
public_key={PEER1_HEX}
preshared_key={PSK_HEX}
protocol_version=1
endpoint=[::ffff:192.0.2.7]:51820
last_handshake_time_sec={NOW - 65}
last_handshake_time_nsec=5
tx_bytes=4781506
rx_bytes=1260
persistent_keepalive_interval=25
allowed_ip=192.0.2.0/24
allowed_ip=::102:304/128
allowed_ip=::ffff:0:1/128
errno=0

"""

EMPTY_REPLY = "errno=0\n\n"

SHOW = f"""\
interface: wg0
  public key: {PUBLIC}
  private key: (hidden)
  listening port: 51820
  fwmark: 0xcafebabe

peer: {PEER1}
  preshared key: (hidden)
  endpoint: [::ffff:192.0.2.7]:51820
  allowed ips: 192.0.2.0/24, ::1.2.3.4/128, ::ffff:0.0.0.1/128
  latest handshake: 1 minute, 5 seconds ago
  transfer: 1.23 KiB received, 4.56 MiB sent
  persistent keepalive: every 25 seconds

peer: {PEER2}
  endpoint: 192.0.2.9:1
  allowed ips: (none)
  latest handshake: 1 year, 97 days, 23 hours, 6 minutes, 40 seconds ago
  persistent keepalive: every 1 hour, 1 minute, 1 second

peer: {PEER3}
  allowed ips: (none)
  transfer: 5 B received, 1.82 TiB sent
"""

DUMP = f"""\
{PRIVATE}\t{PUBLIC}\t51820\t0xcafebabe
{PEER3}\t(none)\t(none)\t(none)\t0\t5\t2000000000000\toff
{PEER2}\t(none)\t192.0.2.9:1\t(none)\t{NOW - 40_000_000}\t0\t0\t3661
{PEER1}\t{PSK}\t[::ffff:192.0.2.7]:51820\t192.0.2.0/24,::1.2.3.4/128,::ffff:0.0.0.1/128\t\
{NOW - 65}\t1260\t4781506\t25
"""

SHOWCONF = f"""\
[Interface]
ListenPort = 51820
FwMark = 0xcafebabe
PrivateKey = {PRIVATE}

[Peer]
PublicKey = {PEER3}

[Peer]
PublicKey = {PEER2}
Endpoint = 192.0.2.9:1
PersistentKeepalive = 3661

[Peer]
PublicKey = {PEER1}
PresharedKey = {PSK}
AllowedIPs = 192.0.2.0/24, ::1.2.3.4/128, ::ffff:0.0.0.1/128
Endpoint = [::ffff:192.0.2.7]:51820
PersistentKeepalive = 25
"""

SHOW_USAGE = (
    "Usage: wgpy show { <interface> | all | interfaces } [public-key | private-key | "
    "listen-port | fwmark | peers | preshared-keys | endpoints | allowed-ips | latest-handshakes "
    "| transfer | persistent-keepalive | dump]\n"
)


# A fake device: a UAPI socket that answers with fixed text --------------------------------------


class FakeDevice:
    """Answers `get` with `reply` and `set` with `set_errno`; records every request it reads."""

    def __init__(self, path: Path, reply: str = EMPTY_REPLY, set_errno: int = 0) -> None:
        self.reply, self.set_errno = reply, set_errno
        self.requests: list[str] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def sets(self) -> list[str]:
        return [request for request in self.requests if request.startswith("set=1\n")]

    def close(self) -> None:
        path = Path(self._listener.getsockname())
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        self._thread.join()
        path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        buffer = b""
        reader = uapi.RequestReader()
        requests: list[uapi.Request] = []
        while not requests:
            chunk = connection.recv(65536)
            if not chunk:
                return  # a probe: connected and hung up, as `wg show interfaces` does
            buffer += chunk
            requests = list(reader.feed(chunk))
        self.requests.append(buffer.decode())
        operation = requests[0].operation
        answer = self.reply if operation == "get" else uapi.format_errno(self.set_errno)
        with suppress(OSError):  # the client may have left early
            connection.sendall(answer.encode())


@pytest.fixture
def run_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """WGPY_RUN_DIR for the test: short, since a socket path has at most 107 bytes."""
    directory = Path(tempfile.mkdtemp(prefix="wgpy-", dir="/tmp"))
    monkeypatch.setenv("WGPY_RUN_DIR", str(directory))
    monkeypatch.delenv("WG_HIDE_KEYS", raising=False)
    monkeypatch.delenv("WG_COLOR_MODE", raising=False)
    monkeypatch.setattr(wg, "wall_clock", lambda: NOW)
    yield directory
    shutil.rmtree(directory)


@contextmanager
def fake_device(
    directory: Path, name: str = "wg0", reply: str = EMPTY_REPLY, set_errno: int = 0
) -> Iterator[FakeDevice]:
    device = FakeDevice(directory / f"{name}.sock", reply, set_errno)
    try:
        yield device
    finally:
        device.close()


@pytest.fixture
def device(run_dir: Path) -> Iterator[FakeDevice]:
    """The fake interface wg0, reporting GET_REPLY."""
    with fake_device(run_dir, reply=GET_REPLY) as fake:
        yield fake


@pytest.fixture
def wgpy(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `wgpy COMMAND ARGS...` in this process: (exit status, stdout, stderr)."""
    return in_process(capsys)


# show ---------------------------------------------------------------------------------------------


def test_show_prints_the_interface_and_its_peers_most_recent_handshake_first(
    device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    assert wgpy("show", "wg0") == (0, SHOW, "")
    assert device.requests == ["get=1\n\n"]


def test_show_reveals_private_and_preshared_keys_only_when_wg_hide_keys_is_never(
    device: FakeDevice, wgpy: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_HIDE_KEYS", "never")
    _, out, _ = wgpy("show", "wg0")
    assert f"  private key: {PRIVATE}\n" in out
    assert f"  preshared key: {PSK}\n" in out
    assert "(hidden)" not in out


def test_show_colors_its_output_as_wg_does_when_wg_color_mode_is_always(
    device: FakeDevice, wgpy: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_COLOR_MODE", "always")
    _, out, _ = wgpy("show", "wg0")
    lines = out.splitlines()
    assert lines[0] == "\x1b[0m\x1b[32m\x1b[1minterface\x1b[0m: \x1b[32mwg0\x1b[0m"
    assert lines[6] == f"\x1b[33m\x1b[1mpeer\x1b[0m: \x1b[33m{PEER1}\x1b[0m"
    assert lines[9] == (
        "  \x1b[1mallowed ips\x1b[0m: 192.0.2.0\x1b[36m/\x1b[0m24, ::1.2.3.4\x1b[36m/\x1b[0m128, "
        "::ffff:0.0.0.1\x1b[36m/\x1b[0m128"
    )
    assert lines[10] == (
        "  \x1b[1mlatest handshake\x1b[0m: 1 \x1b[36mminute\x1b[0m, 5 \x1b[36mseconds\x1b[0m ago"
    )


def test_show_dump_prints_every_value_tab_separated_in_the_device_s_peer_order(
    device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    assert wgpy("show", "wg0", "dump") == (0, DUMP, "")


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("public-key", f"{PUBLIC}\n"),
        ("private-key", f"{PRIVATE}\n"),
        ("listen-port", "51820\n"),
        ("fwmark", "0xcafebabe\n"),
        ("peers", f"{PEER3}\n{PEER2}\n{PEER1}\n"),
        ("preshared-keys", f"{PEER3}\t(none)\n{PEER2}\t(none)\n{PEER1}\t{PSK}\n"),
        (
            "endpoints",
            f"{PEER3}\t(none)\n{PEER2}\t192.0.2.9:1\n{PEER1}\t[::ffff:192.0.2.7]:51820\n",
        ),
        (
            "allowed-ips",
            f"{PEER3}\t(none)\n{PEER2}\t(none)\n"
            f"{PEER1}\t192.0.2.0/24 ::1.2.3.4/128 ::ffff:0.0.0.1/128\n",
        ),
        (
            "latest-handshakes",
            f"{PEER3}\t0\n{PEER2}\t{NOW - 40_000_000}\n{PEER1}\t{NOW - 65}\n",
        ),
        ("transfer", f"{PEER3}\t5\t2000000000000\n{PEER2}\t0\t0\n{PEER1}\t1260\t4781506\n"),
        ("persistent-keepalive", f"{PEER3}\toff\n{PEER2}\t3661\n{PEER1}\t25\n"),
    ],
)
def test_show_field_prints_one_value_per_line(
    device: FakeDevice, wgpy: Callable[..., Result], field: str, expected: str
) -> None:
    assert wgpy("show", "wg0", field) == (0, expected, "")


def test_show_of_a_device_without_a_private_key_or_peers_has_none_to_print(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    with fake_device(run_dir, reply=EMPTY_REPLY):
        assert wgpy("show", "wg0") == (0, "interface: wg0\n", "")
        assert wgpy("show", "wg0", "dump") == (0, "(none)\t(none)\t0\toff\n", "")
        assert wgpy("show", "wg0", "public-key") == (0, "(none)\n", "")
        assert wgpy("show", "wg0", "peers") == (0, "", "")
        assert wgpy("showconf", "wg0") == (0, "[Interface]\n\n", "")


def test_show_all_prints_each_interface_with_a_blank_line_between_them(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    with fake_device(run_dir, "wg0"), fake_device(run_dir, "wg1"):
        status, out, _ = wgpy("show", "all")
        names = wgpy("show", "interfaces")[1].split()
    assert status == 0
    assert sorted(names) == ["wg0", "wg1"]
    assert out == f"interface: {names[0]}\n\ninterface: {names[1]}\n"


def test_show_all_with_a_field_starts_each_line_with_the_interface_name(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    with fake_device(run_dir, "wg0", GET_REPLY), fake_device(run_dir, "wg1", EMPTY_REPLY):
        status, out, _ = wgpy("show", "all", "dump")
    expected = {
        *(f"wg0\t{line}" for line in DUMP.splitlines()),
        "wg1\t(none)\t(none)\t0\toff",
    }
    assert status == 0
    assert set(out.splitlines()) == expected


def test_show_interfaces_lists_only_live_sockets_and_removes_stale_ones(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(run_dir / "gone.sock"))  # bound, never listening: "connection refused"
    stale.close()
    (run_dir / "notes.txt").write_text("not an interface")
    (run_dir / "file.sock").write_text("not a socket")
    with fake_device(run_dir, "wg7"):
        assert wgpy("show", "interfaces") == (0, "wg7\n", "")
    assert not (run_dir / "gone.sock").exists()
    assert (run_dir / "file.sock").exists()


def test_show_interfaces_prints_nothing_when_the_socket_directory_is_missing(
    run_dir: Path, wgpy: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WGPY_RUN_DIR", str(run_dir / "missing"))
    assert wgpy("show", "interfaces") == (0, "", "")
    assert wgpy("show", "all") == (0, "", "")


@pytest.mark.parametrize(
    ("args", "status", "stderr"),
    [
        (("nosuch",), 1, "Unable to access interface: No such file or directory\n"),
        (("nosuch", "dump"), 1, "Unable to access interface: No such file or directory\n"),
        (("wg0", "bogus"), 1, f"Invalid parameter: `bogus'\n{SHOW_USAGE}"),
        (("wg0", "dump", "extra"), 1, SHOW_USAGE),
        (("interfaces", "extra"), 1, SHOW_USAGE),
        (("--help",), 0, SHOW_USAGE),
        (("bad/name",), 1, "Unable to access interface: Invalid argument\n"),
    ],
)
def test_show_reports_errors_as_wg_does(
    device: FakeDevice,
    wgpy: Callable[..., Result],
    args: tuple[str, ...],
    status: int,
    stderr: str,
) -> None:
    assert wgpy("show", *args) == (status, "", stderr)


def test_an_errno_in_the_get_reply_is_reported_with_its_message(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    with fake_device(run_dir, reply="errno=-13\n\n"):
        assert wgpy("show", "wg0") == (1, "", "Unable to access interface: Permission denied\n")


def test_a_malformed_get_reply_is_a_protocol_error(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    with fake_device(run_dir, reply="listen_port=51820\n"):
        assert wgpy("showconf", "wg0") == (1, "", "Unable to access interface: Protocol error\n")


def test_a_socket_file_that_is_not_a_socket_is_a_bad_file_descriptor(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    (run_dir / "wg0.sock").write_text("")
    assert wgpy("show", "wg0")[2] == "Unable to access interface: Bad file descriptor\n"


def test_show_all_skips_an_interface_it_cannot_read_and_goes_on(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    with fake_device(run_dir, "wg0", "errno=-5\n\n"), fake_device(run_dir, "wg1", EMPTY_REPLY):
        status, out, err = wgpy("show", "all", "listen-port")
    assert (status, out, err) == (
        0,
        "wg1\t0\n",
        "Unable to access interface wg0: Input/output error\n",
    )


# The formatting rules of show.c -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "1 minute"),
        (3661, "1 hour, 1 minute, 1 second"),
        (86400 * 2 + 5, "2 days, 5 seconds"),
        (365 * 86400 * 3, "3 years"),
    ],
)
def test_pretty_time_names_each_nonzero_unit(seconds: int, text: str) -> None:
    assert wg.without_escapes(wg.pretty_time(seconds)) == text


def test_ago_says_now_for_this_second_and_warns_of_a_clock_that_went_back() -> None:
    assert wg.ago(NOW, NOW) == "Now"
    assert wg.without_escapes(wg.ago(NOW + 1, NOW)) == (
        "(System clock wound backward; connection problems may ensue.)"
    )
    assert wg.without_escapes(wg.ago(NOW - 2, NOW)) == "2 seconds ago"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1260, "1.23 KiB"),
        (1024**2 - 1, "1024.00 KiB"),
        (4781506, "4.56 MiB"),
        (3 * 1024**3, "3.00 GiB"),
        (2 * 10**12, "1.82 TiB"),
        (2**64 - 1, "16777216.00 TiB"),
    ],
)
def test_byte_counts_use_binary_units_with_two_decimals(count: int, text: str) -> None:
    assert wg.without_escapes(wg.format_bytes(count)) == text


@pytest.mark.parametrize(
    ("address", "text"),
    [
        ("::102:304", "::1.2.3.4"),
        ("::ffff:c000:207", "::ffff:192.0.2.7"),
        ("::ffff:0:1", "::ffff:0.0.0.1"),
        ("::1", "::1"),
        ("::", "::"),
        ("fd00:0:0:1::1", "fd00:0:0:1::1"),
        ("1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"),
        ("192.0.2.1", "192.0.2.1"),
    ],
)
def test_addresses_print_as_glibc_inet_ntop_writes_them(address: str, text: str) -> None:
    assert wg.inet_ntop(ipaddress.ip_address(address)) == text


def test_peers_without_a_handshake_keep_the_device_s_order_after_the_others() -> None:
    def peer(key: int, handshake: tuple[int, int]) -> PeerState:
        return PeerState(public_key=bytes([key]) * 32, last_handshake_time=handshake)

    state = DeviceState(
        peers=[peer(1, (0, 0)), peer(2, (5, 1)), peer(3, (0, 0)), peer(4, (5, 2)), peer(5, (9, 0))]
    )
    text = wg.without_escapes(wg.format_pretty("wg0", state, NOW))
    shown = [line.split()[-1] for line in text.splitlines() if line.startswith("peer")]
    assert shown == [keys.to_base64(bytes([key]) * 32) for key in (5, 4, 2, 1, 3)]


# showconf -----------------------------------------------------------------------------------------


def test_showconf_prints_the_configuration_in_the_device_s_peer_order(
    device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    assert wgpy("showconf", "wg0") == (0, SHOWCONF, "")


def test_showconf_takes_exactly_one_interface(wgpy: Callable[..., Result], run_dir: Path) -> None:
    assert wgpy("showconf") == (1, "", "Usage: wgpy showconf <interface>\n")
    assert wgpy("showconf", "nosuch") == (
        1,
        "",
        "Unable to access interface: No such file or directory\n",
    )


# set ----------------------------------------------------------------------------------------------


def test_set_sends_device_options_then_peer_blocks_in_wg_s_order(
    run_dir: Path, device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    private = write_file(run_dir, "private", f"{PRIVATE}\n")
    psk = write_file(run_dir, "psk", f"{PSK}\n")
    result = wgpy(
        "set", "wg0",
        "listen-port", "51821", "fwmark", "0x10", "private-key", private,
        "peer", PEER1, "preshared-key", psk, "endpoint", "192.0.2.1:51820",
        "persistent-keepalive", "25", "allowed-ips", " 192.0.2.0/24 , fd00::/64 ",
        "peer", PEER2, "remove",
    )  # fmt: skip
    assert result == (0, "", "")
    assert device.requests == [
        f"set=1\nprivate_key={PRIVATE_HEX}\nlisten_port=51821\nfwmark=16\n"
        f"public_key={PEER1_HEX}\npreshared_key={PSK_HEX}\nendpoint=192.0.2.1:51820\n"
        "persistent_keepalive_interval=25\nreplace_allowed_ips=true\n"
        "allowed_ip=192.0.2.0/24\nallowed_ip=fd00::/64\n"
        f"public_key={PEER2_HEX}\nremove=true\n\n"
    ]


def test_an_empty_key_file_removes_the_key_and_an_empty_list_clears_the_allowed_ips(
    device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    assert wgpy(
        "set", "wg0", "private-key", "/dev/null",
        "peer", PEER1, "preshared-key", "/dev/null", "allowed-ips", "",
    ) == (0, "", "")  # fmt: skip
    assert device.requests == [
        f"set=1\nprivate_key={ZERO_HEX}\npublic_key={PEER1_HEX}\n"
        f"preshared_key={ZERO_HEX}\nreplace_allowed_ips=true\n\n"
    ]


def test_allowed_ips_with_a_sign_change_the_peer_s_list_rather_than_replace_it(
    device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    assert wgpy(
        "set", "wg0", "peer", PEER1, "allowed-ips", "+192.0.2.0/24,-fd00::/64,198.18.0.0/16"
    ) == (0, "", "")  # fmt: skip
    assert device.requests == [
        f"set=1\npublic_key={PEER1_HEX}\nallowed_ip=-fd00::/64\n"
        "allowed_ip=192.0.2.0/24\nallowed_ip=198.18.0.0/16\n\n"
    ]


def test_the_last_mention_of_a_prefix_decides_whether_it_is_added_or_removed() -> None:
    update = wg.parse_set_arguments(["peer", PEER1, "allowed-ips", "+192.0.2.0/24,-192.0.2.0/24"])
    assert update.peers[0].allowed_ips == []
    assert update.peers[0].removed_allowed_ips == [ipaddress.ip_network("192.0.2.0/24")]


def test_an_allowed_ip_with_host_bits_is_sent_masked_with_wg_s_warning(
    device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    result = wgpy("set", "wg0", "peer", PEER1, "allowed-ips", "192.0.2.1/24,fd00::1")
    assert result == (0, "", "Warning: AllowedIP has nonzero host part: 192.0.2.1/24\n")
    assert "allowed_ip=192.0.2.0/24\nallowed_ip=fd00::1/128\n" in device.requests[0]


def test_an_endpoint_host_name_is_resolved_before_it_is_sent(
    device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    assert wgpy("set", "wg0", "peer", PEER1, "endpoint", "localhost:51820")[0] == 0
    endpoint = device.requests[0].split("\n")[2]
    assert endpoint in ("endpoint=127.0.0.1:51820", "endpoint=[::1]:51820")


@pytest.mark.parametrize(
    ("value", "port"),
    [("51820", 51820), ("70000", 70000 - 65536), ("https", 443)],  # glibc keeps the low 16 bits
)
def test_a_listen_port_is_read_as_getaddrinfo_reads_it(value: str, port: int) -> None:
    assert wg.parse_set_arguments(["listen-port", value]) == DeviceUpdate(listen_port=port)


@pytest.mark.parametrize(
    ("value", "fwmark"),
    [("off", 0), ("OFF", 0), ("0", 0), ("51820", 51820), ("0x10", 16), ("0xffffffff", 2**32 - 1)],
)
def test_a_fwmark_is_off_decimal_or_hexadecimal(value: str, fwmark: int) -> None:
    assert wg.parse_set_arguments(["fwmark", value]) == DeviceUpdate(fwmark=fwmark)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["listen-port"], "Invalid argument: listen-port"),
        (["listen-port", ""], "Unable to parse empty port"),
        (["listen-port", "nosuchservice"],
         "Servname not supported for ai_socktype: `nosuchservice'"),
        (["bogus", "1"], "Invalid argument: bogus"),
        (["remove"], "Invalid argument: remove"),
        (["fwmark", "0X10"], "Fwmark is neither 0/off nor 0-0xffffffff: `0X10'"),
        (["fwmark", "4294967296"], "Fwmark is neither 0/off nor 0-0xffffffff: `4294967296'"),
        (["fwmark", "1" * 5000], f"Fwmark is neither 0/off nor 0-0xffffffff: `{'1' * 5000}'"),
        (["private-key", "/nonexistent"], "fopen: No such file or directory"),
        (["peer", "abc"], "Key is not the correct length or format: `abc'"),
        (["peer", f" {PEER1}"], f"Key is not the correct length or format: ` {PEER1}'"),
        (["peer", PEER1, "listen-port", "1"], "Invalid argument: listen-port"),
        (["peer", PEER1, "endpoint", "192.0.2.1"], "Unable to find port of endpoint: `192.0.2.1'"),
        (["peer", PEER1, "endpoint", "[fd00::1"],
         "Unable to find matching brace of endpoint: `[fd00::1'"),
        (["peer", PEER1, "endpoint", "[fd00::1]:"],
         "Unable to find port of endpoint: `[fd00::1]:'"),
        (["peer", PEER1, "persistent-keepalive", "65536"],
         "Persistent keepalive interval is neither 0/off nor 1-65535: `65536'"),
        (["peer", PEER1, "allowed-ips", "192.0.2.0/"],
         "AllowedIP is not in the correct format: `192.0.2.0/'"),
        (["peer", PEER1, "allowed-ips", "192.0.2.0/33"],
         "AllowedIP is not in the correct format: `192.0.2.0/33'"),
        (["peer", PEER1, "allowed-ips", "192.0.2.0/24,"], "Unable to parse IP address: `'"),
        (["peer", PEER1, "allowed-ips", "fe80::1%lo/64"],
         "Unable to parse IP address: `fe80::1%lo'"),
    ],
)  # fmt: skip
def test_set_reports_the_first_bad_argument_as_wg_does_and_sends_nothing(
    device: FakeDevice, wgpy: Callable[..., Result], args: list[str], message: str
) -> None:
    assert wgpy("set", "wg0", *args) == (1, "", f"{message}\n")
    assert device.requests == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("short", "Invalid length key in key file"),
        (f"{PRIVATE} \n\tx", "Found trailing character in key file: `x'"),
        ("A" * 44, "Key is not the correct length or format: `" + "A" * 44 + "'"),
    ],
)
def test_a_key_file_holds_one_key_and_only_whitespace_after_it(
    run_dir: Path, wgpy: Callable[..., Result], content: str, message: str
) -> None:
    path = write_file(run_dir, "key", content)
    assert wgpy("set", "wg0", "private-key", path) == (1, "", f"{message}\n")


def test_a_name_that_does_not_resolve_fails_at_once(
    wgpy: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, run_dir: Path
) -> None:
    lookups: list[tuple[object, ...]] = []

    def no_such_name(*args: object) -> list[object]:
        lookups.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    assert wgpy("set", "wg0", "peer", PEER1, "endpoint", "vpn.example:51820") == (
        1,
        "",
        "Name or service not known: `vpn.example:51820'\n",
    )
    assert lookups == [("vpn.example", "51820", 0, socket.SOCK_DGRAM, socket.IPPROTO_UDP)]


def test_a_transient_resolution_failure_is_retried_with_a_growing_pause(
    wgpy: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, run_dir: Path
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", "3")
    status, _, err = wgpy("set", "wg0", "peer", PEER1, "endpoint", "[fd00::1]:nosuchservice")
    failure = "Servname not supported for ai_socktype: `[fd00::1]:nosuchservice'"
    assert status == 1
    assert err.splitlines() == [
        f"{failure}. Trying again in 1.00 seconds...",
        f"{failure}. Trying again in 1.20 seconds...",
        f"{failure}. Trying again in 1.44 seconds...",
        failure,
    ]
    assert pauses == [1.0, 1.2, 1.44]


def test_set_reports_the_errno_the_device_replies(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    with fake_device(run_dir, set_errno=errno.EINVAL):
        assert wgpy("set", "wg0", "listen-port", "1") == (
            1,
            "",
            "Unable to modify interface: Invalid argument\n",
        )
    assert wgpy("set", "nosuch", "listen-port", "1") == (
        1,
        "",
        "Unable to modify interface: No such file or directory\n",
    )


def test_set_without_arguments_prints_its_usage(run_dir: Path, wgpy: Callable[..., Result]) -> None:
    status, out, err = wgpy("set", "wg0")
    assert (status, out) == (1, "")
    assert err.startswith("Usage: wgpy set <interface> [listen-port <port>] [fwmark <mark>] ")


# setconf, addconf, syncconf -----------------------------------------------------------------------


CONFIG = f"""\
[Interface]
PrivateKey = {PRIVATE}

[Peer]
PublicKey = {PEER1}
AllowedIPs = 192.0.2.0/24
Endpoint = 192.0.2.1:51820
"""

PEER1_BLOCK = (
    f"public_key={PEER1_HEX}\nendpoint=192.0.2.1:51820\n"
    "replace_allowed_ips=true\nallowed_ip=192.0.2.0/24\n"
)


@pytest.fixture
def config_file(run_dir: Path) -> str:
    """CONFIG, in wg0.conf."""
    return write_file(run_dir, "wg0.conf", CONFIG)


def test_setconf_replaces_everything_including_what_the_file_leaves_out(
    config_file: str, device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    assert wgpy("setconf", "wg0", config_file) == (0, "", "")
    assert device.requests == [
        f"set=1\nprivate_key={PRIVATE_HEX}\nlisten_port=0\nfwmark=0\nreplace_peers=true\n"
        f"{PEER1_BLOCK}\n"
    ]


def test_addconf_sends_only_what_the_file_says(
    config_file: str, device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    assert wgpy("addconf", "wg0", config_file) == (0, "", "")
    assert device.requests == [f"set=1\nprivate_key={PRIVATE_HEX}\n{PEER1_BLOCK}\n"]


def test_syncconf_removes_the_peers_the_file_lacks_and_clears_what_it_no_longer_sets(
    config_file: str, device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    # The device has peers 1 (with a preshared key and a keepalive), 2 and 3; the file only 1.
    assert wgpy("syncconf", "wg0", config_file) == (0, "", "")
    assert device.requests == [
        "get=1\n\n",
        f"set=1\nprivate_key={PRIVATE_HEX}\nlisten_port=0\nfwmark=0\n"
        f"public_key={PEER3_HEX}\nremove=true\npublic_key={PEER2_HEX}\nremove=true\n"
        f"public_key={PEER1_HEX}\npreshared_key={ZERO_HEX}\nendpoint=192.0.2.1:51820\n"
        "persistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=192.0.2.0/24\n\n",
    ]


def test_syncconf_of_a_file_without_peers_replaces_them_without_asking_the_device(
    run_dir: Path, device: FakeDevice, wgpy: Callable[..., Result]
) -> None:
    path = write_file(run_dir, "wg0.conf", "[Interface]\nListenPort = 51820\n")
    assert wgpy("syncconf", "wg0", path) == (0, "", "")
    assert device.requests == [
        f"set=1\nprivate_key={ZERO_HEX}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n\n"
    ]


def test_sync_update_leaves_a_peer_alone_when_the_file_sets_what_the_device_has() -> None:
    peer = PeerUpdate(
        public_key=bytes.fromhex(PEER1_HEX),
        preshared_key=bytes.fromhex(PSK_HEX),
        persistent_keepalive_interval=25,
    )
    current = uapi.parse_get(GET_REPLY)
    synced = wg.sync_update(DeviceUpdate(replace_peers=True, peers=[peer]), current)
    assert synced.replace_peers is False
    assert synced.peers[-1] == peer
    assert [p.remove for p in synced.peers] == [True, True, False]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[Peer]\nAllowedIPs = 192.0.2.0/24\n", "wg0.conf:1: PublicKey: peer has no PublicKey"),
        ("[Interface]\nBogus = 1\n", "wg0.conf:2: Bogus: unknown key in [Interface]"),
    ],
)
def test_a_configuration_error_names_file_line_and_key(
    run_dir: Path, device: FakeDevice, wgpy: Callable[..., Result], content: str, message: str
) -> None:
    path = write_file(run_dir, "wg0.conf", content)
    status, out, err = wgpy("setconf", "wg0", path)
    assert (status, out) == (1, "")
    assert err == f"{path.removesuffix('wg0.conf')}{message}\nConfiguration parsing error\n"
    assert device.requests == []


def test_setconf_needs_an_interface_and_a_readable_file(
    run_dir: Path, wgpy: Callable[..., Result]
) -> None:
    assert wgpy("addconf", "wg0") == (
        1,
        "",
        "Usage: wgpy addconf <interface> <configuration filename>\n",
    )
    assert wgpy("setconf", "wg0", "/nonexistent") == (1, "", "fopen: No such file or directory\n")


def test_run_refuses_a_command_that_is_not_one_of_wg_s() -> None:
    with pytest.raises(ValueError, match="genkey"):
        wg.run("genkey", [])


# Against wg itself, on a fake device in wg's socket directory -------------------------------------

needs_wg = pytest.mark.skipif(
    missing_requirements(("wg",)) is not None,
    reason=f"compares with /usr/bin/wg: {missing_requirements(('wg',))}",
)


@pytest.fixture
def shared_device(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeDevice]]:
    """A fake device with a unique name in the directory wg reads (wg has no WGPY_RUN_DIR)."""
    monkeypatch.setenv("WGPY_RUN_DIR", str(DEFAULT_RUN_DIR))
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", "0")
    DEFAULT_RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    name = unique_ifname("wgpyfake")
    with fake_device(DEFAULT_RUN_DIR, name, GET_REPLY) as fake:
        yield name, fake


def as_wg(result: Result) -> Result:
    """wgpy's result with wg's program name in usage lines."""
    status, out, err = result
    return status, out, err.replace("Usage: wgpy ", "Usage: wg ")


@needs_wg
@pytest.mark.parametrize(
    "args",
    [(), ("dump",), ("peers",), ("endpoints",), ("allowed-ips",), ("transfer",), ("bogus",)],
)
def test_show_prints_what_wg_prints(
    shared_device: tuple[str, FakeDevice],
    wgpy: Callable[..., Result],
    args: tuple[str, ...],
) -> None:
    name, _ = shared_device
    for _attempt in range(3):  # the handshake ages must not tick between the runs
        before = wg_tool("show", name, *args)
        ours = as_wg(wgpy("show", name, *args))
        if wg_tool("show", name, *args) == before:
            break
    assert ours == before


@needs_wg
def test_showconf_prints_what_wg_prints(
    shared_device: tuple[str, FakeDevice], wgpy: Callable[..., Result]
) -> None:
    name, _ = shared_device
    assert wgpy("showconf", name) == wg_tool("showconf", name)


@needs_wg
@pytest.mark.parametrize(
    "args",
    [
        ("listen-port", "51821", "fwmark", "0xcafe", "peer", PEER1, "endpoint", "[fd00::1]:51820",
         "persistent-keepalive", "off", "allowed-ips", "192.0.2.0/25, fd00::/64"),
        ("private-key", "/dev/null", "peer", PEER2, "remove", "peer", PEER3, "allowed-ips", ""),
        ("fwmark", "off", "peer", PEER1, "preshared-key", "/dev/null", "endpoint", "192.0.2.2:1"),
        ("peer", PEER1, "allowed-ips", "192.0.2.0/24", "allowed-ips", "198.18.0.0/15"),
        ("peer", PEER1, "endpoint", "[fd00::1]:nosuchservice"),
        ("peer", PEER1, "persistent-keepalive", "65536"),
        ("peer", PEER1, "allowed-ips", "192.0.2.0/33"),
        ("fwmark", "0x"),
        ("listen-port", "https"),
        ("listen-port", "nosuchservice"),
        ("peer", PEER1, "endpoint", "192.0.2.1:https"),
        ("peer",),
    ],
)  # fmt: skip
def test_set_sends_what_wg_sends_and_fails_as_wg_fails(
    shared_device: tuple[str, FakeDevice], wgpy: Callable[..., Result], args: tuple[str, ...]
) -> None:
    name, fake = shared_device
    theirs = wg_tool("set", name, *args)
    wg_requests = fake.sets
    fake.requests.clear()
    assert wgpy("set", name, *args) == theirs
    assert fake.sets == wg_requests


@needs_wg
@pytest.mark.parametrize("command", ["setconf", "addconf"])
def test_setconf_and_addconf_send_what_wg_sends(
    shared_device: tuple[str, FakeDevice],
    wgpy: Callable[..., Result],
    tmp_path: Path,
    command: str,
) -> None:
    name, fake = shared_device
    path = write_file(
        tmp_path, "wg.conf", CONFIG + f"\n[Peer]\nPublicKey = {PEER2}\nPersistentKeepalive = 5\n"
    )
    assert wg_tool(command, name, path) == (0, "", "")
    wg_requests = fake.sets
    fake.requests.clear()
    assert wgpy(command, name, path) == (0, "", "")
    assert fake.sets == wg_requests


@needs_wg
def test_setconf_reads_ports_as_wg_does_service_names_included(
    shared_device: tuple[str, FakeDevice], wgpy: Callable[..., Result], tmp_path: Path
) -> None:
    name, fake = shared_device
    text = f"[Interface]\nListenPort = https\n[Peer]\nPublicKey = {PEER1}\n"
    path = write_file(tmp_path, "wg.conf", text + "Endpoint = 192.0.2.1:70000\n")
    assert wg_tool("setconf", name, path) == (0, "", "")
    wg_requests = fake.sets
    fake.requests.clear()
    assert wgpy("setconf", name, path) == (0, "", "")
    assert fake.sets == wg_requests
    assert "listen_port=443\n" in wg_requests[0] and "endpoint=192.0.2.1:4464\n" in wg_requests[0]
