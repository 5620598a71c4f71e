"""Transport-data messages (whitepaper section 5.4.6): the padding of the inner packet, and the
message sealed under the keypair's send counter and opened by the peer's keypair."""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given
from hypothesis import strategies as st

from wgpy.core.constants import AEAD_TAG_SIZE, REJECT_AFTER_MESSAGES, TRANSPORT_HEADER_SIZE
from wgpy.core.keypair import Keypair
from wgpy.core.noise import TransportKeys
from wgpy.core.transport import decrypt_packet, encrypt_packet, encrypt_packets, pad

MTU = 1420  # wg-quick's default, and not a multiple of 16
KEY_A_TO_B, KEY_B_TO_A = b"\x0a" * 32, b"\x0b" * 32
INDEX_A, INDEX_B = 0x11111111, 0x22222222


def sessions() -> tuple[Keypair, Keypair]:
    """The two ends of one session: what a sends, b receives, and the other way round."""
    a = Keypair.from_keys(TransportKeys(KEY_A_TO_B, KEY_B_TO_A), INDEX_A, INDEX_B, True, 0.0)
    b = Keypair.from_keys(TransportKeys(KEY_B_TO_A, KEY_A_TO_B), INDEX_B, INDEX_A, False, 0.0)
    return a, b


def opened(keypair: Keypair, message: bytes) -> bytes | None:
    counter = struct.unpack_from("<Q", message, 8)[0]
    return decrypt_packet(keypair, counter, message[TRANSPORT_HEADER_SIZE:])


# -- padding ---------------------------------------------------------------------------------------


def test_a_keepalive_stays_empty() -> None:
    assert pad(b"", MTU) == b""


def test_a_packet_is_padded_with_zeros_to_the_next_multiple_of_16() -> None:
    packet = b"\xff" * 33
    assert pad(packet, MTU) == packet + bytes(15)


def test_a_packet_of_a_multiple_of_16_is_not_padded() -> None:
    for length in (16, 64, 1408):
        assert pad(bytes(length), MTU) == bytes(length)


def test_the_padding_stops_at_the_mtu_where_the_next_multiple_of_16_is_beyond_it() -> None:
    # 1408 is the last multiple of 16 below 1420: anything longer can only be padded to 1420.
    for length in range(1409, MTU + 1):
        assert len(pad(bytes(length), MTU)) == MTU


@given(mtu=st.integers(1, 9000), data=st.data())
def test_the_padded_length_is_the_next_multiple_of_16_or_the_mtu_if_that_is_less(
    mtu: int, data: st.DataObject
) -> None:
    length = data.draw(st.integers(0, mtu))
    padded = pad(b"\x01" * length, mtu)
    assert len(padded) == min(-(-length // 16) * 16, mtu)
    assert padded[length:] == bytes(len(padded) - length)


# -- sealing and opening ---------------------------------------------------------------------------


def test_a_message_is_the_header_then_the_padded_packet_sealed_with_its_tag() -> None:
    a, _ = sessions()
    a.send_counter = 7
    message = encrypt_packet(a, b"ping", MTU)
    assert message[:4] == b"\x04\x00\x00\x00"  # type 4, three reserved zero bytes
    assert message[4:8] == INDEX_B.to_bytes(4, "little")  # the receiver's index
    assert message[8:16] == (7).to_bytes(8, "little")  # the counter
    assert len(message) == TRANSPORT_HEADER_SIZE + 16 + AEAD_TAG_SIZE


def test_the_nonce_is_32_zero_bits_then_the_counter_little_endian() -> None:
    a, _ = sessions()
    a.send_counter = 0x0102030405060708
    message = encrypt_packet(a, b"ping", MTU)
    nonce = bytes(4) + (0x0102030405060708).to_bytes(8, "little")
    plaintext = ChaCha20Poly1305(KEY_A_TO_B).decrypt(nonce, message[TRANSPORT_HEADER_SIZE:], None)
    assert plaintext == pad(b"ping", MTU)


def test_the_peer_opens_the_padded_packet() -> None:
    a, b = sessions()
    assert opened(b, encrypt_packet(a, b"ping", MTU)) == b"ping" + bytes(12)
    assert opened(b, encrypt_packet(a, b"", MTU)) == b""  # a keepalive


def test_a_batch_takes_consecutive_counters_from_the_send_counter() -> None:
    a, b = sessions()
    a.send_counter = 41
    messages = encrypt_packets(a, [b"one", b"", b"three"], MTU)
    assert [struct.unpack_from("<Q", m, 8)[0] for m in messages] == [41, 42, 43]
    assert a.send_counter == 44
    assert [opened(b, m) for m in messages] == [pad(p, MTU) for p in (b"one", b"", b"three")]


def test_one_packet_is_sealed_as_a_batch_of_one_at_the_same_counter() -> None:
    single, batched = sessions()[0], sessions()[0]
    assert [encrypt_packet(single, b"x" * n, MTU) for n in range(40)] == encrypt_packets(
        batched, [b"x" * n for n in range(40)], MTU
    )


def test_a_message_altered_in_flight_does_not_open() -> None:
    a, b = sessions()
    message = bytearray(encrypt_packet(a, b"ping", MTU))
    message[-1] ^= 1
    assert opened(b, bytes(message)) is None


def test_a_message_opens_only_under_the_key_it_was_sealed_for() -> None:
    a, _ = sessions()
    assert opened(a, encrypt_packet(a, b"ping", MTU)) is None


def test_a_counter_at_reject_after_messages_is_refused_without_opening() -> None:
    a, b = sessions()
    a.send_counter = REJECT_AFTER_MESSAGES
    assert opened(b, encrypt_packet(a, b"ping", MTU)) is None
    a.send_counter = REJECT_AFTER_MESSAGES - 1
    assert opened(b, encrypt_packet(a, b"ping", MTU)) == pad(b"ping", MTU)
