"""The device, end to end: two devices joined in memory, under a fake clock.

Each test states one rule of the whitepaper (section 6) or of the kernel's send.c, receive.c and
timers.c, which the timings here follow.
"""

from __future__ import annotations

import itertools

import pytest
from fakes import Link
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpy.core.constants import (
    COUNTER_WINDOW_SIZE,
    KEEPALIVE_TIMEOUT,
    MAX_STAGED_PACKETS,
    MAX_TIMER_HANDSHAKES,
    NEW_HANDSHAKE_TIME,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_ON_RECEIVE_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    ZERO_KEYS_TIME,
)
from wgpy.core.drops import DropReason
from wgpy.core.ippacket import ipv4_packet, ipv6_packet

INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
A_TO_B = ipv4_packet("10.0.0.1", "10.0.0.2", b"ping")
B_TO_A = ipv4_packet("10.0.0.2", "10.0.0.1", b"pong")


def connected(**options: object) -> Link:
    link = Link(**options)  # type: ignore[arg-type]
    link.send("a", A_TO_B)
    assert link.b.received == [A_TO_B]
    return link


# -- handshake and data ------------------------------------------------------------------------


def test_first_packet_triggers_a_handshake_and_is_delivered_after_it() -> None:
    link = connected()
    assert link.kinds() == [INITIATION, RESPONSE, TRANSPORT]
    link.send("b", B_TO_A)
    assert link.a.received == [B_TO_A]
    assert link.kinds()[-1] == TRANSPORT


def test_ipv6_inner_packets_flow_both_ways() -> None:
    link = Link()
    there, back = ipv6_packet("fd00::1", "fd00::2", b"6"), ipv6_packet("fd00::2", "fd00::1", b"9")
    link.send("a", there)
    link.send("b", back)
    assert (link.b.received, link.a.received) == ([there], [back])


def test_matching_preshared_keys_complete_the_handshake() -> None:
    link = connected(psk=bytes(range(32)))
    link.send("b", B_TO_A)
    assert link.a.received == [B_TO_A]


def test_mismatched_preshared_keys_never_complete() -> None:
    link = Link(psk=bytes(range(32)), psk_b=bytes(32 * [7]))
    link.send("a", A_TO_B)
    link.advance(30)
    assert link.b.received == []
    assert link.a.device.drops[DropReason.HANDSHAKE_INVALID] >= 1
    assert link.peer_of_b.keypairs.current is None


def test_both_sides_initiating_at_once_converge() -> None:
    link = Link()
    link.send("a", A_TO_B, deliver=False)
    link.send("b", B_TO_A, deliver=False)
    link.deliver()
    link.advance(2 * REKEY_TIMEOUT)
    assert link.b.received == [A_TO_B]
    assert link.a.received == [B_TO_A]
    link.send("a", A_TO_B)
    link.send("b", B_TO_A)
    assert len(link.b.received) == len(link.a.received) == 2


def test_padding_rounds_the_payload_up_to_16_bytes() -> None:
    link = connected()
    transport = next(data for name, _, data in link.sent if data[0] == TRANSPORT)
    assert len(transport) == 16 + 32 + 16  # header, 24-byte packet padded to 32, tag


def test_the_responder_sends_on_a_new_session_only_after_receiving_on_it() -> None:
    link = Link()
    link.lose = lambda sender, data: sender == "a" and data[0] == TRANSPORT
    link.send("a", A_TO_B)
    link.send("b", B_TO_A)
    assert link.kinds("b") == [RESPONSE], "b must hold its packet until a confirms the keys"
    link.lose = lambda sender, data: False
    link.send("a", A_TO_B)
    assert link.a.received == [B_TO_A]
    assert link.b.received == [A_TO_B]


def test_stats_count_every_datagram_and_the_handshake_time() -> None:
    link = connected()
    sent_by_a = sum(len(data) for name, _, data in link.sent if name == "a")
    assert link.peer_of_b.tx_bytes == sent_by_a
    assert link.peer_of_a.rx_bytes == sent_by_a
    assert link.peer_of_b.last_handshake_wall == link.wall
    assert link.peer_of_a.last_handshake_wall == link.wall


# -- timers ------------------------------------------------------------------------------------


