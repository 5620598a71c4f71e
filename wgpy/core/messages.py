"""The four WireGuard messages (whitepaper section 5.4): exact-length parse and serialize.

A message starts with a little-endian 32-bit word: the type in the low byte and three reserved zero
bytes, so a non-zero reserved byte makes the type unknown, as in wireguard-go.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from wgpy.core.constants import (
    COOKIE_REPLY_SIZE,
    INITIATION_SIZE,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    RESPONSE_SIZE,
    TRANSPORT_HEADER_SIZE,
    TRANSPORT_MIN_SIZE,
)
from wgpy.errors import ProtocolError

_INITIATION = struct.Struct("<II32s48s28s16s16s")
_RESPONSE = struct.Struct("<III32s16s16s16s")
_COOKIE_REPLY = struct.Struct("<II24s32s")
TRANSPORT_HEADER = struct.Struct("<IIQ")

# Where the MACs sit: mac1 covers everything before it, mac2 everything before mac2.
INITIATION_MAC1_OFFSET = INITIATION_SIZE - 32
RESPONSE_MAC1_OFFSET = RESPONSE_SIZE - 32


def message_type(data: bytes | memoryview) -> int | None:
    """The message type, or None when the first word is not a known type."""
    if len(data) < 4:
        return None
    word = int.from_bytes(data[:4], "little")
    return word if MESSAGE_INITIATION <= word <= MESSAGE_TRANSPORT else None


def _expect(data: bytes, size: int, kind: int) -> None:
    if len(data) != size:
        raise ProtocolError(f"message type {kind} must be {size} bytes, got {len(data)}")
    if message_type(data) != kind:
        raise ProtocolError(f"not a message of type {kind}")


@dataclass(frozen=True, slots=True)
class Initiation:
    sender: int
    ephemeral: bytes
    encrypted_static: bytes
    encrypted_timestamp: bytes
    mac1: bytes = bytes(16)
    mac2: bytes = bytes(16)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        _expect(data, INITIATION_SIZE, MESSAGE_INITIATION)
        _, *fields = _INITIATION.unpack(data)
        return cls(*fields)

    def serialize(self) -> bytes:
        return _INITIATION.pack(
            MESSAGE_INITIATION,
            self.sender,
            self.ephemeral,
            self.encrypted_static,
            self.encrypted_timestamp,
            self.mac1,
            self.mac2,
        )

    @property
    def noise_body(self) -> bytes:
        """The Noise message: ephemeral, encrypted static, encrypted timestamp."""
        return self.ephemeral + self.encrypted_static + self.encrypted_timestamp


@dataclass(frozen=True, slots=True)
class Response:
    sender: int
    receiver: int
    ephemeral: bytes
    encrypted_nothing: bytes
    mac1: bytes = bytes(16)
    mac2: bytes = bytes(16)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        _expect(data, RESPONSE_SIZE, MESSAGE_RESPONSE)
        _, *fields = _RESPONSE.unpack(data)
        return cls(*fields)

    def serialize(self) -> bytes:
        return _RESPONSE.pack(
            MESSAGE_RESPONSE,
            self.sender,
            self.receiver,
            self.ephemeral,
            self.encrypted_nothing,
            self.mac1,
            self.mac2,
        )

    @property
    def noise_body(self) -> bytes:
        return self.ephemeral + self.encrypted_nothing


@dataclass(frozen=True, slots=True)
class CookieReply:
    receiver: int
    nonce: bytes
    encrypted_cookie: bytes

    @classmethod
    def parse(cls, data: bytes) -> Self:
        _expect(data, COOKIE_REPLY_SIZE, MESSAGE_COOKIE_REPLY)
        _, *fields = _COOKIE_REPLY.unpack(data)
        return cls(*fields)

    def serialize(self) -> bytes:
        return _COOKIE_REPLY.pack(
            MESSAGE_COOKIE_REPLY, self.receiver, self.nonce, self.encrypted_cookie
        )


@dataclass(frozen=True, slots=True)
class TransportHeader:
    """The 16-byte header of a transport-data message; the encrypted packet follows it."""

    receiver: int
    counter: int

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Self:
        if len(data) < TRANSPORT_MIN_SIZE:
            raise ProtocolError(f"transport message shorter than {TRANSPORT_MIN_SIZE} bytes")
        kind, receiver, counter = TRANSPORT_HEADER.unpack_from(data)
        if kind != MESSAGE_TRANSPORT:
            raise ProtocolError("not a transport message")
        return cls(receiver, counter)

    def serialize(self) -> bytes:
        return TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, self.receiver, self.counter)


assert TRANSPORT_HEADER.size == TRANSPORT_HEADER_SIZE
