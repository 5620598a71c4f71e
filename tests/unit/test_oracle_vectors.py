"""The test oracle (tests/oracle.py) against itself, noiseprotocol, and its vector file."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import pytest
from cryptography.exceptions import InvalidTag
from noise.connection import Keypair, NoiseConnection
from oracle import (
    InitiatorState,
    load_cacophony_ikpsk2,
    oracle_initiation,
    oracle_initiator_keys,
    oracle_response,
)

from wgpy.core import noise
from wgpy.core.constants import CONSTRUCTION, IDENTIFIER
from wgpy.core.crypto import aead_encrypt, dh_pubkey
from wgpy.core.keys import generate_private_key

# noiseprotocol warns whenever a test sets an ephemeral key instead of letting it be generated.
pytestmark = pytest.mark.filterwarnings("ignore:One of ephemeral keypairs:UserWarning")

INITIATOR_INDEX = 0x11223344
RESPONDER_INDEX = 0xA1B2C3D4
TIMESTAMP = bytes.fromhex("400000006553f1000a3b7c20")  # a TAI64N label: seconds, nanoseconds


@dataclass(frozen=True)
class Peers:
    """Keys for one handshake, drawn from a seeded generator so every run sees the same bytes."""

    initiator_static: bytes
    initiator_ephemeral: bytes
    responder_static: bytes
    responder_ephemeral: bytes
    psk: bytes

    @classmethod
    def from_seed(cls, seed: int) -> Peers:
        rng = random.Random(seed).randbytes
        return cls(
            initiator_static=generate_private_key(rng),
            initiator_ephemeral=generate_private_key(rng),
            responder_static=generate_private_key(rng),
            responder_ephemeral=generate_private_key(rng),
            psk=rng(32),
        )


@dataclass(frozen=True)
class Handshake:
    initiation: bytes
    response: bytes
    initiator_state: InitiatorState
    initiator_keys: tuple[bytes, bytes]
    responder_keys: tuple[bytes, bytes]


def run_handshake(peers: Peers) -> Handshake:
    initiation, state = oracle_initiation(
        peers.initiator_static,
        dh_pubkey(peers.responder_static),
        peers.initiator_ephemeral,
        peers.psk,
        INITIATOR_INDEX,
        TIMESTAMP,
    )
    response, responder_keys = oracle_response(
        peers.responder_static, peers.responder_ephemeral, peers.psk, initiation, RESPONDER_INDEX
    )
    initiator_keys = oracle_initiator_keys(state, response, peers.initiator_static, peers.psk)
    return Handshake(initiation, response, state, initiator_keys, responder_keys)


@pytest.fixture(params=range(4), ids=lambda seed: f"seed{seed}")
def peers(request: pytest.FixtureRequest) -> Peers:
    return Peers.from_seed(request.param)


def test_each_side_sends_with_the_key_the_other_receives_with(peers: Peers) -> None:
    handshake = run_handshake(peers)
    initiator_send, initiator_recv = handshake.initiator_keys
    responder_send, responder_recv = handshake.responder_keys
    assert initiator_send == responder_recv
    assert initiator_recv == responder_send
    assert initiator_send != initiator_recv


def test_initiation_layout(peers: Peers) -> None:
    initiation = run_handshake(peers).initiation
    assert len(initiation) == 148
    assert initiation[0] == 1
    assert initiation[1:4] == bytes(3)
    assert struct.unpack_from("<I", initiation, 4) == (INITIATOR_INDEX,)
    assert initiation[8:40] == dh_pubkey(peers.initiator_ephemeral)
    assert initiation[116:132] != bytes(16)  # mac1
    assert initiation[132:148] == bytes(16)  # mac2: no cookie


def test_response_layout(peers: Peers) -> None:
    response = run_handshake(peers).response
    assert len(response) == 92
    assert response[0] == 2
    assert response[1:4] == bytes(3)
    assert struct.unpack_from("<II", response, 4) == (RESPONDER_INDEX, INITIATOR_INDEX)
    assert response[12:44] == dh_pubkey(peers.responder_ephemeral)
    assert response[60:76] != bytes(16)  # mac1
    assert response[76:92] == bytes(16)  # mac2: no cookie


def test_a_mismatched_psk_fails_the_initiator_at_the_empty_aead() -> None:
    peers = Peers.from_seed(0)
    handshake = run_handshake(peers)
    with pytest.raises(InvalidTag):
        oracle_initiator_keys(
            handshake.initiator_state, handshake.response, peers.initiator_static, bytes(32)
        )


def test_an_initiation_meant_for_another_responder_fails_mac1() -> None:
    peers = Peers.from_seed(0)
    initiation = run_handshake(peers).initiation
    stranger = Peers.from_seed(1).responder_static
    with pytest.raises(ValueError, match="mac1"):
        oracle_response(stranger, peers.responder_ephemeral, peers.psk, initiation, RESPONDER_INDEX)


@pytest.mark.parametrize("offset", [4, 20, 60, 100])
def test_a_modified_initiation_fails_mac1(offset: int) -> None:
    peers = Peers.from_seed(0)
    initiation = bytearray(run_handshake(peers).initiation)
    initiation[offset] ^= 0x01
    with pytest.raises(ValueError, match="mac1"):
        oracle_response(
            peers.responder_static, peers.responder_ephemeral, peers.psk, bytes(initiation), 1
        )


def test_a_response_to_another_initiation_is_refused() -> None:
    peers = Peers.from_seed(0)
    handshake = run_handshake(peers)
    other_state = InitiatorState(
        handshake.initiator_state.chaining_key,
        handshake.initiator_state.hash,
        handshake.initiator_state.ephemeral_private,
        sender_index=INITIATOR_INDEX + 1,
    )
    with pytest.raises(ValueError, match="not a response"):
        oracle_initiator_keys(other_state, handshake.response, peers.initiator_static, peers.psk)


def noise_pair(
    prologue: bytes,
    psk: bytes,
    initiator_keys: tuple[bytes, bytes, bytes],
    responder_keys: tuple[bytes, bytes],
) -> tuple[NoiseConnection, NoiseConnection]:
    """noiseprotocol's Noise_IKpsk2 initiator and responder, keys fixed, handshake started.

    initiator_keys: (static private, ephemeral private, responder's static public);
    responder_keys: (static private, ephemeral private).
    """
    initiator = NoiseConnection.from_name(CONSTRUCTION)
    responder = NoiseConnection.from_name(CONSTRUCTION)
    initiator.set_as_initiator()
    responder.set_as_responder()
    static, ephemeral, remote_static = initiator_keys
    initiator.set_keypair_from_private_bytes(Keypair.STATIC, static)
    initiator.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
    initiator.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_static)
    static, ephemeral = responder_keys
    responder.set_keypair_from_private_bytes(Keypair.STATIC, static)
    responder.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
    for connection in (initiator, responder):
        connection.set_psks(psk=psk)
        connection.set_prologue(prologue)
        connection.start_handshake()
    return initiator, responder


def test_the_oracle_is_noise_ikpsk2_with_the_wireguard_identifier_as_prologue(
    peers: Peers,
) -> None:
    # WireGuard's handshake is Noise_IKpsk2 with prologue IDENTIFIER, the timestamp as the first
    # payload and an empty second payload; mac1, mac2 and the header are WireGuard's framing.
    handshake = run_handshake(peers)
    initiator, responder = noise_pair(
        IDENTIFIER,
        peers.psk,
        (peers.initiator_static, peers.initiator_ephemeral, dh_pubkey(peers.responder_static)),
        (peers.responder_static, peers.responder_ephemeral),
    )
    first = initiator.write_message(TIMESTAMP)
    assert first == handshake.initiation[8:116]
    assert responder.read_message(first) == TIMESTAMP
    second = responder.write_message(b"")
    assert second == handshake.response[12:60]
    initiator.read_message(second)
    assert handshake.initiator_keys == (
        initiator.noise_protocol.cipher_state_encrypt.k,
        initiator.noise_protocol.cipher_state_decrypt.k,
    )


def test_the_cacophony_vector_file_names_consistent_keys() -> None:
    vector = load_cacophony_ikpsk2()
    assert vector["protocol_name"] == CONSTRUCTION
    assert vector["init_remote_static"] == dh_pubkey(vector["resp_static"])
    assert vector["init_psks"] == vector["resp_psks"]
    assert len(vector["messages"]) == 6


def test_the_cacophony_vector_file_replays_through_noiseprotocol() -> None:
    # Guards the copy in tests/vectors against transcription errors.
    vector = load_cacophony_ikpsk2()
    initiator, responder = noise_pair(
        vector["init_prologue"],
        vector["init_psks"][0],
        (vector["init_static"], vector["init_ephemeral"], vector["init_remote_static"]),
        (vector["resp_static"], vector["resp_ephemeral"]),
    )
    first, second = vector["messages"][:2]
    assert initiator.write_message(first["payload"]) == first["ciphertext"]
    assert responder.read_message(first["ciphertext"]) == first["payload"]
    assert responder.write_message(second["payload"]) == second["ciphertext"]
    assert initiator.read_message(second["ciphertext"]) == second["payload"]
    assert initiator.noise_protocol.handshake_hash == vector["handshake_hash"]
    for number, message in enumerate(vector["messages"][2:]):
        sender = initiator if number % 2 == 0 else responder
        assert sender.encrypt(message["payload"]) == message["ciphertext"]


def test_the_cacophony_vector_replays_through_wgpys_noise_adapter_byte_for_byte() -> None:
    # Both handshake messages through wgpy's own Initiator and Responder, under the vector's
    # prologue and payloads, then its four transport messages sealed with the split's keys by
    # wgpy's AEAD: Noise's CipherState nonce is WireGuard's, four zero bytes and a 64-bit
    # little-endian counter per direction.
    vector = load_cacophony_ikpsk2()
    initiator = noise.Initiator(
        vector["init_static"],
        vector["init_remote_static"],
        vector["init_psks"][0],
        vector["init_ephemeral"],
        prologue=vector["init_prologue"],
    )
    responder = noise.Responder(
        vector["resp_static"], vector["resp_ephemeral"], prologue=vector["resp_prologue"]
    )
    first, second, *transport = vector["messages"]

    assert initiator.write_initiation(first["payload"]) == first["ciphertext"]
    assert responder.read_initiation(first["ciphertext"]) == (
        dh_pubkey(vector["init_static"]),
        first["payload"],
    )
    response, responder_keys = responder.write_response(vector["resp_psks"][0], second["payload"])
    assert response == second["ciphertext"]
    payload, initiator_keys = initiator.read_response(second["ciphertext"])
    assert payload == second["payload"]

    counters = {"initiator": 0, "responder": 0}
    for number, message in enumerate(transport):
        sender, keys = (
            ("initiator", initiator_keys) if number % 2 == 0 else ("responder", responder_keys)
        )
        sealed = aead_encrypt(keys.send, counters[sender], message["payload"], b"")
        assert sealed == message["ciphertext"]
        counters[sender] += 1
