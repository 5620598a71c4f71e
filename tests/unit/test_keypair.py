"""A keypair's lifetime (whitepaper section 6.1-6.2, the kernel's noise.c, send.c and
receive.c), and a peer's three keypair slots. Time is passed in; nothing sleeps."""

from __future__ import annotations

from wgpy.core import constants
from wgpy.core.keypair import Keypair, Keypairs
from wgpy.core.noise import TransportKeys

CREATED = 1000.0
KEYS = TransportKeys(b"\x01" * 32, b"\x02" * 32)


def as_initiator(index: int = 1) -> Keypair:
    """A keypair from a handshake we initiated, with local index `index`."""
    return Keypair.from_keys(KEYS, index, 0x99, True, CREATED)


def as_responder(index: int = 1) -> Keypair:
    """A keypair from a handshake we answered."""
    return Keypair.from_keys(KEYS, index, 0x99, False, CREATED)


# -- counters and expiry ---------------------------------------------------------------------------


def test_a_new_keypair_sends_from_counter_zero_and_has_received_nothing() -> None:
    fresh = as_initiator()
    assert fresh.send_counter == 0
    assert fresh.replay.greatest is None


def test_the_reject_and_rekey_limits_are_the_whitepapers() -> None:
    assert constants.REJECT_AFTER_MESSAGES == 2**64 - 2**13 - 1
    assert constants.REKEY_AFTER_MESSAGES == 2**60
    assert (constants.REKEY_AFTER_TIME, constants.REJECT_AFTER_TIME) == (120.0, 180.0)
    assert (
        constants.REKEY_ON_RECEIVE_TIME
        == constants.REJECT_AFTER_TIME - constants.KEEPALIVE_TIMEOUT - constants.REKEY_TIMEOUT
    )


def test_a_keypair_sends_and_receives_until_reject_after_time() -> None:
    session = as_initiator()
    last_moment = CREATED + constants.REJECT_AFTER_TIME - 1e-6
    assert session.can_send(last_moment) and session.can_receive(last_moment)
    expired = CREATED + constants.REJECT_AFTER_TIME
    assert not session.can_send(expired) and not session.can_receive(expired)


def test_the_last_counter_a_keypair_sends_is_one_below_reject_after_messages() -> None:
    session = as_initiator()
    session.send_counter = constants.REJECT_AFTER_MESSAGES - 1
    assert session.can_send(CREATED)
    session.send_counter = constants.REJECT_AFTER_MESSAGES
    assert not session.can_send(CREATED)


def test_a_keypair_can_send_a_batch_only_if_every_counter_in_it_is_below_the_limit() -> None:
    session = as_initiator()
    session.send_counter = constants.REJECT_AFTER_MESSAGES - 3
    assert session.can_send(CREATED, 3)
    assert not session.can_send(CREATED, 4)


def test_a_keypair_out_of_counters_still_receives() -> None:
    session = as_initiator()
    session.send_counter = constants.REJECT_AFTER_MESSAGES
    assert session.can_receive(CREATED)


# -- when to rekey ---------------------------------------------------------------------------------


def test_sending_calls_for_a_rekey_after_rekey_after_messages_on_either_side() -> None:
    for session in (as_initiator(), as_responder()):
        session.send_counter = constants.REKEY_AFTER_MESSAGES
        assert not session.needs_rekey_on_send(CREATED)
        session.send_counter = constants.REKEY_AFTER_MESSAGES + 1
        assert session.needs_rekey_on_send(CREATED)


def test_sending_calls_for_a_rekey_after_rekey_after_time_on_the_initiators_side_only() -> None:
    initiator, responder = as_initiator(), as_responder()
    assert not initiator.needs_rekey_on_send(CREATED + constants.REKEY_AFTER_TIME - 1e-6)
    assert initiator.needs_rekey_on_send(CREATED + constants.REKEY_AFTER_TIME)
    assert not responder.needs_rekey_on_send(CREATED + constants.REJECT_AFTER_TIME)


def test_receiving_calls_for_a_rekey_near_the_end_on_the_initiators_side_only() -> None:
    initiator, responder = as_initiator(), as_responder()
    assert not initiator.needs_rekey_on_receive(CREATED + constants.REKEY_ON_RECEIVE_TIME - 1e-6)
    assert initiator.needs_rekey_on_receive(CREATED + constants.REKEY_ON_RECEIVE_TIME)
    assert not responder.needs_rekey_on_receive(CREATED + constants.REJECT_AFTER_TIME)


# -- the three slots -------------------------------------------------------------------------------


def test_the_initiators_new_keypair_becomes_current_and_the_old_one_previous() -> None:
    slots = Keypairs()
    first, second, third = as_initiator(1), as_initiator(2), as_initiator(3)
    assert slots.add(first) == []
    assert slots.add(second) == []
    assert (slots.current, slots.previous) == (second, first)
    assert slots.add(third) == [first]
    assert (slots.current, slots.previous, slots.next) == (third, second, None)


def test_the_responders_new_keypair_waits_as_next_and_the_previous_is_retired() -> None:
    slots = Keypairs()
    old, current, answered = as_initiator(1), as_initiator(2), as_responder(3)
    slots.add(old)
    slots.add(current)
    assert slots.add(answered) == [old]
    assert (slots.current, slots.previous, slots.next) == (current, None, answered)


def test_a_newer_answer_replaces_the_next_keypair_still_waiting() -> None:
    slots = Keypairs()
    waiting, newer = as_responder(1), as_responder(2)
    slots.add(waiting)
    assert slots.add(newer) == [waiting]
    assert slots.next is newer


def test_the_next_keypair_becomes_current_once_the_initiator_has_used_it() -> None:
    slots = Keypairs()
    old, current, answered = as_initiator(1), as_initiator(2), as_responder(3)
    slots.add(old)
    slots.add(current)
    slots.add(answered)
    assert slots.promote_next() is None  # `old` was retired when `answered` came
    assert (slots.current, slots.previous, slots.next) == (answered, current, None)


def test_an_initiators_keypair_demotes_a_waiting_next_to_previous_rather_than_lose_it() -> None:
    slots = Keypairs()
    current, answered, initiated = as_initiator(1), as_responder(2), as_initiator(3)
    slots.add(current)
    slots.add(answered)
    assert slots.add(initiated) == [current]
    assert (slots.current, slots.previous, slots.next) == (initiated, answered, None)


def test_clearing_retires_every_keypair_held() -> None:
    slots = Keypairs()
    current, answered = as_initiator(1), as_responder(2)
    slots.add(current)
    slots.add(answered)
    assert slots.clear() == [current, answered]
    assert (slots.current, slots.previous, slots.next) == (None, None, None)
