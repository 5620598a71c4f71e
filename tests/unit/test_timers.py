"""A peer's timers (whitepaper section 6, the kernel's timers.c): which event arms or disarms which
timer, when each falls due, and the jitter on the handshake's. Time is passed in; nothing sleeps."""

from __future__ import annotations

from typing import Any

from fakes import Link

from wgpy.core.constants import (
    KEEPALIVE_TIMEOUT,
    NEW_HANDSHAKE_TIME,
    REJECT_AFTER_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    ZERO_KEYS_TIME,
)
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.timers import PeerTimers, Timer, TimerQueue

NOW = 1000.0


def peer_timers(**state: Any) -> PeerTimers:
    """A peer's timers, on a queue of their own, with `state` (deadlines written here are the
    peer's own state, not on the device's queue: these tests ask the peer, not the queue)."""
    return PeerTimers(TimerQueue(), bytes(32), **state)


def no_jitter() -> float:
    return 0.0


def never_drawn() -> float:
    raise AssertionError("jitter drawn for a timer already armed")


def armed(timers: PeerTimers) -> dict[Timer, float]:
    """Each armed timer and its deadline."""
    deadlines = {timer: getattr(timers, timer.value) for timer in Timer}
    return {timer: deadline for timer, deadline in deadlines.items() if deadline is not None}


def test_a_new_peer_has_no_timer_armed() -> None:
    timers = peer_timers()
    assert armed(timers) == {}
    assert timers.next_deadline() is None
    assert timers.expired(NOW + 1e6) == []


# -- which event arms which timer ------------------------------------------------------------------


def test_data_sent_arms_a_new_handshake_keepalive_timeout_plus_rekey_timeout_later() -> None:
    assert NEW_HANDSHAKE_TIME == KEEPALIVE_TIMEOUT + REKEY_TIMEOUT == 15.0
    timers = peer_timers()
    timers.data_sent(NOW, lambda: 0.25)
    assert armed(timers) == {Timer.NEW_HANDSHAKE: NOW + NEW_HANDSHAKE_TIME + 0.25}


def test_more_data_sent_neither_postpones_the_new_handshake_nor_draws_jitter() -> None:
    timers = peer_timers()
    timers.data_sent(NOW, no_jitter)
    timers.data_sent(NOW + 7, never_drawn)
    assert timers.new_handshake == NOW + NEW_HANDSHAKE_TIME


def test_any_authenticated_packet_received_disarms_the_new_handshake() -> None:
    timers = peer_timers()
    timers.data_sent(NOW, no_jitter)
    timers.any_authenticated_packet_received()
    assert armed(timers) == {}


def test_data_received_arms_a_keepalive_keepalive_timeout_later() -> None:
    timers = peer_timers()
    timers.data_received(NOW)
    assert armed(timers) == {Timer.SEND_KEEPALIVE: NOW + KEEPALIVE_TIMEOUT}
    assert not timers.need_another_keepalive


def test_more_data_received_keeps_the_keepalive_deadline_and_asks_for_another() -> None:
    timers = peer_timers()
    timers.data_received(NOW)
    timers.data_received(NOW + 3)
    assert timers.send_keepalive == NOW + KEEPALIVE_TIMEOUT
    assert timers.need_another_keepalive


def test_any_authenticated_packet_sent_disarms_the_keepalive() -> None:
    timers = peer_timers()
    timers.data_received(NOW)
    timers.any_authenticated_packet_sent()
    assert armed(timers) == {}


def test_traversal_rearms_the_persistent_keepalive_an_interval_later_when_one_is_set() -> None:
    timers = peer_timers(persistent_keepalive_interval=25)
    timers.any_authenticated_packet_traversal(NOW)
    assert armed(timers) == {Timer.PERSISTENT_KEEPALIVE: NOW + 25}
    timers.any_authenticated_packet_traversal(NOW + 10)
    assert timers.persistent_keepalive == NOW + 35


def test_traversal_arms_nothing_without_a_persistent_keepalive_interval() -> None:
    timers = peer_timers()
    timers.any_authenticated_packet_traversal(NOW)
    assert armed(timers) == {}