def test_rekey_after_120_seconds_loses_no_packet_across_the_switch() -> None:
    link = connected()
    for second in range(int(REKEY_AFTER_TIME * 2)):
        link.send("a", ipv4_packet("10.0.0.1", "10.0.0.2", second.to_bytes(2, "big")))
        link.send("b", ipv4_packet("10.0.0.2", "10.0.0.1", second.to_bytes(2, "big")))
        link.advance(1)
    assert len(link.b.received) == 1 + 2 * REKEY_AFTER_TIME
    assert len(link.a.received) == 2 * REKEY_AFTER_TIME
    assert link.kinds().count(INITIATION) == 2
    assert link.kinds().count(RESPONSE) == 2


def test_a_session_is_dead_after_reject_after_time() -> None:
    link = connected()
    link.advance(REJECT_AFTER_TIME + 1)
    old = [data for name, _, data in link.sent if name == "a" and data[0] == TRANSPORT][-1]
    link.inject("b", old, link.a.endpoint)
    assert link.b.device.drops[DropReason.KEYPAIR_EXPIRED] == 1
    start = link.mark()
    link.send("a", A_TO_B)
    assert link.kinds("a", start)[0] == INITIATION, "an expired session may not send"
    assert link.b.received == [A_TO_B, A_TO_B]


def test_handshake_retries_every_rekey_timeout_plus_jitter_then_gives_up() -> None:
    link = Link()
    link.lose = lambda sender, data: True
    link.send("a", A_TO_B)
    link.advance(REKEY_TIMEOUT * (MAX_TIMER_HANDSHAKES + 6))
    times = link.times("a", INITIATION)
    # The kernel retries while attempts <= MAX_TIMER_HANDSHAKES: the first send and 19 retries,
    # then it stops and drops what waited.
    assert len(times) == MAX_TIMER_HANDSHAKES + 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(REKEY_TIMEOUT <= gap < REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX for gap in gaps)
    assert len(set(gaps)) > 1, "the jitter varies"
    assert link.peer_of_b.drops[DropReason.HANDSHAKE_GAVE_UP] == 1
    assert not link.peer_of_b.staged


def test_data_in_a_session_draws_nothing_from_the_rng() -> None:
    """The rng (os.urandom in the daemon) is for secrets and indices. The jitter that each data
    packet may arm comes from a generator seeded once, sparing a ping a system call."""
    link = connected()

    def no_draws(size: int) -> bytes:
        raise AssertionError(f"the data path drew {size} random bytes")

    link.a.device.rng = link.b.device.rng = no_draws
    for _ in range(3):
        link.send("a", A_TO_B)
        link.send("b", B_TO_A)
        link.advance(1.0)
    assert link.b.received == [A_TO_B] * 4
    assert link.a.received == [B_TO_A] * 3


def test_a_passive_keepalive_answers_data_after_keepalive_timeout() -> None:
    link = connected()
    start = link.mark()
    link.advance(KEEPALIVE_TIMEOUT - 0.01)
    assert link.kinds("b", start) == []
    link.advance(0.02)
    keepalives = [d for n, _, d in link.sent[start:] if n == "b"]
    assert [(d[0], len(d)) for d in keepalives] == [(TRANSPORT, 32)]
    link.advance(100)
    assert len(link.sent) == 4, "nothing more while idle"


def test_sending_cancels_the_passive_keepalive() -> None:
    link = connected()
    link.advance(1)
    link.send("b", B_TO_A)
    link.advance(KEEPALIVE_TIMEOUT * 3)
    transports = [len(d) for n, _, d in link.sent if n == "b" and d[0] == TRANSPORT]
    assert transports == [16 + 32 + 16], "the data packet only, no keepalive"


def test_persistent_keepalive_is_sent_at_its_interval_when_idle() -> None:
    link = connected()
    start, since = link.mark(), link.now
    link.b.device.set_persistent_keepalive(link.peer_of_a, 25, link.now)
    link.advance(100)
    times = [at - since for n, at, d in link.sent[start:] if n == "b"]
    assert times == pytest.approx([0, 25, 50, 75, 100])


def test_a_new_handshake_starts_when_sent_data_gets_no_reply_for_15_seconds() -> None:
    link = connected()
    link.advance(KEEPALIVE_TIMEOUT + 1)  # b's keepalive answers the first packet.
    link.lose = lambda sender, data: sender == "b"
    sent_at = link.now
    link.send("a", A_TO_B)
    link.advance(NEW_HANDSHAKE_TIME + 1)
    initiations = [at - sent_at for at in link.times("a", INITIATION) if at >= sent_at]
    assert len(initiations) == 1
    assert NEW_HANDSHAKE_TIME <= initiations[0] < NEW_HANDSHAKE_TIME + REKEY_TIMEOUT_JITTER_MAX


