"""Garbage for a WireGuard port: generated datagrams of every kind a receiver must drop and count.

Templates are well-formed messages of the four types with random contents, built with scapy's
WireGuard layers (scapy.contrib.wireguard); the datagrams are those templates mutated with plain
byte operations, which is what makes a million of them cheap. Each kind aims at a different check
of the receive path (wireguard-go device/receive.go, the kernel's receive.c):

- random bytes of any length, and messages of a type that does not exist or with reserved bytes set;
- truncated and overlong messages of each type;
- valid framing (type and length right) with garbage bodies, so mac1 or the AEAD tag fails;
- unknown receiver indices (responses, cookie replies, transport data);
- initiations with a valid mac1 and garbage inside, which cost the receiver a Diffie-Hellman;
- transport data for the live session's receiver index with a garbage body, and, once captured,
  replays of the legitimate peer's transport data, as they were and with bytes flipped.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any

from scapy.contrib.wireguard import (
    Wireguard,
    WireguardCookieReply,
    WireguardInitiation,
    WireguardResponse,
    WireguardTransport,
)
from scapy.fields import Field, StrFixedLenField
from scapy.packet import Packet

from wgpy.core.constants import INITIATION_SIZE, RESPONSE_SIZE

TEMPLATES = 512
LABEL_MAC1 = b"mac1----"
MAC1_OFFSET = 116  # mac1 covers the initiation up to here (whitepaper section 5.4.4)
HEADER_SIZE = 4  # message type and three reserved bytes
TRANSPORT_TYPE = b"\x04\x00\x00\x00"

Kind = Callable[[random.Random], bytes]


class Corpus:
    """Makes garbage datagrams for a receiver whose static public key is `public_key`."""

    def __init__(self, rng: random.Random, public_key: bytes) -> None:
        self.rng = rng
        self.mac1_key = hashlib.blake2s(LABEL_MAC1 + public_key).digest()
        self.templates = [bytes(random_message(rng)) for _ in range(TEMPLATES)]
        self.kinds: list[Kind] = [
            self.random_bytes, self.wrong_type, self.truncated, self.overlong, self.garbage_body,
            self.garbage_body, self.unknown_index, self.unknown_index, self.initiation_with_mac1,
        ]  # fmt: skip

    def blind(self, count: int) -> list[bytes]:
        """`count` datagrams made knowing only the receiver's public key."""
        rng, kinds = self.rng, self.kinds
        return [rng.choice(kinds)(rng) for _ in range(count)]

    def informed(self, count: int, receiver_index: bytes, captured: Sequence[bytes]) -> list[bytes]:
        """`count` datagrams made from the live session: its receiver index with garbage bodies,
        and replays of `captured` transport data, as they were and flipped, in equal shares."""
        rng = self.rng
        kinds: list[Kind] = [
            lambda rng: flipped(rng, TRANSPORT_TYPE + receiver_index + rng.randbytes(24 + 16)),
            lambda rng: rng.choice(captured),
            lambda rng: flipped(rng, rng.choice(captured)),
        ]
        return [kinds[number % len(kinds)](rng) for number in range(count)]

    # -- the kinds ---------------------------------------------------------------------------

    def random_bytes(self, rng: random.Random) -> bytes:
        return rng.randbytes(rng.choice([rng.randint(0, 40), rng.randint(0, 1500)]))

    def wrong_type(self, rng: random.Random) -> bytes:
        header = bytearray(rng.choice(self.templates)[:HEADER_SIZE])
        if rng.random() < 0.5:
            header[0] = rng.choice([0, *range(5, 256)])
        else:
            header[rng.randint(1, 3)] = rng.randint(1, 255)
        return bytes(header) + rng.choice(self.templates)[HEADER_SIZE:]

    def truncated(self, rng: random.Random) -> bytes:
        message = rng.choice(self.templates)
        # Transport data from 32 bytes on is well framed; anything shorter is not.
        shortest_valid = 32 if message[:4] == TRANSPORT_TYPE else len(message)
        return message[: rng.randrange(shortest_valid)]

    def overlong(self, rng: random.Random) -> bytes:
        message = self._handshake_template(rng)
        return message + rng.randbytes(rng.randint(1, 64))

    def garbage_body(self, rng: random.Random) -> bytes:
        return flipped(rng, rng.choice(self.templates))

    def unknown_index(self, rng: random.Random) -> bytes:
        message = bytearray(rng.choice(self.templates))
        if message[0] != 1:  # every type but the initiation names a receiver
            offset = 8 if message[0] == 2 else 4
            message[offset : offset + 4] = rng.randbytes(4)
        return bytes(message)

    def initiation_with_mac1(self, rng: random.Random) -> bytes:
        """An initiation whose mac1 is right: MAC(HASH(LABEL_MAC1 || S_pub_r), msg_alpha),
        whitepaper section 5.4.4; it passes the cheap check and fails in the handshake."""
        body = b"\x01\x00\x00\x00" + rng.randbytes(MAC1_OFFSET - HEADER_SIZE)
        mac1 = hashlib.blake2s(body, key=self.mac1_key, digest_size=16).digest()
        return body + mac1 + bytes(16)

    def _handshake_template(self, rng: random.Random) -> bytes:
        while True:
            message = rng.choice(self.templates)
            if len(message) in (INITIATION_SIZE, RESPONSE_SIZE):
                return message


def flipped(rng: random.Random, message: bytes) -> bytes:
    """`message` with 1 to 4 bytes after its header changed."""
    changed = bytearray(message)
    body = range(HEADER_SIZE, len(message))
    for offset in rng.sample(body, min(rng.randint(1, 4), len(body))):
        changed[offset] ^= rng.randint(1, 255)
    return bytes(changed)


# Templates: well-formed messages with random contents (tests/scapy_garbage.py uses them too) -----


MESSAGES = (WireguardInitiation, WireguardResponse, WireguardCookieReply, WireguardTransport)


def random_message(rng: random.Random, kinds: Sequence[type[Packet]] = MESSAGES) -> Wireguard:
    """A message of one of `kinds`, each field random: mac2 zero (no cookie) half the time, a
    transport packet from a keepalive (an empty packet and its tag) up to a full 1420-byte-MTU
    packet, padded to 16."""
    kind = rng.choice(kinds)
    return Wireguard() / kind(
        **{field.name: _random_value(rng, field) for field in kind.fields_desc}
    )


def _random_value(rng: random.Random, field: Field[Any, Any]) -> int | bytes:
    if field.name == "mac2":
        return rng.choice([bytes(16), rng.randbytes(16)])
    if field.name == "encrypted_encapsulated_packet":
        return rng.randbytes(16 * rng.randint(0, 89) + 16)
    if isinstance(field, StrFixedLenField):
        return rng.randbytes(field.length_from(None))
    return rng.getrandbits(8 * field.sz)
