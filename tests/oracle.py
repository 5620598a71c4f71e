"""A second WireGuard handshake, written line by line from the whitepaper: a test oracle only.

It follows the WireGuard whitepaper (J. A. Donenfeld, "WireGuard: Next Generation Kernel Network
Tunnel"), section 5.4: 5.4.2 (initiation), 5.4.3 (response), 5.4.4 (mac1; mac2 stays zero here:
no cookie) and 5.4.5 (transport keys). Each step carries the whitepaper's formula as a comment.
It uses only wgpy.core.crypto's primitives and none of wgpy's handshake code, so the two can be
compared byte for byte. It checks what it must to derive keys (mac1, AEADs, indices) and nothing
else: no replay or flood protection, no timers.

It also loads the cacophony vector for Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s (tests/vectors).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from wgpy.core.constants import CONSTRUCTION, IDENTIFIER, LABEL_MAC1
from wgpy.core.crypto import aead_decrypt, aead_encrypt, dh, dh_pubkey, hash_, kdf1, kdf2, kdf3, mac

# Message layouts (whitepaper 5.4.2, 5.4.3): type, 3 reserved zero bytes, little-endian indices.
INITIATION_HEADER = struct.Struct("<B3xI")  # type, sender
RESPONSE_HEADER = struct.Struct("<B3xII")  # type, sender, receiver
INITIATION_TYPE = 1
RESPONSE_TYPE = 2
INITIATION_EPHEMERAL = slice(8, 40)
INITIATION_STATIC = slice(40, 88)  # 32 bytes of key + 16 of tag
INITIATION_TIMESTAMP = slice(88, 116)  # 12 bytes of TAI64N + 16 of tag
INITIATION_MAC1_OFFSET = 116
RESPONSE_EPHEMERAL = slice(12, 44)
RESPONSE_EMPTY = slice(44, 60)  # the tag of an empty plaintext
RESPONSE_MAC1_OFFSET = 60
MAC_SIZE = 16


@dataclass(frozen=True)
class InitiatorState:
    """What the initiator keeps between sending its initiation and receiving the response."""

    chaining_key: bytes  # C_i
    hash: bytes  # H_i
    ephemeral_private: bytes  # E_i^priv
    sender_index: int  # I_i


class _Initiation(NamedTuple):
    """What the responder learns from an initiation (whitepaper 5.4.2, read from the other side)."""

    chaining_key: bytes
    hash: bytes
    sender_index: int
    ephemeral_public: bytes
    static_public: bytes
    timestamp: bytes


def oracle_initiation(
    s_priv_i: bytes,
    s_pub_r: bytes,
    e_priv_i: bytes,
    psk: bytes,
    sender_index: int,
    timestamp12: bytes,
) -> tuple[bytes, InitiatorState]:
    """The 148-byte handshake initiation and the initiator's state after sending it.

    `psk` is unused: IKpsk2 mixes the preshared key in only at the response (whitepaper 5.4.3).
    """
    c, h = _initial_chaining_key_and_hash(s_pub_r)
    e_pub_i = dh_pubkey(e_priv_i)
    c = kdf1(c, e_pub_i)  # C_i := KDF1(C_i, E_i^pub)
    h = hash_(h + e_pub_i)  # H_i := HASH(H_i || msg.ephemeral)
    c, key = kdf2(c, dh(e_priv_i, s_pub_r))  # (C_i, k) := KDF2(C_i, DH(E_i^priv, S_r^pub))
    static = aead_encrypt(key, 0, dh_pubkey(s_priv_i), h)  # msg.static := AEAD(k, 0, S_i^pub, H_i)
    h = hash_(h + static)  # H_i := HASH(H_i || msg.static)
    c, key = kdf2(c, dh(s_priv_i, s_pub_r))  # (C_i, k) := KDF2(C_i, DH(S_i^priv, S_r^pub))
    timestamp = aead_encrypt(key, 0, timestamp12, h)  # msg.timestamp := AEAD(k, 0, TAI64N, H_i)
    h = hash_(h + timestamp)  # H_i := HASH(H_i || msg.timestamp)

    body = INITIATION_HEADER.pack(INITIATION_TYPE, sender_index) + e_pub_i + static + timestamp
    message = _with_macs(body, receiver_static_public=s_pub_r)
    return message, InitiatorState(c, h, e_priv_i, sender_index)


def oracle_response(
    s_priv_r: bytes,
    e_priv_r: bytes,
    psk: bytes,
    initiation_148: bytes,
    sender_index: int,
) -> tuple[bytes, tuple[bytes, bytes]]:
    """The 92-byte handshake response and the responder's (send, receive) transport keys.

    Raises ValueError for a malformed initiation or a wrong mac1, InvalidTag for a failed AEAD.
    """
    initiation = _consume_initiation(s_priv_r, initiation_148)
    c, h = initiation.chaining_key, initiation.hash
    e_pub_i, s_pub_i = initiation.ephemeral_public, initiation.static_public
    e_pub_r = dh_pubkey(e_priv_r)
    c = kdf1(c, e_pub_r)  # C_r := KDF1(C_r, E_r^pub)
    h = hash_(h + e_pub_r)  # H_r := HASH(H_r || msg.ephemeral)
    c = kdf1(c, dh(e_priv_r, e_pub_i))  # C_r := KDF1(C_r, DH(E_r^priv, E_i^pub))
    c = kdf1(c, dh(e_priv_r, s_pub_i))  # C_r := KDF1(C_r, DH(E_r^priv, S_i^pub))
    c, tau, key = kdf3(c, psk)  # (C_r, tau, k) := KDF3(C_r, Q)
    h = hash_(h + tau)  # H_r := HASH(H_r || tau)
    empty = aead_encrypt(key, 0, b"", h)  # msg.empty := AEAD(k, 0, e, H_r)

    header = RESPONSE_HEADER.pack(RESPONSE_TYPE, sender_index, initiation.sender_index)
    message = _with_macs(header + e_pub_r + empty, receiver_static_public=s_pub_i)
    responder_recv, responder_send = _transport_keys(c)
    return message, (responder_send, responder_recv)


def oracle_initiator_keys(
    state: InitiatorState, response_92: bytes, s_priv_i: bytes, psk: bytes
) -> tuple[bytes, bytes]:
    """The initiator's (send, receive) transport keys, from the response to its initiation.

    Raises ValueError for a malformed response or a wrong mac1, InvalidTag for a failed AEAD.
    """
    _check_mac1(response_92, RESPONSE_MAC1_OFFSET, receiver_static_public=dh_pubkey(s_priv_i))
    message_type, _sender, receiver = RESPONSE_HEADER.unpack_from(response_92)
    if message_type != RESPONSE_TYPE or receiver != state.sender_index:
        raise ValueError("not a response to this initiation")

    e_pub_r = response_92[RESPONSE_EPHEMERAL]
    c = kdf1(state.chaining_key, e_pub_r)  # C_r := KDF1(C_r, E_r^pub)
    h = hash_(state.hash + e_pub_r)  # H_r := HASH(H_r || msg.ephemeral)
    c = kdf1(c, dh(state.ephemeral_private, e_pub_r))  # C_r := KDF1(C_r, DH(E_i^priv, E_r^pub))
    c = kdf1(c, dh(s_priv_i, e_pub_r))  # C_r := KDF1(C_r, DH(S_i^priv, E_r^pub))
    c, tau, key = kdf3(c, psk)  # (C_r, tau, k) := KDF3(C_r, Q)
    h = hash_(h + tau)  # H_r := HASH(H_r || tau)
    aead_decrypt(key, 0, response_92[RESPONSE_EMPTY], h)  # e = AEAD^-1(k, 0, msg.empty, H_r)
    return _transport_keys(c)


def _initial_chaining_key_and_hash(s_pub_r: bytes) -> tuple[bytes, bytes]:
    c = hash_(CONSTRUCTION)  # C_i := HASH(CONSTRUCTION)
    h = hash_(c + IDENTIFIER)  # H_i := HASH(C_i || IDENTIFIER)
    return c, hash_(h + s_pub_r)  # H_i := HASH(H_i || S_r^pub)


def _consume_initiation(s_priv_r: bytes, initiation_148: bytes) -> _Initiation:
    """The responder's side of 5.4.2: the same chain, with DH from its end and AEADs opened."""
    s_pub_r = dh_pubkey(s_priv_r)
    _check_mac1(initiation_148, INITIATION_MAC1_OFFSET, receiver_static_public=s_pub_r)
    message_type, sender_index = INITIATION_HEADER.unpack_from(initiation_148)
    if message_type != INITIATION_TYPE:
        raise ValueError("not a handshake initiation")

    c, h = _initial_chaining_key_and_hash(s_pub_r)
    e_pub_i = initiation_148[INITIATION_EPHEMERAL]
    c = kdf1(c, e_pub_i)
    h = hash_(h + e_pub_i)
    c, key = kdf2(c, dh(s_priv_r, e_pub_i))
    static = initiation_148[INITIATION_STATIC]
    s_pub_i = aead_decrypt(key, 0, static, h)
    h = hash_(h + static)
    c, key = kdf2(c, dh(s_priv_r, s_pub_i))
    sealed_timestamp = initiation_148[INITIATION_TIMESTAMP]
    timestamp = aead_decrypt(key, 0, sealed_timestamp, h)
    h = hash_(h + sealed_timestamp)
    return _Initiation(c, h, sender_index, e_pub_i, s_pub_i, timestamp)


