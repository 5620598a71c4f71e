"""`wgpy probe`: handshakes with a WireGuard server as one of its peers.

These tests drive `HandshakeAttempt` against a wgpy device in memory, under the test's clock;
tests/netns/test_probe.py runs `wgpy probe` from one network namespace against wireguard-go and
the wgpy daemon serving in another.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from pathlib import Path

import pytest
from fakes import seeded_rng
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.packet import Raw

from wgpy.cli import daemon
from wgpy.cli.probe import run
from wgpy.core import tai64n
from wgpy.core.constants import UNDER_LOAD_THRESHOLD
from wgpy.core.device import Action, Device, SendDatagrams
from wgpy.core.drops import DropReason
from wgpy.core.echo import Echo
from wgpy.core.keys import generate_private_key, public_key, to_base64
from wgpy.core.probe import (
    INITIATION_SPACING,
    AttemptResult,
    HandshakeAttempt,
    Outcome,
    Pacer,
    PingOutcome,
    ProbeKeys,
    Stage,
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
    """`count` attempts one after the other, spaced by a `Pacer`, as `wgpy.io.probe.probe` does."""
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
