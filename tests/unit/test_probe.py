"""`wgpy probe`: handshakes with a WireGuard server as one of its peers.

The first half drives `HandshakeAttempt` against a wgpy device in memory, under the test's clock;
the second runs `wgpy probe` from one network namespace against wireguard-go and the wgpy daemon
serving in another.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fakes import seeded_rng
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.packet import Raw

from interop.wire import InitiationFlood
from wgpy.cli import daemon
from wgpy.cli.probe import run
from wgpy.cli.wg import get_stats
from wgpy.core import tai64n
from wgpy.core.constants import UNDER_LOAD_THRESHOLD
from wgpy.core.device import Action, Device, SendDatagrams
from wgpy.core.drops import DropReason
from wgpy.core.keys import from_base64, generate_private_key, public_key, to_base64
from wgpy.lab.netns import (
    UAPI_DIR,
    Namespace,
    ip_up,
    start_daemon,
    unique_ifname,
    wait_until,
    wg_genkey,
    wg_setconf,
)
from wgpy.probe import (
    INITIATION_SPACING,
    AttemptResult,
    Echo,
    HandshakeAttempt,
    Outcome,
    Pacer,
    PingOutcome,
    ProbeKeys,
    Stage,
    internet_checksum,
)

WALL_EPOCH = 1_700_000_000.0
PROBE_SOURCE = ("198.18.0.1", 40000)  # where the server sees the probe's datagrams come from
ONE_WAY = 0.0005  # simulated seconds from one side to the other
TIMEOUT = 2.0
PROBE_INNER, SERVER_INNER = ipaddress.ip_address("192.0.2.2"), ipaddress.ip_address("192.0.2.1")
PROBE_INNER6, SERVER_INNER6 = ipaddress.ip_address("fd00:2::2"), ipaddress.ip_address("fd00:2::1")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- in memory: a wgpy device plays the server ---------------------------------------------------


def echo_reply_to(packet: bytes) -> bytes:
    """What the server's kernel answers to an echo request, built with scapy."""
    if packet[0] >> 4 == 6:
        request6 = IPv6(packet)
        echo6 = request6[ICMPv6EchoRequest]
        reply6 = IPv6(src=request6.dst, dst=request6.src)
        return bytes(reply6 / ICMPv6EchoReply(id=echo6.id, seq=echo6.seq, data=echo6.data))
    request = IP(packet)
    echo = request[ICMP]
    reply = IP(src=request.dst, dst=request.src) / ICMP(type="echo-reply", id=echo.id, seq=echo.seq)
    return bytes(reply / echo.payload)


class Server:
    """A wgpy device with the probe among its peers (inner 192.0.2.2/32, fd00:2::2/128), the
    wire to it and the clock. Its kernel answers echo requests unless told otherwise."""

    def __init__(
        self,
        *,
        preshared_key: bytes | None = None,
        under_load_threshold: int = UNDER_LOAD_THRESHOLD,
        knows_probe: bool = True,
    ) -> None:
        rng = seeded_rng(5)
        self.private_key = generate_private_key(rng)
        self.probe_private_key = generate_private_key(rng)
        self.device = Device(rng, self.private_key, under_load_threshold=under_load_threshold)
        if knows_probe:
            peer = self.device.add_peer(
                public_key(self.probe_private_key), preshared_key=preshared_key
            )
            for prefix in ("192.0.2.2/32", "fd00:2::2/128"):
                self.device.allowed_ips.insert(ipaddress.ip_network(prefix), peer)
        self.kernel_answers_echoes = True
        self.now = 100.0
        self.received: list[bytes] = []  # every datagram the probe sent, in order
        self.sent: list[bytes] = []  # and every one the server sent
        # Extra seconds before the server gets to each datagram in turn (a queue, a cold start).
        self.processing_delays: list[float] = []

    @property
    def wall(self) -> float:
        return WALL_EPOCH + self.now

    def keys(self, **changes: bytes | None) -> ProbeKeys:
        """The probe's keys: right unless `changes` say otherwise."""
        right = ProbeKeys(self.probe_private_key, public_key(self.private_key))
        return dataclasses.replace(right, **changes)

    def run(self, attempt: HandshakeAttempt) -> AttemptResult:
        """Start `attempt`, carry datagrams both ways until the wire is quiet, then let time
        pass until it ends."""
        self.exchange(attempt, [attempt.start(self.now, self.wall)])
        if attempt.result is None:
            deadline = attempt.next_timer()
            assert deadline is not None
            self.now = deadline
            attempt.handle_timer(self.now)
        assert attempt.result is not None
        return attempt.result

    def exchange(self, attempt: HandshakeAttempt, datagrams: list[bytes]) -> None:
        while datagrams:
            data = datagrams.pop(0)
            self.received.append(data)
            self.now += ONE_WAY + (self.processing_delays.pop(0) if self.processing_delays else 0)
            actions = self.device.handle_datagram(data, PROBE_SOURCE, self.now, self.wall)
            for answer in self._carry_out(actions):
                self.sent.append(answer)
                self.now += ONE_WAY
                datagrams += attempt.handle_datagram(answer, self.now)

    def _carry_out(self, actions: list[Action]) -> list[bytes]:
        """The datagrams the server sends, its kernel's echo replies included."""
        sent = []
        for action in actions:
            if isinstance(action, SendDatagrams):
                assert action.endpoint == PROBE_SOURCE
                sent += action.datagrams
            elif self.kernel_answers_echoes:
                for packet in action.packets:
                    reply = echo_reply_to(packet)
                    sent += self._carry_out(
                        self.device.handle_tun_packet(reply, self.now, self.wall)
                    )
        return sent