def _transport_keys(c: bytes) -> tuple[bytes, bytes]:
    """(T_i^send = T_r^recv, T_i^recv = T_r^send) := KDF2(C_i = C_r, e), whitepaper 5.4.5."""
    return kdf2(c, b"")


def _mac1(receiver_static_public: bytes, message_alpha: bytes) -> bytes:
    """msg.mac1 := MAC(HASH(LABEL_MAC1 || S_m'^pub), msg_alpha), whitepaper 5.4.4.

    S_m'^pub is the static public key of the message's receiver: the responder's for an
    initiation, the initiator's for a response.
    """
    return mac(hash_(LABEL_MAC1 + receiver_static_public), message_alpha)


def _with_macs(body: bytes, *, receiver_static_public: bytes) -> bytes:
    """The body, its mac1, and a zero mac2 (no cookie is held)."""
    return body + _mac1(receiver_static_public, body) + bytes(MAC_SIZE)


def _check_mac1(message: bytes, mac1_offset: int, *, receiver_static_public: bytes) -> None:
    if len(message) != mac1_offset + 2 * MAC_SIZE:
        raise ValueError(f"message is {len(message)} bytes, not {mac1_offset + 2 * MAC_SIZE}")
    expected = _mac1(receiver_static_public, message[:mac1_offset])
    if message[mac1_offset : mac1_offset + MAC_SIZE] != expected:
        raise ValueError("mac1 does not match")