def test_an_initiation_arms_its_retransmission_rekey_timeout_plus_jitter_later() -> None:
    timers = peer_timers()
    timers.handshake_initiated(NOW, 0.2)
    assert armed(timers) == {Timer.RETRANSMIT_HANDSHAKE: NOW + REKEY_TIMEOUT + 0.2}


def test_a_completed_handshake_disarms_its_retransmission_and_forgets_the_attempts() -> None:
    timers = peer_timers(handshake_attempts=4, sent_lastminute_handshake=True)
    timers.handshake_initiated(NOW, 0.0)
    timers.handshake_complete()
    assert armed(timers) == {}
    assert timers.handshake_attempts == 0
    assert not timers.sent_lastminute_handshake


def test_a_derived_session_arms_the_erasure_of_keys_three_reject_after_times_later() -> None:
    assert ZERO_KEYS_TIME == 3 * REJECT_AFTER_TIME
    timers = peer_timers()
    timers.session_derived(NOW)
    assert armed(timers) == {Timer.ZERO_KEY_MATERIAL: NOW + ZERO_KEYS_TIME}
    timers.session_derived(NOW + 60)  # a newer session postpones it
    assert timers.zero_key_material == NOW + 60 + ZERO_KEYS_TIME


def every_timer_armed() -> PeerTimers:
    """Each timer armed, due 1 to 5 seconds from NOW in the reverse of their handling order."""
    return peer_timers(
        persistent_keepalive=NOW + 1,
        zero_key_material=NOW + 2,
        new_handshake=NOW + 3,
        send_keepalive=NOW + 4,
        retransmit_handshake=NOW + 5,
    )


def test_stop_disarms_every_timer() -> None:
    timers = every_timer_armed()
    timers.stop()
    assert armed(timers) == {}


# -- when timers fall due --------------------------------------------------------------------------


def test_the_next_deadline_is_the_earliest_armed() -> None:
    timers = every_timer_armed()
    assert timers.next_deadline() == NOW + 1
    timers.persistent_keepalive = None
    assert timers.next_deadline() == NOW + 2


def test_a_timer_falls_due_at_its_deadline_not_before() -> None:
    timers = peer_timers()
    timers.data_received(NOW)
    assert timers.expired(NOW + KEEPALIVE_TIMEOUT - 1e-6) == []
    assert timers.expired(NOW + KEEPALIVE_TIMEOUT) == [Timer.SEND_KEEPALIVE]


def test_expired_timers_come_in_handling_order_and_only_they_are_disarmed() -> None:
    timers = every_timer_armed()
    assert timers.expired(NOW + 3) == [
        Timer.NEW_HANDSHAKE,
        Timer.ZERO_KEY_MATERIAL,
        Timer.PERSISTENT_KEEPALIVE,
    ]
    assert armed(timers) == {Timer.RETRANSMIT_HANDSHAKE: NOW + 5, Timer.SEND_KEEPALIVE: NOW + 4}
    assert timers.expired(NOW + 3) == []
    assert timers.expired(NOW + 10) == [Timer.RETRANSMIT_HANDSHAKE, Timer.SEND_KEEPALIVE]


# -- the jitter the device draws -------------------------------------------------------------------


def handshake_jitters(seed: int) -> tuple[float, float]:
    """The jitter on the retransmission of a's first initiation, then on its new-handshake timer
    once the packet that waited for the session is sent."""
    link = Link(seed=seed)
    link.send("a", ipv4_packet("10.0.0.1", "10.0.0.2"), deliver=False)  # the initiation
    timers = link.peer_of_b.timers
    assert timers.retransmit_handshake is not None
    retransmit = timers.retransmit_handshake - link.now - REKEY_TIMEOUT
    link.deliver()  # the response, then the staged packet
    assert timers.new_handshake is not None
    return retransmit, timers.new_handshake - link.now - NEW_HANDSHAKE_TIME


def test_the_device_jitters_the_handshake_timers_by_up_to_a_third_of_a_second() -> None:
    assert REKEY_TIMEOUT_JITTER_MAX == 1 / 3
    jitters = [jitter for seed in range(40) for jitter in handshake_jitters(seed)]
    assert all(0 <= jitter < REKEY_TIMEOUT_JITTER_MAX for jitter in jitters)
    assert len(set(jitters)) == len(jitters)  # drawn afresh each time