def attempt_for(keys: ProbeKeys, echo: Echo | None = None, seed: int = 9) -> HandshakeAttempt:
    return HandshakeAttempt(keys, seeded_rng(seed), timeout=TIMEOUT, echo=echo)


def test_a_server_that_knows_our_key_answers_with_a_valid_response() -> None:
    server = Server()
    result = server.run(attempt_for(server.keys()))
    assert result.outcome is Outcome.ANSWERED and result.ok
    assert result.rtt == pytest.approx(2 * ONE_WAY)
    assert not result.cookie_reply and result.ping is None
    assert server.device.drops.total() == 0


def test_matching_preshared_keys_answer_validly() -> None:
    psk = bytes(range(32))
    server = Server(preshared_key=psk)
    assert server.run(attempt_for(server.keys(preshared_key=psk))).ok


def test_a_preshared_key_mismatch_is_an_invalid_response() -> None:
    server = Server(preshared_key=bytes(range(32)))
    result = server.run(attempt_for(server.keys(preshared_key=bytes(32 * [7]))))
    assert result.outcome is Outcome.INVALID_RESPONSE and not result.ok
    assert "preshared key does not match" in result.reason
    # The server took the initiation: only the probe could tell the response was wrong.
    assert server.device.drops.total() == 0


def test_a_missing_preshared_key_is_an_invalid_response_too() -> None:
    server = Server(preshared_key=bytes(range(32)))
    assert server.run(attempt_for(server.keys())).outcome is Outcome.INVALID_RESPONSE


def test_a_wrong_peer_key_gets_silence_and_the_reason_after_the_timeout() -> None:
    server = Server()
    other = public_key(generate_private_key(seeded_rng(77)))
    attempt = attempt_for(server.keys(peer_public_key=other))
    started = server.now
    result = server.run(attempt)
    assert result.outcome is Outcome.SILENCE and result.rtt is None
    assert server.now == started + TIMEOUT
    assert f"no answer within {TIMEOUT:g} s" in result.reason and "--peer-key" in result.reason
    assert server.device.drops[DropReason.INVALID_MAC] == 1


def test_a_server_that_does_not_know_our_key_is_silent_too() -> None:
    server = Server(knows_probe=False)
    assert server.run(attempt_for(server.keys())).outcome is Outcome.SILENCE
    assert server.device.drops[DropReason.UNKNOWN_PEER] == 1


def test_the_attempt_waits_out_its_timeout_before_giving_up() -> None:
    server = Server(knows_probe=False)
    attempt = attempt_for(server.keys())
    server.exchange(attempt, [attempt.start(server.now, server.wall)])
    deadline = attempt.next_timer()
    assert deadline is not None
    attempt.handle_timer(deadline - 0.001)
    assert attempt.result is None and attempt.stage is Stage.AWAIT_RESPONSE
    attempt.handle_timer(deadline)
    assert attempt.result is not None and attempt.next_timer() is None


def test_under_load_the_server_sends_a_cookie_and_answers_the_initiation_again_with_mac2() -> None:
    server = Server(under_load_threshold=1)  # every handshake message finds it under load
    result = server.run(attempt_for(server.keys()))
    assert result.ok and result.cookie_reply
    assert server.device.drops[DropReason.COOKIE_REQUIRED] == 1
    first, retry = server.received
    # The same initiation, timestamp and all: the server did not consume the first one.
    assert retry[:-16] == first[:-16]
    assert first[-16:] == bytes(16) and retry[-16:] != bytes(16)


