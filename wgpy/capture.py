"""Capture: the records the daemon streams to `wgpy capture` after a `capture=1` request
(wgpy.uapi), what it makes of the device's observer calls (wgpy.core.observer). Pure: no sockets,
no clocks.

A record is a fixed header and a body:

    kind (u8) | direction (u8) | reserved (u16) | body length (u32) | wall time, microseconds (u64)

    PACKET   body: the peer's public key (32 bytes), then the inner packet; direction 1 inbound,
             2 outbound (pcapng's epb_flags values)
    SECRETS  body: local static private key, remote static public key, local ephemeral private
             key, preshared key (all zeros: none), 32 bytes each; sent only when asked for
    DROPPED  body: u64, how many records the daemon has dropped so far because the client read
             too slowly

All little-endian. Unknown kinds are an error, so a reader never silently misses secrets.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from wgpy.core.constants import KEY_LEN
from wgpy.core.keys import to_base64
from wgpy.core.observer import Direction, HandshakeSecrets
from wgpy.errors import UapiError

RECORD_HEADER: Final = struct.Struct("<BBHIQ")
MAX_BODY: Final = KEY_LEN + 65535  # a key and the largest IP packet
_SECRETS: Final = struct.Struct(f"<{KEY_LEN}s{KEY_LEN}s{KEY_LEN}s{KEY_LEN}s")
_DROPPED: Final = struct.Struct("<Q")
_NO_PSK: Final = bytes(KEY_LEN)


class Kind(IntEnum):
    PACKET = 1
    SECRETS = 2
    DROPPED = 3


# Records ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PacketRecord:
    wall: float
    peer: bytes
    direction: Direction
    packet: bytes


@dataclass(frozen=True, slots=True)
class SecretsRecord:
    wall: float
    secrets: HandshakeSecrets


@dataclass(frozen=True, slots=True)
class DroppedRecord:
    wall: float
    total: int


Record = PacketRecord | SecretsRecord | DroppedRecord


def encode_packet(peer: bytes, direction: Direction, packet: bytes, wall: float) -> bytes:
    return _header(Kind.PACKET, direction, KEY_LEN + len(packet), wall) + peer + packet


def encode_secrets(secrets: HandshakeSecrets, wall: float) -> bytes:
    body = _SECRETS.pack(
        secrets.local_static_private,
        secrets.remote_static_public,
        secrets.local_ephemeral_private,
        secrets.preshared_key or _NO_PSK,
    )
    return _header(Kind.SECRETS, 0, len(body), wall) + body


def encode_dropped(total: int, wall: float) -> bytes:
    return _header(Kind.DROPPED, 0, _DROPPED.size, wall) + _DROPPED.pack(total)


def _header(kind: Kind, direction: int, length: int, wall: float) -> bytes:
    return RECORD_HEADER.pack(kind, direction, 0, length, round(wall * 1e6))


class RecordReader:
    """Bytes from the stream in, whole records out; raises UapiError(EPROTO) on anything else."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Record]:
        self._buffer += data
        records: list[Record] = []
        offset = 0
        while len(self._buffer) - offset >= RECORD_HEADER.size:
            kind, direction, _, length, microseconds = RECORD_HEADER.unpack_from(
                self._buffer, offset
            )
            if length > MAX_BODY:
                raise UapiError(errno.EPROTO, f"capture record of {length} bytes")
            end = offset + RECORD_HEADER.size + length
            if end > len(self._buffer):
                break
            body = bytes(self._buffer[offset + RECORD_HEADER.size : end])
            records.append(_decode(kind, direction, body, microseconds / 1e6))
            offset = end
        del self._buffer[:offset]
        return records

    @property
    def pending(self) -> int:
        """Bytes of a record not yet complete."""
        return len(self._buffer)


def _decode(kind: int, direction: int, body: bytes, wall: float) -> Record:
    try:
        if kind == Kind.PACKET and len(body) >= KEY_LEN:
            return PacketRecord(wall, body[:KEY_LEN], Direction(direction), body[KEY_LEN:])
        if kind == Kind.SECRETS and len(body) == _SECRETS.size:
            static, remote, ephemeral, psk = _SECRETS.unpack(body)
            return SecretsRecord(
                wall, HandshakeSecrets(static, remote, ephemeral, None if psk == _NO_PSK else psk)
            )
        if kind == Kind.DROPPED and len(body) == _DROPPED.size:
            return DroppedRecord(wall, _DROPPED.unpack(body)[0])
    except ValueError:  # a direction other than inbound or outbound
        pass
    raise UapiError(errno.EPROTO, f"malformed capture record (kind {kind}, {len(body)} bytes)")


# The key log --------------------------------------------------------------------------------------


def keylog_lines(secrets: HandshakeSecrets) -> str:
    """One handshake's entry in the key log Wireshark's WireGuard dissector reads (its preference
    wg.keylog_file): `NAME = base64` lines, as wireguard-tools contrib/extract-handshakes prints
    them. Wireshark (epan/dissectors/packet-wireguard.c, wg_keylog_process_lines) ties a
    PRESHARED_KEY to the LOCAL_EPHEMERAL_PRIVATE_KEY before it, so the order matters."""
    lines = [
        ("LOCAL_STATIC_PRIVATE_KEY", secrets.local_static_private),
        ("REMOTE_STATIC_PUBLIC_KEY", secrets.remote_static_public),
        ("LOCAL_EPHEMERAL_PRIVATE_KEY", secrets.local_ephemeral_private),
    ]
    if secrets.preshared_key is not None:
        lines.append(("PRESHARED_KEY", secrets.preshared_key))
    return "".join(f"{name} = {to_base64(key)}\n" for name, key in lines)
