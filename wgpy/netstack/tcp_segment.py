"""The TCP header on the wire (RFC 9293 section 3.1) with the options this stack speaks: MSS
(RFC 9293 3.2), window scale and timestamps (RFC 7323), SACK-permitted and SACK (RFC 2018).

`decode` never raises on what the network sends: it returns the segment, or the reason it was
dropped (a short header, a data offset outside the segment, a malformed option, a bad checksum).
`serialize` writes each option NOP-aligned to a 4-byte boundary, as Linux does, so
`decode(serialize(s))` is `s` for every segment whose options fit the header's 40 bytes.
"""

from __future__ import annotations

import struct
from enum import Enum, IntFlag
from typing import Final, NamedTuple

HEADER_LEN: Final = 20
MAX_OPTIONS_LEN: Final = 40
PROTOCOL: Final = 6  # IANA protocol number of TCP, in the pseudo-header

# Source port, destination port, sequence number, acknowledgment number, data offset (high
# nibble), flags, window, checksum, urgent pointer.
_HEADER: Final = struct.Struct("!HHIIBBHHH")
_CHECKSUM_AT: Final = 16
_CHECKSUM: Final = struct.Struct("!H")

# Option kinds (IANA "TCP Option Kind Numbers").
_END: Final = 0
_NOP: Final = 1
_MSS: Final = 2
_WINDOW_SCALE: Final = 3
_SACK_PERMITTED: Final = 4
_SACK: Final = 5
_TIMESTAMPS: Final = 8
_LENGTHS: Final = {_MSS: 4, _WINDOW_SCALE: 3, _SACK_PERMITTED: 2, _TIMESTAMPS: 10}
_TIMESTAMPS_ONLY: Final = bytes((_NOP, _NOP, _TIMESTAMPS, 10))
_TIMESTAMPS_ONLY_LEN: Final = 12
# The header with only the timestamps option, NOP-aligned as encode_options writes it.
_STAMPED: Final = struct.Struct("!HHIIBBHHH4BII")
_STAMPED_OFFSET: Final = (HEADER_LEN + _TIMESTAMPS_ONLY_LEN) << 2


