"""Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s through the noiseprotocol package, for WireGuard.

This is the one module that knows noiseprotocol. WireGuard's handshake is exactly this Noise
protocol with the prologue "WireGuard v1 zx2c4 Jason@zx2c4.com"; the parts Noise does not cover
(indices, MACs, cookies, the message sizes, the payloads: a 12-byte timestamp, then nothing) live in
messages.py, cookie.py and handshake.py. Here any prologue and payload goes, so that Noise's own
test vectors replay through this adapter byte for byte (tests/unit/test_oracle_vectors.py).

Three liberties with the package, all contained here: ephemeral keys come from the caller (drawn
from the injected rng, which noiseprotocol warns about because it usually means a test); the
responder's PSK is installed after the initiation is read, because only then is the peer known;
and a connection's reference cycles are broken when its half is dropped (`_release`), so that its
objects are freed at once, not by a full cyclic collection: the daemon freezes what is alive out
of the collector's sight (wgpy/io/interface.py), and a cycle frozen so would never be freed.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from noise.backends.default.keypairs import KeyPair25519
from noise.connection import Keypair, NoiseConnection
from noise.exceptions import NoiseInvalidMessage, NoiseValueError

from wgpy.core.constants import CONSTRUCTION, IDENTIFIER, KEY_LEN
from wgpy.core.crypto import dh_pubkey
from wgpy.errors import ProtocolError

_NO_PSK = bytes(KEY_LEN)
# What a failing DH, AEAD or key parse raises inside noiseprotocol and pyca.
_NOISE_FAILURES = (InvalidTag, NoiseInvalidMessage, NoiseValueError, ValueError)


@dataclass(frozen=True, slots=True)
class TransportKeys:
    """The split's two keys, from this side's point of view."""

    send: bytes
    receive: bytes

    def __repr__(self) -> str:
        return "TransportKeys(send=(hidden), receive=(hidden))"


def _connection(static_private: bytes, initiator: bool, prologue: bytes) -> NoiseConnection:
    connection = NoiseConnection.from_name(CONSTRUCTION)
    if initiator:
        connection.set_as_initiator()
    else:
        connection.set_as_responder()
    connection.set_prologue(prologue)
    connection.set_keypair_from_private_bytes(Keypair.STATIC, static_private)
    return connection


def _start(connection: NoiseConnection, ephemeral_private: bytes) -> None:
    # Installed after start_handshake: noiseprotocol warns about ephemeral keys set before it,
    # which in its API usually means a test vector, but ours come from the injected rng.
    connection.start_handshake()
    state = connection.noise_protocol.handshake_state
    state.e = KeyPair25519.from_private_bytes(ephemeral_private)


def _release(connection: NoiseConnection) -> None:
    """Break the cycles noiseprotocol makes: a connection keeps its next step as a method bound to
    itself, and a protocol and its handshake and symmetric states refer to each other until the
    handshake is done. The connection is of no use afterwards."""
    connection._next_fn = None
    vars(connection.noise_protocol).clear()


class _Half:
    """What both halves hold: one connection, released with the half."""

    _connection: NoiseConnection

    def __del__(self) -> None:
        connection = getattr(self, "_connection", None)  # None if __init__ failed
        if connection is not None:
            _release(connection)


def _split(connection: NoiseConnection) -> TransportKeys:
    protocol = connection.noise_protocol
    return TransportKeys(
        bytes(protocol.cipher_state_encrypt.k), bytes(protocol.cipher_state_decrypt.k)
    )


class Initiator(_Half):
    """The initiator's half: write the initiation, read the response.

    `prologue` is WireGuard's unless a test replays a vector of Noise's own (which has another).
    """

    def __init__(
        self,
        static_private: bytes,
        remote_static: bytes,
        preshared_key: bytes | None,
        ephemeral_private: bytes,
        *,
        prologue: bytes = IDENTIFIER,
    ) -> None:
        self._args = (static_private, remote_static, preshared_key or _NO_PSK, ephemeral_private)
        self._prologue = prologue
        self._payload = b""
        self._connection = self._start()

    def _start(self) -> NoiseConnection:
        static_private, remote_static, psk, ephemeral_private = self._args
        connection = _connection(static_private, initiator=True, prologue=self._prologue)
        connection.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_static)
        connection.set_psks(psk)
        _start(connection, ephemeral_private)
        return connection

    def write_initiation(self, payload: bytes) -> bytes:
        """The Noise part of the initiation: ephemeral, encrypted static, encrypted payload
        (WireGuard's is the TAI64N timestamp)."""
        self._payload = payload
        try:
            return bytes(self._connection.write_message(payload))
        except _NOISE_FAILURES as error:
            raise ProtocolError("initiation could not be created") from error

    def read_response(self, body: bytes) -> tuple[bytes, TransportKeys]:
        """Consume the response's Noise part: its payload and the transport keys. On failure the
        state is as before the call, so a forged response cannot spoil the handshake a genuine
        one would complete."""
        try:
            payload = bytes(self._connection.read_message(body))
        except _NOISE_FAILURES as error:
            _release(self._connection)
            self._connection = self._start()
            self._connection.write_message(self._payload)
            raise ProtocolError("response failed to authenticate") from error
        return payload, _split(self._connection)


class Responder(_Half):
    """The responder's half: read the initiation, learn the peer, write the response."""

    def __init__(
        self, static_private: bytes, ephemeral_private: bytes, *, prologue: bytes = IDENTIFIER
    ) -> None:
        self._connection = _connection(static_private, initiator=False, prologue=prologue)
        self._connection.set_psks(_NO_PSK)
        _start(self._connection, ephemeral_private)

    def read_initiation(self, body: bytes) -> tuple[bytes, bytes]:
        """Decrypt the initiation: the initiator's static public key and the payload."""
        try:
            payload = bytes(self._connection.read_message(body))
        except _NOISE_FAILURES as error:
            raise ProtocolError("initiation failed to authenticate") from error
        remote = self._connection.noise_protocol.handshake_state.rs
        return remote.public_bytes, payload

    def write_response(
        self, preshared_key: bytes | None, payload: bytes = b""
    ) -> tuple[bytes, TransportKeys]:
        """The response's Noise part (ephemeral, encrypted payload: WireGuard's is empty) and the
        transport keys."""
        self._connection.noise_protocol.psks = [preshared_key or _NO_PSK]
        try:
            body = bytes(self._connection.write_message(payload))
        except _NOISE_FAILURES as error:
            raise ProtocolError("response could not be created") from error
        return body, _split(self._connection)


def ephemeral_public(ephemeral_private: bytes) -> bytes:
    return dh_pubkey(ephemeral_private)
