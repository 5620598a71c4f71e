"""Malformed WireGuard datagrams, crafted with scapy (scapy.contrib.wireguard).

Anyone on the network can send these to a WireGuard port. Each kind is meant to be dropped at a
different check of the receive path (wireguard-go device/receive.go RoutineReceiveIncoming and
RoutineHandshake, the kernel's drivers/net/wireguard/receive.c prepare_skb_header):

- wrong types: a first byte other than 1-4, or a known type with nonzero reserved bytes (both
  read the type as a little-endian u32);
- truncated messages: a well-formed message of each type cut short;
- flipped: valid framing (type, reserved bytes and length right) with a few bytes flipped after
  the header, so mac1 or the AEAD tag no longer checks out;
- unknown receiver indices: responses, cookie replies and transport data for an index nobody
  handed out;
- initiations with a valid mac1 and garbage inside, which get past the cheap check and cost the
  receiver a Diffie-Hellman before they fail;
- replayed transport data, captured on the way to the receiver, as it was and with bytes flipped.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

from scapy.contrib.wireguard import (
    Wireguard,
    WireguardCookieReply,
    WireguardInitiation,
    WireguardResponse,
    WireguardTransport,
)
from scapy.packet import Raw

from benchmarks.hardening.fuzz_datagrams import flipped, random_message

LABEL_MAC1 = b"mac1----"
MAC1_OFFSET = 116  # mac1 covers the initiation up to here (whitepaper section 5.4.4)


def craft(count: int, rng: random.Random, *, responder_public_key: bytes) -> list[bytes]:
    """`count` datagrams, the first five kinds in turn."""
    kinds: list[Callable[[random.Random], bytes]] = [
        wrong_type,
        truncated,
        lambda rng: flipped(rng, bytes(random_message(rng))),
        unknown_index,
        lambda rng: initiation_with_valid_mac1(rng, responder_public_key),
    ]
    return [kinds[number % len(kinds)](rng) for number in range(count)]


def replayed(count: int, rng: random.Random, captured: Sequence[bytes]) -> list[bytes]:
    """`count` datagrams from `captured` transport data: as it was and flipped, in turn."""
    return [
        rng.choice(captured) if number % 2 else flipped(rng, rng.choice(captured))
        for number in range(count)
    ]


def wrong_type(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        header = Wireguard(message_type=rng.choice([0, *range(5, 256)]))
    else:
        header = Wireguard(message_type=rng.randint(1, 4), reserved_zero=rng.randint(1, 0xFFFFFF))
    body = rng.choice(
        [random_message(rng)[Wireguard].payload, Raw(rng.randbytes(rng.randint(0, 200)))]
    )
    return bytes(header / body)


def truncated(rng: random.Random) -> bytes:
    message = bytes(random_message(rng))
    # Transport data of any length from 32 bytes on is well framed; shorter is not.
    shortest_valid = 32 if message[0] == 4 else len(message)
    return message[: rng.randrange(shortest_valid)]


def unknown_index(rng: random.Random) -> bytes:
    return bytes(random_message(rng, (WireguardResponse, WireguardCookieReply, WireguardTransport)))


def initiation_with_valid_mac1(rng: random.Random, responder_public_key: bytes) -> bytes:
    """An initiation the responder cannot authenticate, whose mac1 is right nonetheless.

    mac1 = MAC(HASH(LABEL_MAC1 || S_pub_r), msg_alpha), whitepaper section 5.4.4: MAC is keyed
    BLAKE2s-128 and HASH is BLAKE2s-256.
    """
    message = bytes(random_message(rng, (WireguardInitiation,)))
    mac1_key = hashlib.blake2s(LABEL_MAC1 + responder_public_key).digest()
    mac1 = hashlib.blake2s(message[:MAC1_OFFSET], key=mac1_key, digest_size=16).digest()
    return message[:MAC1_OFFSET] + mac1 + bytes(16)
