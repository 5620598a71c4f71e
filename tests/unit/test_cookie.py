"""mac1, mac2 and cookie replies (whitepaper section 5.4.4 and 5.4.7)."""

from __future__ import annotations

import os

from fakes import seeded_rng

from wgpy.core.constants import COOKIE_REFRESH_TIME
from wgpy.core.cookie import CookieChecker, CookieGenerator, MacState
from wgpy.core.endpoint import source_bytes
from wgpy.core.keys import generate_private_key, public_key
from wgpy.core.messages import Initiation

RESPONDER = public_key(generate_private_key(os.urandom))
SOURCE = source_bytes(("192.0.2.1", 51820))


def initiation(sender: int = 7) -> bytes:
    return Initiation(sender, bytes(32), bytes(48), bytes(28)).serialize()


def parties() -> tuple[CookieChecker, CookieGenerator]:
    return CookieChecker(RESPONDER, seeded_rng(3)), CookieGenerator(RESPONDER)


def test_mac1_is_keyed_by_the_receivers_public_key() -> None:
    checker, generator = parties()
    message = generator.add_macs(initiation(), now=0.0)
    assert (
        checker.check(message, SOURCE, 0.0, check_cookie=False) is MacState.VALID_MAC_BUT_NO_COOKIE
    )
    stranger = CookieGenerator(public_key(generate_private_key(os.urandom)))
    forged = stranger.add_macs(initiation(), now=0.0)
    assert checker.check(forged, SOURCE, 0.0, check_cookie=False) is MacState.INVALID_MAC


def test_a_cookie_reply_makes_the_next_message_carry_a_valid_mac2() -> None:
    checker, generator = parties()
    first = generator.add_macs(initiation(), now=0.0)
    assert first[-16:] == bytes(16)
    assert checker.check(first, SOURCE, 0.0, check_cookie=True) is MacState.VALID_MAC_BUT_NO_COOKIE
    reply = checker.make_reply(first, 7, SOURCE, now=0.0)
    assert generator.consume_reply(reply, now=0.0)
    second = generator.add_macs(initiation(), now=1.0)
    assert checker.check(second, SOURCE, 1.0, check_cookie=True) is MacState.VALID_MAC_WITH_COOKIE


def test_the_cookie_is_bound_to_the_source_address_and_port() -> None:
    checker, generator = parties()
    first = generator.add_macs(initiation(), now=0.0)
    generator.consume_reply(checker.make_reply(first, 7, SOURCE, now=0.0), now=0.0)
    second = generator.add_macs(initiation(), now=1.0)
    elsewhere = source_bytes(("192.0.2.1", 51821))
    assert checker.check(second, elsewhere, 1.0, True) is MacState.VALID_MAC_BUT_NO_COOKIE


def test_a_cookie_reply_only_opens_with_the_mac1_it_answers() -> None:
    checker, generator = parties()
    first = generator.add_macs(initiation(1), now=0.0)
    reply = checker.make_reply(first, 1, SOURCE, now=0.0)
    generator.add_macs(initiation(2), now=0.0)  # A newer message: its mac1 is what counts now.
    assert not generator.consume_reply(reply, now=0.0)


def test_the_responder_secret_rotates_every_two_minutes() -> None:
    checker, generator = parties()
    first = generator.add_macs(initiation(), now=0.0)
    generator.consume_reply(checker.make_reply(first, 7, SOURCE, now=0.0), now=0.0)
    late = COOKIE_REFRESH_TIME + 1
    generator_fresh = generator.add_macs(initiation(), now=COOKIE_REFRESH_TIME - 1)
    assert checker.check(generator_fresh, SOURCE, late, True) is MacState.VALID_MAC_BUT_NO_COOKIE


def test_the_initiator_stops_using_a_cookie_after_two_minutes() -> None:
    checker, generator = parties()
    first = generator.add_macs(initiation(), now=0.0)
    generator.consume_reply(checker.make_reply(first, 7, SOURCE, now=0.0), now=0.0)
    assert generator.add_macs(initiation(), now=COOKIE_REFRESH_TIME - 1)[-16:] != bytes(16)
    assert generator.add_macs(initiation(), now=COOKIE_REFRESH_TIME)[-16:] == bytes(16)
