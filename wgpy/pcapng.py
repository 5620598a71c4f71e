"""A pcapng writer for raw IP packets: one section, one interface, enhanced packet blocks. Pure.

The layout follows the PCAP Next Generation capture file format (IETF draft
draft-ietf-opsawg-pcapng; the Section Header, Interface Description and Enhanced Packet Blocks,
and the options opt_comment, shb_userappl, if_name and epb_flags). Every block is written whole,
so a file cut after any block is a valid capture. Little-endian, as the byte-order magic says.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Final

LINKTYPE_RAW: Final = 101  # IPv4 or IPv6 from the first byte on, no link-layer header
SNAPLEN: Final = 0  # no limit

# epb_flags bits 0-1: the packet's direction.
DIRECTION_UNKNOWN: Final = 0
INBOUND: Final = 1
OUTBOUND: Final = 2

_SECTION_HEADER: Final = 0x0A0D0D0A
_INTERFACE_DESCRIPTION: Final = 0x00000001
_ENHANCED_PACKET: Final = 0x00000006
_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
_UNSPECIFIED_SECTION_LENGTH: Final = -1

_OPT_ENDOFOPT: Final = 0
_OPT_COMMENT: Final = 1
_SHB_USERAPPL: Final = 4
_IF_NAME: Final = 2
_EPB_FLAGS: Final = 2

_BLOCK_HEAD = struct.Struct("<II")  # block type, block total length
_BLOCK_TAIL = struct.Struct("<I")  # block total length, again
_OPTION_HEAD = struct.Struct("<HH")  # option code, option length (before padding)


def section_header(application: str | None = None) -> bytes:
    """The Section Header Block: byte order, version 1.0, section length unspecified."""
    body = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, _UNSPECIFIED_SECTION_LENGTH)
    options = [(_SHB_USERAPPL, application.encode())] if application else []
    return _block(_SECTION_HEADER, body + _options(options))


def interface_description(name: str | None = None, linktype: int = LINKTYPE_RAW) -> bytes:
    """The Interface Description Block of interface 0; timestamps in microseconds (the default)."""
    body = struct.pack("<HHI", linktype, 0, SNAPLEN)
    options = [(_IF_NAME, name.encode())] if name else []
    return _block(_INTERFACE_DESCRIPTION, body + _options(options))


def enhanced_packet(
    packet: bytes, wall: float, direction: int = DIRECTION_UNKNOWN, comment: str | None = None
) -> bytes:
    """An Enhanced Packet Block on interface 0, at `wall` (Unix seconds)."""
    microseconds = round(wall * 1_000_000)
    body = struct.pack(
        "<IIIII", 0, microseconds >> 32, microseconds & 0xFFFFFFFF, len(packet), len(packet)
    )
    options: list[tuple[int, bytes]] = []
    if direction:
        options.append((_EPB_FLAGS, struct.pack("<I", direction & 0b11)))
    if comment:
        options.append((_OPT_COMMENT, comment.encode()))
    return _block(_ENHANCED_PACKET, body + _padded(packet) + _options(options))


class PcapngWriter:
    """Blocks to a binary stream: the section and interface headers at once, then packets.
    `flush()` pushes out what is written; between calls the stream holds whole blocks only."""

    def __init__(
        self, stream: BinaryIO, *, interface: str | None = None, application: str | None = None
    ) -> None:
        self._stream = stream
        stream.write(section_header(application) + interface_description(interface))
        self.packets = 0

    def write_packet(
        self, packet: bytes, wall: float, direction: int = DIRECTION_UNKNOWN, comment: str = ""
    ) -> None:
        self._stream.write(enhanced_packet(packet, wall, direction, comment or None))
        self.packets += 1

    def flush(self) -> None:
        self._stream.flush()


def _block(block_type: int, body: bytes) -> bytes:
    total = _BLOCK_HEAD.size + len(body) + _BLOCK_TAIL.size
    return _BLOCK_HEAD.pack(block_type, total) + body + _BLOCK_TAIL.pack(total)


def _options(options: list[tuple[int, bytes]]) -> bytes:
    """Each option padded to 32 bits; a non-empty list ends with opt_endofopt."""
    if not options:
        return b""
    encoded = b"".join(
        _OPTION_HEAD.pack(code, len(value)) + _padded(value) for code, value in options
    )
    return encoded + _OPTION_HEAD.pack(_OPT_ENDOFOPT, 0)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)