def test_the_rtt_is_that_of_the_initiation_that_was_answered() -> None:
    server = Server(under_load_threshold=1)
    result = server.run(attempt_for(server.keys()))
    assert result.rtt == pytest.approx(2 * ONE_WAY)


def test_a_response_to_another_initiation_is_ignored() -> None:
    server = Server()
    stranger = attempt_for(server.keys(), seed=10)
    assert server.run(stranger).ok
    attempt = attempt_for(server.keys())
    attempt.start(server.now, server.wall)
    (response_to_stranger,) = server.sent
    assert attempt.handle_datagram(response_to_stranger, server.now) == []
    assert attempt.stage is Stage.AWAIT_RESPONSE


@given(
    kind=st.sampled_from([1, 2, 3, 4]),
    body=st.binary(max_size=200),
    length=st.sampled_from([None, 148, 92, 64, 32, 48]),  # free, or each message's own
)
def test_garbage_from_the_server_neither_raises_nor_ends_the_attempt(
    kind: int, body: bytes, length: int | None
) -> None:
    server = Server()
    attempt = attempt_for(server.keys())
    attempt.start(server.now, server.wall)
    data = struct.pack("<I", kind) + body
    if length is not None:
        data = data[:length].ljust(length, b"\0")
    assert attempt.handle_datagram(data, server.now) == []
    assert attempt.stage is Stage.AWAIT_RESPONSE


def test_an_echo_through_the_session_comes_back() -> None:
    server = Server()
    echo = Echo(PROBE_INNER, SERVER_INNER, identifier=0x4242, sequence=1)
    result = server.run(attempt_for(server.keys(), echo))
    assert result.ok and result.ping is PingOutcome.REPLIED
    assert result.ping_rtt == pytest.approx(2 * ONE_WAY)
    # The echo went through the server's device to its kernel: the session is confirmed.
    peer = next(iter(server.device.peers.values()))
    assert peer.keypairs.current is not None and peer.keypairs.next is None


def test_an_ipv6_echo_through_the_session_comes_back() -> None:
    server = Server()
    echo = Echo(PROBE_INNER6, SERVER_INNER6, identifier=7, sequence=3)
    assert server.run(attempt_for(server.keys(), echo)).ping is PingOutcome.REPLIED


def test_a_handshake_without_an_echo_reply_is_not_ok_and_says_why() -> None:
    server = Server()
    server.kernel_answers_echoes = False
    echo = Echo(PROBE_INNER, SERVER_INNER, identifier=1, sequence=1)
    result = server.run(attempt_for(server.keys(), echo))
    assert result.outcome is Outcome.ANSWERED and result.ping is PingOutcome.NO_REPLY
    assert not result.ok
    assert "AllowedIPs" in result.reason and str(SERVER_INNER) in result.reason


def test_an_echo_from_outside_the_servers_allowed_ips_is_dropped_there() -> None:
    server = Server()
    outsider = ipaddress.ip_address("192.0.2.99")
    result = server.run(attempt_for(server.keys(), Echo(outsider, SERVER_INNER, 1, 1)))
    assert result.ping is PingOutcome.NO_REPLY
    assert server.device.drops[DropReason.DISALLOWED_SOURCE] == 1


# -- pacing: the server's flood and replay rules -------------------------------------------------


def paced_attempts(server: Server, count: int, echo: Echo | None = None) -> list[AttemptResult]:
    """`count` attempts one after the other, spaced by a `Pacer`, as `wgpy.probe.probe` does."""
    pacer = Pacer()
    results = []
    for seed in range(count):
        server.now += pacer.delay(server.now, server.wall)
        pacer.initiated(server.wall)  # the wall the attempt starts with
        results.append(server.run(attempt_for(server.keys(), echo, seed=seed)))
        pacer.ended(server.now)
    return results


def test_paced_attempts_are_each_consumed_by_the_server() -> None:
    server = Server()
    assert all(result.ok for result in paced_attempts(server, 5))
    assert server.device.drops.total() == 0


def test_a_server_slow_to_take_the_first_initiation_takes_the_next_one_too() -> None:
    # The server consumes an initiation when it gets to it, which wireguard-go's first handshake
    # can delay by tens of milliseconds: counted from our sending, 20 ms would be over by then.
    server = Server()
    server.processing_delays = [0.080]
    echo = Echo(PROBE_INNER, SERVER_INNER, identifier=1, sequence=1)
    assert all(result.ok for result in paced_attempts(server, 3, echo))
    assert server.device.drops.total() == 0


