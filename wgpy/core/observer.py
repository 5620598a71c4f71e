"""What the device shows an observer: inner packets as they cross the tunnel, and each
handshake's secrets. The daemon's capture (`wgpy.capture`, `wgpy.io.capture_server`) is one
observer; an embedder may set its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol


class Direction(IntEnum):
    """The values are pcapng's epb_flags directions, so a capture writes them as they are."""

    INBOUND = 1  # decrypted from a peer, written to the TUN
    OUTBOUND = 2  # read from the TUN, encrypted to a peer


@dataclass(frozen=True, slots=True)
class HandshakeSecrets:
    """What a handshake's ephemeral key adds up to, as Wireshark's key log wants it: with these,
    a recording of the outer traffic can be decrypted (the handshake and its session)."""

    local_static_private: bytes = field(repr=False)
    remote_static_public: bytes
    local_ephemeral_private: bytes = field(repr=False)
    preshared_key: bytes | None = field(default=None, repr=False)


class Observer(Protocol):
    """Set as `Device.observer` by the I/O edge while a capture runs. Called under the device's
    lock on the data path: it must return at once, never block."""

    def inner_packet(
        self, peer: bytes, direction: Direction, packet: bytes, wall: float
    ) -> None: ...

    def handshake_secrets(self, secrets: HandshakeSecrets, wall: float) -> None: ...
