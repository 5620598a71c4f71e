"""A reader of pcapng's block framing, for tests that check what wgpy.pcapng writes."""

from __future__ import annotations

import struct


def blocks(data: bytes) -> list[tuple[int, bytes]]:
    """(block type, body) of each block; asserts the lengths agree and keep 32-bit alignment."""
    found = []
    offset = 0
    while offset < len(data):
        kind, total = struct.unpack_from("<II", data, offset)
        assert total % 4 == 0 and offset + total <= len(data)
        assert struct.unpack_from("<I", data, offset + total - 4)[0] == total
        found.append((kind, data[offset + 8 : offset + total - 4]))
        offset += total
    return found