def test_back_to_back_attempts_without_pacing_are_dropped_by_the_server() -> None:
    server = Server()
    assert server.run(attempt_for(server.keys(), seed=1)).ok
    assert server.run(attempt_for(server.keys(), seed=2)).outcome is Outcome.SILENCE
    assert server.device.drops[DropReason.REPLAYED_TIMESTAMP] == 1


FLOAT_SLACK = 1e-9  # rounding in seconds-sized sums of floats


def test_a_fresh_pacer_does_not_wait() -> None:
    assert Pacer().delay(0.0, WALL_EPOCH) == 0.0


@given(
    now=st.floats(0, 1e7, allow_nan=False),
    wall=st.floats(1e9, 4e9, allow_nan=False),
    later=st.floats(0, 1, allow_nan=False),
)
def test_after_the_pacers_delay_an_initiation_passes_the_flood_and_replay_rules(
    now: float, wall: float, later: float
) -> None:
    pacer = Pacer()
    pacer.initiated(wall)
    pacer.ended(now)
    now, wall = now + later, wall + later
    delay = pacer.delay(now, wall)
    assert now + delay - pacer.last_ended >= INITIATION_SPACING - FLOAT_SLACK
    assert tai64n.is_after(tai64n.timestamp(wall + delay), pacer.last_timestamp)
    # ... and it asks for no more than the longer of the two waits.
    assert delay <= max(INITIATION_SPACING, tai64n.WHITENING / 1e9 + 1e-3) + FLOAT_SLACK


# -- the ICMP echo, against scapy ----------------------------------------------------------------


def test_the_echo_request_is_byte_for_byte_what_scapy_builds() -> None:
    echo = Echo(PROBE_INNER, SERVER_INNER, identifier=0x1234, sequence=7, payload=b"hello")
    expected = IP(src=str(PROBE_INNER), dst=str(SERVER_INNER), id=0, ttl=64) / ICMP(
        type="echo-request", id=0x1234, seq=7
    )
    assert echo.request() == bytes(expected / Raw(b"hello"))


def test_the_icmpv6_echo_request_is_byte_for_byte_what_scapy_builds() -> None:
    echo = Echo(PROBE_INNER6, SERVER_INNER6, identifier=0xBEEF, sequence=2, payload=b"odd")
    expected = IPv6(src=str(PROBE_INNER6), dst=str(SERVER_INNER6), hlim=64) / ICMPv6EchoRequest(
        id=0xBEEF, seq=2, data=b"odd"
    )
    assert echo.request() == bytes(expected)


@pytest.mark.parametrize("inner", [(PROBE_INNER, SERVER_INNER), (PROBE_INNER6, SERVER_INNER6)])
def test_the_echo_accepts_its_reply_with_or_without_padding(inner: tuple[IPAddress, ...]) -> None:
    echo = Echo(inner[0], inner[1], identifier=5, sequence=9)
    reply = echo_reply_to(echo.request())
    assert echo.answered_by(reply)
    assert echo.answered_by(reply + bytes(16 - len(reply) % 16))


@pytest.mark.parametrize(
    "other",
    [
        Echo(PROBE_INNER, SERVER_INNER, identifier=5, sequence=10),
        Echo(PROBE_INNER, SERVER_INNER, identifier=6, sequence=9),
        Echo(PROBE_INNER, SERVER_INNER, identifier=5, sequence=9, payload=b"other"),
        Echo(PROBE_INNER, ipaddress.ip_address("192.0.2.3"), identifier=5, sequence=9),
    ],
    ids=["sequence", "identifier", "payload", "source"],
)
def test_the_echo_rejects_the_reply_to_another_echo(other: Echo) -> None:
    echo = Echo(PROBE_INNER, SERVER_INNER, identifier=5, sequence=9)
    assert not echo.answered_by(echo_reply_to(other.request()))


def test_the_echo_rejects_its_own_request_and_non_ip() -> None:
    echo = Echo(PROBE_INNER, SERVER_INNER, identifier=5, sequence=9)
    assert not echo.answered_by(echo.request())
    assert not echo.answered_by(b"\x45" + bytes(10))


def test_an_echo_must_keep_to_one_ip_version() -> None:
    with pytest.raises(ValueError, match="IP version"):
        Echo(PROBE_INNER, SERVER_INNER6, identifier=1, sequence=1)


