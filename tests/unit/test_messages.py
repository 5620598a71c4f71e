"""Every wire message round-trips, and any other length or type word is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgpy.core.messages import CookieReply, Initiation, Response, TransportHeader, message_type
from wgpy.errors import ProtocolError

u32 = st.integers(0, 2**32 - 1)


def blob(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


initiations = st.builds(Initiation, u32, blob(32), blob(48), blob(28), blob(16), blob(16))
responses = st.builds(Response, u32, u32, blob(32), blob(16), blob(16), blob(16))
cookie_replies = st.builds(CookieReply, u32, blob(24), blob(32))
MESSAGES = [
    (Initiation, initiations, 148),
    (Response, responses, 92),
    (CookieReply, cookie_replies, 64),
]


@pytest.mark.parametrize(("kind", "strategy", "size"), MESSAGES)
@given(data=st.data())
def test_handshake_messages_round_trip_at_their_exact_size(kind, strategy, size, data) -> None:  # type: ignore[no-untyped-def]
    message = data.draw(strategy)
    wire = message.serialize()
    assert len(wire) == size
    assert kind.parse(wire) == message


@pytest.mark.parametrize(("kind", "strategy", "size"), MESSAGES)
@given(data=st.data())
def test_any_other_length_is_refused(kind, strategy, size, data) -> None:  # type: ignore[no-untyped-def]
    wire = data.draw(strategy).serialize()
    cut = data.draw(st.integers(0, size - 1))
    extra = data.draw(st.binary(min_size=1, max_size=64))
    for wrong in (wire[:cut], wire + extra):
        with pytest.raises(ProtocolError):
            kind.parse(wrong)


@given(u32, st.integers(0, 2**64 - 1), st.binary(min_size=16, max_size=100))
def test_transport_header_round_trips(receiver: int, counter: int, payload: bytes) -> None:
    wire = TransportHeader(receiver, counter).serialize() + payload
    assert TransportHeader.parse(wire) == TransportHeader(receiver, counter)


def test_transport_needs_room_for_the_tag() -> None:
    with pytest.raises(ProtocolError):
        TransportHeader.parse(TransportHeader(1, 2).serialize() + bytes(15))


@pytest.mark.parametrize(
    ("first_word", "expected"),
    [(b"\x01\x00\x00\x00", 1), (b"\x04\x00\x00\x00", 4), (b"\x00\x00\x00\x00", None),
     (b"\x05\x00\x00\x00", None), (b"\x01\x00\x00\x01", None), (b"\x01", None)],
)  # fmt: skip
def test_the_type_word_includes_three_reserved_zero_bytes(
    first_word: bytes, expected: int | None
) -> None:
    assert message_type(first_word + bytes(60)[: 60 if len(first_word) == 4 else 0]) == expected


def test_a_message_of_another_type_is_refused() -> None:
    wire = bytearray(Initiation(1, bytes(32), bytes(48), bytes(28)).serialize())
    wire[0] = 2
    with pytest.raises(ProtocolError):
        Initiation.parse(bytes(wire))