class Flags(IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


# The same bits as plain ints, for the per-segment paths: IntFlag's operators cost a call each.
FIN: Final = int(Flags.FIN)
SYN: Final = int(Flags.SYN)
RST: Final = int(Flags.RST)
PSH: Final = int(Flags.PSH)
ACK: Final = int(Flags.ACK)


class SegmentDrop(Enum):
    """Why `decode` refused a segment."""

    SHORT = "shorter than a TCP header"
    BAD_OFFSET = "data offset outside the segment"
    BAD_OPTION = "option length runs past the header or is too short"
    BAD_CHECKSUM = "checksum does not match the pseudo-header and segment"


# The two value types each segment in and out makes are named tuples rather than frozen
# dataclasses: a frozen dataclass sets each field through object.__setattr__, four times the
# cost of a tuple's making (~20 of them a SOCKS5 connect through the proxy, issue 17).
class Options(NamedTuple):
    """The options of one segment; None or empty where absent. SACK blocks are (left, right)
    edges, 32-bit sequence numbers; timestamps are (TSval, TSecr)."""

    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    sack: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None


NO_OPTIONS: Final = Options()


class TcpSegment(NamedTuple):
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int  # Flags bits
    window: int
    options: Options = NO_OPTIONS
    payload: bytes = b""

    @property
    def length(self) -> int:
        """SEG.LEN: the payload plus one for each of SYN and FIN."""
        return len(self.payload) + (self.flags & SYN) // SYN + (self.flags & FIN)


def decode(
    data: bytes, src_ip: bytes, dst_ip: bytes, *, verify_checksum: bool = True
) -> TcpSegment | SegmentDrop:
    """The segment in `data` (an IP packet's payload between the two raw addresses, 4 or 16
    bytes each), or why it is dropped. The checksum costs more than the rest together; a caller
    whose packets were already authenticated may skip it, as Linux's WireGuard marks what it
    decrypts CHECKSUM_UNNECESSARY."""
    if len(data) < HEADER_LEN:
        return SegmentDrop.SHORT
    src_port, dst_port, seq, ack, offset, flags, window, _, _ = _HEADER.unpack_from(data)
    header_len = (offset >> 4) * 4
    if not HEADER_LEN <= header_len <= len(data):
        return SegmentDrop.BAD_OFFSET
    options = _decode_options(data[HEADER_LEN:header_len])
    if options is None:
        return SegmentDrop.BAD_OPTION
    if verify_checksum and (_sum(pseudo_header(src_ip, dst_ip, len(data))) + _sum(data)) % 0xFFFF:
        return SegmentDrop.BAD_CHECKSUM  # a right one makes the sum 0xffff, 0 modulo 0xffff
    payload = bytes(data[header_len:])
    return TcpSegment(src_port, dst_port, seq, ack, flags, window, options, payload)


def parse(data: bytes, src_ip: bytes, dst_ip: bytes) -> TcpSegment | None:
    """`decode` for a caller that does not count reasons: None for a dropped segment."""
    segment = decode(data, src_ip, dst_ip)
    return segment if isinstance(segment, TcpSegment) else None


def serialize(
    segment: TcpSegment, src_ip: bytes, dst_ip: bytes, *, checksummed: bool = True
) -> bytes:
    """The segment on the wire, checksummed over the pseudo-header of the two raw addresses
    (unless not `checksummed`: for a super-segment whose cutter sums each piece itself)."""
    options = segment.options
    stamps = options.timestamps
    if (
        stamps is not None
        and not options.sack
        and options.mss is None
        and options.window_scale is None
        and not options.sack_permitted
    ):  # most segments: header and option in one pack
        header = bytearray(_STAMPED.pack(
            segment.src_port, segment.dst_port, segment.seq, segment.ack, _STAMPED_OFFSET,
            segment.flags, segment.window, 0, 0, *_TIMESTAMPS_ONLY, *stamps,
        ))  # fmt: skip
    else:
        encoded = encode_options(options)
        if len(encoded) > MAX_OPTIONS_LEN:
            raise ValueError(f"TCP options need {len(encoded)} bytes, the header holds 40")
        header = bytearray(_HEADER.pack(
            segment.src_port, segment.dst_port, segment.seq, segment.ack,
            (HEADER_LEN + len(encoded)) << 2, segment.flags, segment.window, 0, 0,
        ))  # fmt: skip
        header += encoded
    payload = segment.payload
    if not checksummed:
        return b"".join((header, payload))
    # The pseudo-header's words (RFC 9293 3.1, RFC 8200 8.1), summed modulo 0xffff without
    # being built: the addresses, the protocol, the length (its high word is 1 * 2**16).
    pseudo = int.from_bytes(src_ip + dst_ip, "big") + PROTOCOL + len(header) + len(payload)
    # The protocol makes the sum nonzero: 0 modulo 0xffff means 0xffff. The payload's number is
    # reduced alone: adding to a number of a segment's size copies it (~1 us).
    total = (pseudo + _sum(header) + _sum(payload) % 0xFFFF) % 0xFFFF or 0xFFFF
    _CHECKSUM.pack_into(header, _CHECKSUM_AT, 0xFFFF - total)
    return b"".join((header, payload))


def _sum(data: bytes | bytearray) -> int:
    """A number congruent, modulo 0xffff, to the one's-complement sum of the 16-bit words of
    `data` padded to even length (RFC 1071; as 2**16 is 1 modulo 0xffff). Pieces summed apart
    add up when each starts at an even offset."""
    value = int.from_bytes(data, "big")
    return value << 8 if len(data) % 2 else value


def pseudo_header(src_ip: bytes, dst_ip: bytes, length: int) -> bytes:
    """RFC 9293 3.1 (IPv4) and RFC 8200 8.1 (IPv6): the addresses, the protocol and the length."""
    if len(src_ip) == 4:
        return src_ip + dst_ip + struct.pack("!xBH", PROTOCOL, length)
    return src_ip + dst_ip + struct.pack("!I3xB", length, PROTOCOL)


def options_length(options: Options) -> int:
    """How many header bytes `options` take on the wire: each option NOP-aligned on its own."""
    return (
        4 * (options.mss is not None)
        + 4 * (options.window_scale is not None)
        + 4 * options.sack_permitted
        + 12 * (options.timestamps is not None)
        + (4 + 8 * len(options.sack) if options.sack else 0)
    )


def encode_options(options: Options) -> bytes:
    out = bytearray()
    if options.mss is not None:
        _append(out, struct.pack("!BBH", _MSS, 4, options.mss))
    if options.window_scale is not None:
        _append(out, bytes((_WINDOW_SCALE, 3, options.window_scale)))
    if options.sack_permitted:
        _append(out, bytes((_SACK_PERMITTED, 2)))
    if options.timestamps is not None:
        _append(out, struct.pack("!BBII", _TIMESTAMPS, 10, *options.timestamps))
    if options.sack:
        edges = [edge for block in options.sack for edge in block]
        _append(out, struct.pack(f"!BB{len(edges)}I", _SACK, 2 + 4 * len(edges), *edges))
    return bytes(out)


def _append(out: bytearray, option: bytes) -> None:
    """`option` after the NOPs that make it end on a 4-byte boundary."""
    out += bytes((_NOP,)) * (-(len(out) + len(option)) % 4)
    out += option


def _decode_options(data: bytes) -> Options | None:
    if len(data) == _TIMESTAMPS_ONLY_LEN and data[:4] == _TIMESTAMPS_ONLY:  # most segments
        tsval, tsecr = struct.unpack_from("!II", data, 4)
        return Options(timestamps=(tsval, tsecr))
    if not data:
        return NO_OPTIONS
    mss: int | None = None
    window_scale: int | None = None
    timestamps: tuple[int, int] | None = None
    sack_permitted = False
    sack: tuple[tuple[int, int], ...] = ()
    at = 0
    while at < len(data):
        kind = data[at]
        if kind == _END:
            break
        if kind == _NOP:
            at += 1
            continue
        if at + 1 >= len(data):
            return None
        length = data[at + 1]
        if length < 2 or at + length > len(data) or _LENGTHS.get(kind, length) != length:
            return None
        body = data[at + 2 : at + length]
        if kind == _MSS:
            mss = int.from_bytes(body, "big")
        elif kind == _WINDOW_SCALE:
            window_scale = body[0]
        elif kind == _SACK_PERMITTED:
            sack_permitted = True
        elif kind == _TIMESTAMPS:
            tsval, tsecr = struct.unpack("!II", body)
            timestamps = (tsval, tsecr)
        elif kind == _SACK:
            if len(body) % 8:
                return None
            edges = struct.unpack(f"!{len(body) // 4}I", body)
            sack = tuple(zip(edges[::2], edges[1::2], strict=True))
        at += length  # an unknown kind is skipped by its length (RFC 9293 3.2)
    return Options(mss, window_scale, sack_permitted, sack, timestamps)
