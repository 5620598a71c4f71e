"""Internet checksums (RFC 1071) for the offload paths: one buffer at a time, or the sums of many
segments in one go.

The data path checksums every TCP and UDP segment it cuts from a super-packet and every segment
it merges into one, about a third of its CPU time in pure Python. `sums` takes the segments of a
whole super-packet at once; with numpy installed (`pip install wgpy[fast]`) that is one
vectorised reduction instead of a big-integer remainder per segment, about six times faster. Both
ways give sums congruent modulo 0xffff, which is all a one's complement sum is; `fold` makes
either the 16-bit sum a checksum field is built from.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any, Final

Buffer = bytes | bytearray | memoryview

# Below this many bytes in all, numpy's call overhead costs more than it saves.
NUMPY_THRESHOLD: Final = 4096

_NOT_LOADED: Final = object()
_numpy: Any = _NOT_LOADED  # None forces the pure path (the tests do, to cover it)


def load_numpy() -> Any:
    """numpy, imported at the first call, or None where it is not installed. Not at import:
    it takes 60 ms or more, which `wgpy IFNAME` and the `wg setconf` after it then need not
    wait for; the first super-packet does, once. (Loaded in a thread beside the daemon's, it
    held the interpreter from the configuration socket as long.)"""
    global _numpy
    if _numpy is _NOT_LOADED:
        try:
            _numpy = importlib.import_module("numpy")
        except ImportError:  # pragma: no cover - wgpy[fast] not installed
            _numpy = None
    return _numpy


def ones_complement_sum(data: Buffer, initial: int = 0) -> int:
    """The 16-bit one's complement sum of `data` (zero-padded to even length) and `initial`.

    A big-endian integer is congruent to the sum of its 16-bit words modulo 0xffff, because
    0x10000 is 1 modulo 0xffff: one remainder does what a loop over words would. The result is 0
    only when everything summed is 0, as with end-around carries.
    """
    total = int.from_bytes(data, "big")
    if len(data) & 1:
        total <<= 8
    return fold(total + initial)


def sums(segments: Sequence[Buffer]) -> list[int]:
    """For each of `segments`, a number congruent modulo 0xffff to its one's complement sum
    (zero-padded to even length); `fold(pseudo + s)` finishes one."""
    if sum(map(len, segments)) < NUMPY_THRESHOLD or load_numpy() is None:
        return [_unfolded_sum(segment) for segment in segments]
    return _numpy_sums(segments)


def strided_sums(data: Buffer, start: int, size: int) -> list[int]:
    """As `sums` for the segments data[start:start+size], data[start+size:start+2*size], ...,
    the last of which may be shorter: a super-packet's payloads, which lie end to end. With
    numpy, the whole-size ones are summed as rows of one array, without copying them."""
    end = len(data)
    count = (end - start) // size
    if size & 1 or end - start < NUMPY_THRESHOLD or load_numpy() is None:
        return sums([data[at : at + size] for at in range(start, end, size)])
    # 32-bit words where they fit, half as many to add: 0x100000000 is 1 modulo 0xffff too, so
    # a 32-bit word is congruent to the sum of its two 16-bit halves.
    word = _numpy.uint32 if size % 4 == 0 else _numpy.uint16
    per_row = size // word().itemsize
    rows = _numpy.frombuffer(data, word, count * per_row, start)
    totals = _native_order(rows.reshape(count, per_row).sum(axis=1, dtype=_numpy.uint64))
    tail = start + count * size
    return totals + ([_unfolded_sum(data[tail:])] if tail < end else [])


def _native_order(totals: Any) -> list[int]:
    """Word sums read in the machine's byte order, reduced modulo 0xffff and swapped back: the
    one's complement sum of byte-swapped words is the byte-swapped sum (RFC 1071, section
    2(B)), which saves numpy a swap per word. All in numpy, no Python call per segment."""
    folded = totals % 0xFFFF
    if sys.byteorder == "little":
        folded = (folded & 0xFF) << 8 | folded >> 8
    return list(folded.tolist())


def _unfolded_sum(data: Buffer) -> int:
    total = int.from_bytes(data, "big") % 0xFFFF
    return total << 8 if len(data) & 1 else total


def _numpy_sums(segments: Sequence[Buffer]) -> list[int]:
    # Laid end to end, each padded to whole 16-bit words, then summed word run by word run.
    # (reduceat cannot sum an empty run, so empty segments stay out of it.)
    present = [bytes(s) + b"\0" if len(s) & 1 else s for s in segments if len(s)]
    starts, at = [], 0
    for segment in present:
        starts.append(at)
        at += len(segment) // 2
    if not present:
        return [0] * len(segments)
    words = _numpy.frombuffer(b"".join(present), dtype=_numpy.uint16)
    totals = _native_order(_numpy.add.reduceat(words, starts, dtype=_numpy.uint64))
    if len(present) == len(segments):
        return totals
    found = iter(totals)
    return [next(found) if len(segment) else 0 for segment in segments]


def fold(total: int) -> int:
    """`total` modulo 0xffff, as 0xffff rather than 0 unless `total` is 0."""
    return total % 0xFFFF or (0xFFFF if total else 0)


def checksum_field(partial: int) -> int:
    """The value a checksum field takes for a one's complement sum `partial`. Zero becomes
    0xffff, as the kernel writes it (CSUM_MANGLED_0): for UDP, zero would mean "no checksum"."""
    return (~partial & 0xFFFF) or 0xFFFF


def pseudo_header_sum(packet: Buffer, protocol: int, length: int) -> int:
    """The sum of the TCP/UDP pseudo-header of IP `packet` for a transport segment of `length`
    bytes (RFC 793 section 3.1, RFC 8200 section 8.1), unfolded."""
    addresses = packet[12:20] if packet[0] >> 4 == 4 else packet[8:40]
    return int.from_bytes(addresses, "big") + protocol + length


def transport_checksum_valid(packet: Buffer, header_len: int, protocol: int) -> bool:
    """Whether the TCP or UDP checksum of IP `packet`, whose IP header is `header_len` long,
    adds up (the sum over the pseudo-header and the whole segment, field included, is 0xffff)."""
    length = len(packet) - header_len
    pseudo = pseudo_header_sum(packet, protocol, length)
    return ones_complement_sum(packet[header_len:], pseudo) == 0xFFFF


def ipv4_header_checksum(header: Buffer) -> int:
    """The header checksum field for an IPv4 header whose own checksum field holds zero."""
    return ~ones_complement_sum(header) & 0xFFFF