# The cacophony vector, copied from plizonczyk/noiseprotocol (see the file's "source" field).
CACOPHONY_IKPSK2_PATH = Path(__file__).parent / "vectors" / "cacophony_IKpsk2.json"
_HEX_FIELDS = (
    "init_prologue",
    "init_static",
    "init_ephemeral",
    "init_remote_static",
    "resp_prologue",
    "resp_static",
    "resp_ephemeral",
    "handshake_hash",
)


def load_cacophony_ikpsk2() -> dict[str, Any]:
    """The Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s vector, decoded as noiseprotocol's tests do.

    Hex fields become bytes, "init_psks"/"resp_psks" lists of bytes, "messages" a list of
    {"payload": bytes, "ciphertext": bytes}, and "protocol_name" bytes (what
    NoiseConnection.from_name takes). "source" is passed through as written.
    """
    raw = json.loads(CACOPHONY_IKPSK2_PATH.read_text(encoding="utf-8"))
    vector: dict[str, Any] = dict(raw)
    vector["protocol_name"] = raw["protocol_name"].encode("ascii")
    for field in _HEX_FIELDS:
        vector[field] = bytes.fromhex(raw[field])
    for field in ("init_psks", "resp_psks"):
        vector[field] = [bytes.fromhex(psk) for psk in raw[field]]
    vector["messages"] = [
        {name: bytes.fromhex(value) for name, value in message.items()}
        for message in raw["messages"]
    ]
    return vector