@pytest.mark.parametrize(
    ("session_age", "rekeys"),
    [(REKEY_ON_RECEIVE_TIME - 1, False), (REKEY_ON_RECEIVE_TIME + 1, True)],
)
def test_the_initiator_rekeys_on_receive_when_the_session_nears_its_end(
    session_age: float, rekeys: bool
) -> None:
    link = connected()
    link.advance(session_age)
    start = link.mark()
    link.send("b", B_TO_A)
    assert link.a.received == [B_TO_A]
    assert (INITIATION in link.kinds("a", start)) is rekeys


def test_key_material_is_erased_after_three_times_reject_after_time() -> None:
    link = connected()
    link.advance(ZERO_KEYS_TIME - 1)
    assert link.peer_of_b.keypairs.current is not None
    link.advance(2)
    for peer in (link.peer_of_b, link.peer_of_a):
        assert (peer.keypairs.current, peer.keypairs.previous, peer.keypairs.next) == (None,) * 3
    assert not link.a.device._indices and not link.b.device._indices


# -- message-count limits ------------------------------------------------------------------------


def test_rekey_after_messages_starts_a_handshake_but_keeps_sending() -> None:
    link = connected()
    assert link.peer_of_b.keypairs.current is not None
    link.peer_of_b.keypairs.current.send_counter = REKEY_AFTER_MESSAGES + 1
    link.advance(REKEY_TIMEOUT)
    start = link.mark()
    link.send("a", A_TO_B)
    assert link.kinds("a", start)[:2] == [TRANSPORT, INITIATION]
    assert len(link.b.received) == 2


def test_reject_after_messages_stops_the_keypair_from_sending() -> None:
    link = connected()
    assert link.peer_of_b.keypairs.current is not None
    link.peer_of_b.keypairs.current.send_counter = REJECT_AFTER_MESSAGES
    link.advance(REKEY_TIMEOUT)
    start = link.mark()
    link.send("a", A_TO_B)
    assert link.kinds("a", start)[0] == INITIATION
    assert link.peer_of_b.keypairs.current.send_counter == 1, "a new session carried the packet"
    assert len(link.b.received) == 2


# -- cookies under load --------------------------------------------------------------------------


def test_under_load_the_initiator_gets_a_cookie_and_retries_with_mac2() -> None:
    link = Link(under_load_threshold_b=1)
    link.send("a", A_TO_B)
    assert link.kinds() == [INITIATION, COOKIE_REPLY]
    first = next(d for n, _, d in link.sent if d[0] == INITIATION)
    assert first[-16:] == bytes(16), "no cookie yet, so mac2 is zero"
    link.advance(REKEY_TIMEOUT + 1)
    retry = [d for n, _, d in link.sent if d[0] == INITIATION][1]
    assert retry[-16:] != bytes(16)
    assert link.b.received == [A_TO_B]
    assert link.b.device.drops[DropReason.COOKIE_REQUIRED] == 1


def test_under_load_handshakes_from_one_source_are_rate_limited() -> None:
    link = Link(under_load_threshold_b=1)
    link.send("a", A_TO_B)
    link.advance(REKEY_TIMEOUT + 1)
    assert link.b.received == [A_TO_B]
    retry = [d for n, _, d in link.sent if d[0] == INITIATION][1]
    for _ in range(10):
        link.inject("b", retry, link.a.endpoint)
    assert link.b.device.drops[DropReason.RATE_LIMITED] >= 5


# -- attacks and odd peers -----------------------------------------------------------------------


def test_the_peer_endpoint_follows_authenticated_packets() -> None:
    link = connected()
    link.b.endpoint = ("192.0.2.77", 40000)
    link.send("b", B_TO_A)
    assert link.peer_of_b.endpoint == ("192.0.2.77", 40000)
    link.send("a", A_TO_B)
    assert link.b.received == [A_TO_B, A_TO_B]


def test_an_unauthenticated_packet_does_not_move_the_endpoint() -> None:
    link = connected()
    link.inject("a", bytes([4, 0, 0, 0]) + bytes(60), ("192.0.2.66", 1))
    assert link.peer_of_b.endpoint == link.b.endpoint