def rfc1071_checksum(data: bytes) -> int:
    """RFC 1071 section 4.1, word by word with the carries folded back."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=300) | st.sampled_from([b"", b"\0\0", b"\xff\xff", b"\xff\xff\xff"]))
def test_the_internet_checksum_agrees_with_rfc_1071s_word_by_word_sum(data: bytes) -> None:
    assert internet_checksum(data) == rfc1071_checksum(data)


# -- the command line, without a network -------------------------------------------------------


def test_ping_without_an_inner_address_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = to_base64(generate_private_key(seeded_rng(1)))
    argv = ["198.18.0.2:51820", "--peer-key", key, "--key", key, "--ping", "192.0.2.1"]
    assert run(argv) == 2
    assert "--ping and --address go together" in capsys.readouterr().err


def test_a_key_that_is_not_base64_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["198.18.0.2:51820", "--peer-key", "nonsense", "--key", "nonsense"]) == 2
    assert "Key is not the correct length or format" in capsys.readouterr().err


def test_a_missing_key_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key = to_base64(generate_private_key(seeded_rng(1)))
    argv = ["198.18.0.2:51820", "--peer-key", key, "--key-file", str(tmp_path / "absent")]
    assert run(argv) == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_exactly_one_private_key_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    key = to_base64(generate_private_key(seeded_rng(1)))
    assert run(["198.18.0.2:51820", "--peer-key", key]) == 2
    assert "one of the arguments --key-file --key is required" in capsys.readouterr().err


# -- against wireguard-go and the wgpy daemon in namespaces --------------------------------------

SERVERS = [
    pytest.param(("wireguard-go",), id="wireguard-go"),
    pytest.param((sys.executable, "-m", "wgpy.cli.wgpy"), id="wgpy"),
]
WG_PORT = 51820
RTT = re.compile(r"response in (\d+\.\d+) ms")

netns = pytest.mark.netns("wireguard-go", "wg")
Probe = Callable[..., tuple[int, str, str]]


class Keys:
    """The probe's key pair, and its private key in a file as wg genkey writes it."""

    def __init__(self, directory: Path, name: str = "probe") -> None:
        self.private, self.public = wg_genkey()
        self.file = directory / f"{name}.key"
        self.file.write_text(self.private + "\n")


@contextmanager
def serving_interface(
    ns: Namespace, command: tuple[str, ...], probe_key: str, *, psk: str = ""
) -> Iterator[tuple[str, str]]:
    """A WireGuard server in `ns` on 192.0.2.1/24 and fd00:2::1/64 inside, with the probe as its
    peer (192.0.2.2/32, fd00:2::2/128); yields its interface name and public key."""
    ifname = unique_ifname()
    server = wg_genkey()
    process = start_daemon(ns, command, ifname)
    try:
        psk_line = f"PresharedKey = {psk}\n" if psk else ""
        wg_setconf(
            ns,
            ifname,
            f"[Interface]\nPrivateKey = {server.private}\nListenPort = {WG_PORT}\n\n"
            f"[Peer]\nPublicKey = {probe_key}\n{psk_line}"
            "AllowedIPs = 192.0.2.2/32, fd00:2::2/128\n",
        )
        ip_up(ns, ifname, "192.0.2.1/24", "fd00:2::1/64")
        yield ifname, server.public
    finally:
        ns.stop(process)
        (UAPI_DIR / f"{ifname}.sock").unlink(missing_ok=True)


@contextmanager
def serving(
    ns: Namespace, command: tuple[str, ...], probe_key: str, *, psk: str = ""
) -> Iterator[str]:
    """As `serving_interface`; yields the server's public key."""
    with serving_interface(ns, command, probe_key, psk=psk) as (_, server_key):
        yield server_key


@pytest.fixture
def probe_in(capsys: pytest.CaptureFixture[str]) -> Callable[[Namespace], Probe]:
    """`probe_in(ns)(*argv)` runs `wgpy probe ARGV` in `ns`: (exit status, stdout, stderr)."""

    def in_namespace(ns: Namespace) -> Probe:
        def probe(*argv: str) -> tuple[int, str, str]:
            with ns.entered():
                status = run(list(argv))
            out, err = capsys.readouterr()
            return status, out, err

        return probe

    return in_namespace


def endpoint_of(ns: Namespace, family: str = "ipv4") -> str:
    return f"{ns.ipv4}:{WG_PORT}" if family == "ipv4" else f"[{ns.ipv6}]:{WG_PORT}"


