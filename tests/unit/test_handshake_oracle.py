"""Our handshake against a second, direct implementation of the whitepaper's formulas.

tests/oracle.py computes section 5.4.2-5.4.5 step by step from the primitives; with the same static,
ephemeral and preshared keys, index and timestamp, both must produce byte-identical messages and
the same transport keys.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import oracle_initiation, oracle_initiator_keys, oracle_response
from strategies import keys32

from wgpy.core import noise, tai64n
from wgpy.core.cookie import CookieGenerator
from wgpy.core.handshake import Handshake
from wgpy.core.keys import clamp, public_key
from wgpy.core.messages import Response


def ours(s_i: bytes, s_r: bytes, e_i: bytes, e_r: bytes, psk: bytes | None, wall: float):  # type: ignore[no-untyped-def]
    handshake = Handshake()
    initiator = noise.Initiator(s_i, public_key(s_r), psk, e_i)
    initiation = handshake.create_initiation(initiator, 0x11223344, wall, now=0.0)
    initiation_bytes = CookieGenerator(public_key(s_r)).add_macs(initiation.serialize(), 0.0)

    responder = noise.Responder(s_r, e_r)
    static, timestamp = responder.read_initiation(initiation.noise_body)
    assert static == public_key(s_i)
    body, responder_keys = responder.write_response(psk)
    response = Response(0x55667788, initiation.sender, body[:32], body[32:])
    response_bytes = CookieGenerator(public_key(s_i)).add_macs(response.serialize(), 0.0)
    initiator_keys = handshake.consume_response(response)
    return initiation_bytes, response_bytes, initiator_keys, responder_keys, timestamp


@settings(max_examples=25)
@given(keys32, keys32, keys32, keys32, keys32, st.floats(0, 4e9))
def test_messages_and_keys_match_the_whitepaper_oracle(
    s_i: bytes, s_r: bytes, e_i: bytes, e_r: bytes, psk: bytes, wall: float
) -> None:
    s_i, s_r, e_i, e_r = map(clamp, (s_i, s_r, e_i, e_r))
    initiation, response, initiator_keys, responder_keys, timestamp = ours(
        s_i, s_r, e_i, e_r, psk, wall
    )
    assert timestamp == tai64n.timestamp(wall)

    expected_initiation, state = oracle_initiation(
        s_i, public_key(s_r), e_i, psk, 0x11223344, tai64n.timestamp(wall)
    )
    assert initiation == expected_initiation

    expected_response, (responder_send, responder_receive) = oracle_response(
        s_r, e_r, psk, expected_initiation, 0x55667788
    )
    assert response == expected_response
    assert (responder_keys.send, responder_keys.receive) == (responder_send, responder_receive)

    initiator_send, initiator_receive = oracle_initiator_keys(state, expected_response, s_i, psk)
    assert (initiator_keys.send, initiator_keys.receive) == (initiator_send, initiator_receive)
    assert initiator_send == responder_receive and initiator_receive == responder_send


def test_no_preshared_key_means_thirty_two_zero_bytes() -> None:
    s_i, s_r, e_i, e_r = (clamp(bytes([n]) * 32) for n in (1, 2, 3, 4))
    expected_initiation, _ = oracle_initiation(
        s_i, public_key(s_r), e_i, bytes(32), 0x11223344, tai64n.timestamp(1e9)
    )
    expected_response, _ = oracle_response(s_r, e_r, bytes(32), expected_initiation, 0x55667788)
    _, response, *_ = ours(s_i, s_r, e_i, e_r, None, 1e9)
    assert response == expected_response