def test_replayed_transport_datagrams_are_dropped() -> None:
    link = connected()
    transport = next(d for n, _, d in link.sent if n == "a" and d[0] == TRANSPORT)
    link.inject("b", transport, link.a.endpoint)
    assert link.b.received == [A_TO_B]
    assert link.b.device.drops[DropReason.REPLAYED_COUNTER] == 1


def test_a_counter_older_than_the_window_is_dropped() -> None:
    link = connected()
    keypair = link.peer_of_b.keypairs.current
    assert keypair is not None
    link.send("a", A_TO_B, deliver=False)
    stale = link.wire.pop()[1]
    keypair.send_counter = COUNTER_WINDOW_SIZE + 10
    link.send("a", A_TO_B)
    link.inject("b", stale, link.a.endpoint)
    assert link.b.device.drops[DropReason.REPLAYED_COUNTER] == 1
    assert len(link.b.received) == 2


def test_a_replayed_initiation_is_refused_by_its_timestamp() -> None:
    link = connected()
    initiation = next(d for n, _, d in link.sent if d[0] == INITIATION)
    link.inject("b", initiation, link.a.endpoint)
    assert link.b.device.drops[DropReason.REPLAYED_TIMESTAMP] == 1
    assert link.kinds().count(RESPONSE) == 1


def test_initiations_closer_than_20_ms_are_refused_as_a_flood() -> None:
    link = Link()
    link.lose = lambda sender, data: sender == "b"
    link.send("a", A_TO_B)
    link.now += 0.019
    link.peer_of_b.handshake.last_sent = float("-inf")  # Let a initiate again at once.
    link.advance(REKEY_TIMEOUT + 1)
    assert link.b.device.drops[DropReason.INITIATION_FLOOD] == 0
    link.peer_of_b.handshake.last_sent = float("-inf")
    link.a.device.handle_timer(link.now, link.wall)
    link.send("a", A_TO_B)
    link.now += 0.019
    link.peer_of_b.handshake.last_sent = float("-inf")
    link.send("a", A_TO_B)
    assert link.b.device.drops[DropReason.INITIATION_FLOOD] == 1


def test_a_packet_from_outside_the_peers_allowed_ips_is_dropped() -> None:
    link = connected()
    link.send("a", ipv4_packet("10.0.0.99", "10.0.0.2", b"spoof"))
    assert link.b.received == [A_TO_B]
    assert link.b.device.drops[DropReason.DISALLOWED_SOURCE] == 1


def test_a_packet_to_no_peer_is_dropped_as_unroutable() -> None:
    link = Link()
    link.send("a", ipv4_packet("10.0.0.1", "10.9.9.9"))
    assert link.sent == []
    assert link.a.device.drops[DropReason.NO_ROUTE] == 1


def test_packets_waiting_for_a_handshake_are_bounded() -> None:
    link = Link()
    link.lose = lambda sender, data: True
    for _ in range(MAX_STAGED_PACKETS + 10):
        link.send("a", A_TO_B)
    assert len(link.peer_of_b.staged) == MAX_STAGED_PACKETS
    assert link.peer_of_b.drops[DropReason.STAGED_OVERFLOW] == 10


def test_an_unknown_static_key_gets_no_answer() -> None:
    stranger, link = Link(seed=2), Link(seed=1)
    stranger.send("a", A_TO_B, deliver=False)
    initiation = stranger.wire.pop()[1]
    link.inject("b", initiation, ("192.0.2.9", 9))
    assert link.sent == []
    assert link.b.device.drops[DropReason.INVALID_MAC] == 1, "mac1 is keyed by b's public key"


@settings(max_examples=400)
@given(st.binary(min_size=0, max_size=200))
def test_arbitrary_datagrams_never_raise_and_are_counted(data: bytes) -> None:
    link = connected()
    device = link.b.device
    before = sum(device.drops.values())
    actions = device.handle_datagram(data, ("192.0.2.66", 1), link.now, link.wall)
    assert actions == []
    assert sum(device.drops.values()) == before + 1


@settings(max_examples=200)
@given(st.sampled_from([1, 2, 3, 4]), st.binary(min_size=0, max_size=200))
def test_datagrams_with_a_valid_type_word_never_raise(kind: int, body: bytes) -> None:
    link = connected()
    data = bytes([kind, 0, 0, 0]) + body
    before = sum(link.b.device.drops.values())
    assert link.b.device.handle_datagram(data, ("192.0.2.66", 1), link.now, link.wall) == []
    assert sum(link.b.device.drops.values()) == before + 1
