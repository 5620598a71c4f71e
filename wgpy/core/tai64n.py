"""TAI64N timestamps for the handshake initiation's replay protection."""

from __future__ import annotations

import struct

# 2^62 + 10: the TAI64 label of the Unix epoch, as the kernel and wireguard-go write it.
TAI64_BASE = (1 << 62) + 10
TIMESTAMP_LEN = 12  # seconds (u64) and nanoseconds (u32), big-endian
# Nanoseconds are rounded down to this multiple (about 16 ms) so the timestamp does not leak the
# sender's exact clock, as wireguard-go and the kernel do.
WHITENING = 0x1000000


def timestamp(wall_time: float) -> bytes:
    """The 12-byte TAI64N label of `wall_time` (Unix seconds)."""
    seconds = int(wall_time)
    nanoseconds = int((wall_time - seconds) * 1e9)
    nanoseconds -= nanoseconds % WHITENING
    return struct.pack(">QI", TAI64_BASE + seconds, nanoseconds)


def is_after(candidate: bytes, reference: bytes) -> bool:
    """True when `candidate` is strictly later. Big-endian fields compare as bytes."""
    return candidate > reference