@netns
@pytest.mark.parametrize("command", SERVERS)
@pytest.mark.parametrize("outer", ["ipv4", "ipv6"])
def test_the_probe_gets_a_valid_response_with_the_right_keys(
    netns_pair: tuple[Namespace, Namespace],
    command: tuple[str, ...],
    outer: str,
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    with serving(host, command, keys.public) as server_key:
        status, out, err = probe_in(client)(
            endpoint_of(host, outer), "--peer-key", server_key, "--key-file", str(keys.file)
        )
    assert (status, err) == (0, "")
    assert RTT.search(out) and "1 attempt, 1 answered" in out


@netns
@pytest.mark.parametrize("command", SERVERS)
def test_the_probe_handshakes_with_a_preshared_key(
    netns_pair: tuple[Namespace, Namespace],
    command: tuple[str, ...],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys, psk = Keys(tmp_path), Keys(tmp_path, "psk")  # any 32 bytes make a preshared key
    with serving(host, command, keys.public, psk=psk.private) as server_key:
        status, out, _ = probe_in(client)(
            endpoint_of(host), "--peer-key", server_key, "--key", keys.private,
            "--psk-file", str(psk.file),
        )  # fmt: skip
    assert status == 0 and RTT.search(out)


@netns
@pytest.mark.parametrize("command", SERVERS)
def test_back_to_back_attempts_keep_to_the_servers_flood_and_replay_rules(
    netns_pair: tuple[Namespace, Namespace],
    command: tuple[str, ...],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    with serving(host, command, keys.public) as server_key:
        status, out, _ = probe_in(client)(
            endpoint_of(host), "--peer-key", server_key, "--key-file", str(keys.file),
            "--count", "5", "--interval", "0", "--timeout", "2",
            "--ping", "192.0.2.1", "--address", "192.0.2.2",
        )  # fmt: skip
    assert status == 0
    assert len(re.findall(r"echo reply in", out)) == 5 and "5 attempts, 5 answered" in out


@netns
@pytest.mark.parametrize("command", SERVERS)
def test_a_wrong_peer_key_gets_silence_a_reason_and_a_failing_status(
    netns_pair: tuple[Namespace, Namespace],
    command: tuple[str, ...],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    with serving(host, command, keys.public):
        status, out, err = probe_in(client)(
            endpoint_of(host), "--peer-key", wg_genkey().public, "--key-file", str(keys.file),
            "--timeout", "0.5",
        )  # fmt: skip
    assert status == 1
    assert "silence: no answer within 0.5 s" in out
    assert "no answer within 0.5 s" in err and "--peer-key" in err


@netns
@pytest.mark.parametrize("command", SERVERS)
def test_a_preshared_key_mismatch_is_reported_as_an_invalid_response(
    netns_pair: tuple[Namespace, Namespace],
    command: tuple[str, ...],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys, psk = Keys(tmp_path), Keys(tmp_path, "psk")
    with serving(host, command, keys.public, psk=Keys(tmp_path, "other").private) as server_key:
        status, out, err = probe_in(client)(
            endpoint_of(host), "--peer-key", server_key, "--key-file", str(keys.file),
            "--psk-file", str(psk.file),
        )  # fmt: skip
    assert status == 1
    assert out.count("invalid-response") == 1
    assert "preshared key does not match" in err


@netns
@pytest.mark.parametrize("command", SERVERS)
@pytest.mark.parametrize(
    "inner", [("192.0.2.2", "192.0.2.1"), ("fd00:2::2", "fd00:2::1")], ids=["ipv4", "ipv6"]
)
def test_a_ping_through_the_server_is_answered(
    netns_pair: tuple[Namespace, Namespace],
    command: tuple[str, ...],
    inner: tuple[str, str],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    with serving(host, command, keys.public) as server_key:
        status, out, _ = probe_in(client)(
            endpoint_of(host), "--peer-key", server_key, "--key-file", str(keys.file),
            "--ping", inner[1], "--address", inner[0],
        )  # fmt: skip
    assert status == 0
    assert re.search(r"response in \d+\.\d+ ms, echo reply in \d+\.\d+ ms", out)


@netns
@pytest.mark.parametrize("command", SERVERS)
def test_a_ping_from_an_address_the_server_does_not_allow_goes_unanswered(
    netns_pair: tuple[Namespace, Namespace],
    command: tuple[str, ...],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    with serving(host, command, keys.public) as server_key:
        status, _, err = probe_in(client)(
            endpoint_of(host), "--peer-key", server_key, "--key-file", str(keys.file),
            "--ping", "192.0.2.1", "--address", "192.0.2.99", "--timeout", "0.5",
        )  # fmt: skip
    assert status == 1
    assert "no echo reply from 192.0.2.1" in err and "AllowedIPs" in err


@netns
@pytest.mark.parametrize("command", SERVERS)
def test_json_output_has_one_entry_per_attempt(
    netns_pair: tuple[Namespace, Namespace], command: tuple[str, ...], tmp_path: Path
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    with serving(host, command, keys.public) as server_key:
        completed = client.run(
            sys.executable, "-m", "wgpy.cli.probe", endpoint_of(host),
            "--peer-key", server_key, "--key-file", str(keys.file),
            "--count", "2", "--interval", "0", "--ping", "192.0.2.1", "--address", "192.0.2.2",
            "--json",
        )  # fmt: skip
    report = json.loads(completed.stdout)
    assert set(report) == {"endpoint", "peer", "ok", "attempts"}
    assert (report["endpoint"], report["peer"], report["ok"]) == (
        endpoint_of(host), server_key, True,
    )  # fmt: skip
    assert len(report["attempts"]) == 2
    for attempt in report["attempts"]:
        assert set(attempt) == {"outcome", "ok", "reason", "rtt_ms", "cookie_reply", "ping"}
        assert (attempt["outcome"], attempt["ok"], attempt["cookie_reply"]) == (
            "answered", True, False,
        )  # fmt: skip
        assert attempt["rtt_ms"] > 0
        assert attempt["ping"]["outcome"] == "replied" and attempt["ping"]["rtt_ms"] > 0


@pytest.mark.netns("wg")
def test_json_output_of_a_failed_probe_says_why(
    netns_pair: tuple[Namespace, Namespace], tmp_path: Path
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    completed = client.run(
        sys.executable, "-m", "wgpy.cli.probe", endpoint_of(host),
        "--peer-key", wg_genkey().public, "--key-file", str(keys.file), "--json",
        check=False,
    )  # fmt: skip
    assert completed.returncode == 1
    report = json.loads(completed.stdout)
    assert report["ok"] is False
    (attempt,) = report["attempts"]
    assert (attempt["outcome"], attempt["rtt_ms"], attempt["ping"]) == ("refused", None, None)
    assert "nothing listens on that port" in attempt["reason"]


@pytest.mark.netns("wg")
def test_a_port_nothing_listens_on_is_refused(
    netns_pair: tuple[Namespace, Namespace],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    status, out, err = probe_in(client)(
        endpoint_of(host), "--peer-key", wg_genkey().public, "--key-file", str(keys.file)
    )
    assert status == 1
    assert "refused:" in out and "ICMP port unreachable" in err


@pytest.mark.netns("wg")
def test_a_server_address_nobody_answers_arp_for_is_unreachable(
    netns_pair: tuple[Namespace, Namespace],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, _ = netns_pair
    keys = Keys(tmp_path)
    # On the veth's subnet, but no host: the client's ARP goes unanswered (after about 3 s).
    status, out, err = probe_in(client)(
        f"198.18.0.99:{WG_PORT}", "--peer-key", wg_genkey().public, "--key-file", str(keys.file),
        "--timeout", "10",
    )  # fmt: skip
    assert status == 1
    assert "unreachable: the network reports the server unreachable" in out
    assert "No route to host" in err


@pytest.mark.netns("wg")
def test_an_endpoint_this_host_has_no_route_to_means_the_probe_cannot_run(
    netns_pair: tuple[Namespace, Namespace],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, _ = netns_pair
    keys = Keys(tmp_path)
    status, _, err = probe_in(client)(
        f"192.0.2.200:{WG_PORT}", "--peer-key", wg_genkey().public, "--key-file", str(keys.file)
    )
    assert status == 2
    assert "192.0.2.200:51820: Network is unreachable" in err


# -- the cookie path against real servers under load ---------------------------------------------

# The wgpy daemon under load from the first handshake message on.
WGPY_UNDER_LOAD = ("env", "WGPY_UNDER_LOAD_THRESHOLD=1", sys.executable, "-m", "wgpy.cli.wgpy")
COOKIE_THEN_RESPONSE = re.compile(
    r"cookie reply \(server under load\), retried with mac2; "
    r"response in \d+\.\d+ ms, echo reply in \d+\.\d+ ms"
)


@netns
def test_a_wgpy_server_under_load_answers_with_a_cookie_and_then_the_retry_with_mac2(
    netns_pair: tuple[Namespace, Namespace],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    with serving_interface(host, WGPY_UNDER_LOAD, keys.public) as (ifname, server_key):
        status, out, _ = probe_in(client)(
            endpoint_of(host), "--peer-key", server_key, "--key-file", str(keys.file),
            "--count", "2", "--interval", "0", "--ping", "192.0.2.1", "--address", "192.0.2.2",
        )  # fmt: skip
        with host.entered():
            stats = get_stats(ifname)
    assert status == 0
    assert len(COOKIE_THEN_RESPONSE.findall(out)) == 2, out
    assert stats is not None
    assert (stats.cookie_replies_sent, stats.drops["cookie_required"]) == (2, 2)


@netns
def test_the_json_report_says_the_server_sent_a_cookie_reply(
    netns_pair: tuple[Namespace, Namespace], tmp_path: Path
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    with serving(host, WGPY_UNDER_LOAD, keys.public) as server_key:
        completed = client.run(
            sys.executable, "-m", "wgpy.cli.probe", endpoint_of(host),
            "--peer-key", server_key, "--key-file", str(keys.file), "--json",
        )  # fmt: skip
    (attempt,) = json.loads(completed.stdout)["attempts"]
    assert (attempt["outcome"], attempt["ok"], attempt["cookie_reply"]) == ("answered", True, True)


# wireguard-go is under load while its handshake queue holds QueueHandshakeSize / 8 = 128
# messages, and for a second after (device/receive.go, RoutineHandshake and IsUnderLoad;
# device/queueconstants_default.go: QueueHandshakeSize = 1024). A flood of initiations with a
# valid mac1 fills it: each costs the server a DH until it is under load.
FLOOD_RATE = 50000.0
UNDER_LOAD_WAIT = 15.0
FLOOD_ATTEMPTS = 10


@netns
def test_wireguard_go_flooded_with_initiations_answers_the_probe_with_a_cookie(
    netns_pair: tuple[Namespace, Namespace],
    tmp_path: Path,
    probe_in: Callable[[Namespace], Probe],
) -> None:
    client, host = netns_pair
    keys = Keys(tmp_path)
    with serving(host, ("wireguard-go",), keys.public) as server_key:
        target = (host.ipv4, WG_PORT)
        flood = InitiationFlood(client, target, from_base64(server_key), FLOOD_RATE).start()
        try:
            assert wait_until(lambda: flood.cookie_replies > 0, UNDER_LOAD_WAIT), (
                f"no cookie reply to {flood.sent} initiations: wireguard-go never came under load"
            )
            # The flood keeps its queue near full, where it drops what does not fit: some
            # attempts go unanswered, so several are made (each a cookie, then the retry).
            status, out, _ = probe_in(client)(
                endpoint_of(host), "--peer-key", server_key, "--key-file", str(keys.file),
                "--count", str(FLOOD_ATTEMPTS), "--interval", "0", "--timeout", "1",
            )  # fmt: skip
        finally:
            flood.stop()
    assert status == 0, out
    assert re.search(r"cookie reply \(server under load\), retried with mac2; response in", out)


# -- the daemon's under-load threshold (WGPY_UNDER_LOAD_THRESHOLD) ---------------------------------


def test_the_daemon_uses_the_default_threshold_without_the_variable() -> None:
    assert daemon.under_load_threshold({}) == UNDER_LOAD_THRESHOLD


@pytest.mark.parametrize("value", ["1", "64", "0100"])
def test_the_daemon_takes_a_positive_integer_threshold(value: str) -> None:
    assert daemon.under_load_threshold({"WGPY_UNDER_LOAD_THRESHOLD": value}) == int(value)


@pytest.mark.parametrize("value", ["0", "-1", "", " 8", "1.5", "many", "\u0663"])
def test_the_daemon_refuses_a_threshold_that_is_not_a_positive_integer(value: str) -> None:
    with pytest.raises(ValueError, match=r"WGPY_UNDER_LOAD_THRESHOLD=.*not a positive integer"):
        daemon.under_load_threshold({"WGPY_UNDER_LOAD_THRESHOLD": value})


def test_an_invalid_threshold_stops_the_daemon_before_it_creates_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WGPY_UNDER_LOAD_THRESHOLD", "0")
    assert daemon.run(["--foreground", "wg0"]) == 1
    assert capsys.readouterr().err == (
        "wgpy: WGPY_UNDER_LOAD_THRESHOLD='0': not a positive integer\n"
    )
