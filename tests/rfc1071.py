"""RFC 1071's sum the slow way, the reference the fast checksums are held to."""

from __future__ import annotations


def word_by_word_sum(data: bytes) -> int:
    """16-bit words (the last padded with a zero byte) added with end-around carry."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for index in range(0, len(data), 2):
        total += data[index] << 8 | data[index + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total
