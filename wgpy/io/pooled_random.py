"""The system's randomness for the user-space stack (TCP's initial sequence numbers and ephemeral
ports, RFC 6528 and RFC 6056; DNS query identifiers), read from os.urandom a block at a time.

random.SystemRandom reads the kernel's generator once a draw: three system calls and ~3 us of a
SOCKS5 connect's way from request to SYN on the VM measured (issue 17). The bytes here are the
same kernel's, only read ahead; a forked child drops what its parent read ahead, so that no two
processes hand out the same numbers. One instance belongs to one thread (the tunnel's loop).
"""

from __future__ import annotations

import os
import random
import weakref
from typing import Final

BLOCK: Final = 4096  # bytes read at a time: ~1,000 connects' worth

_instances: weakref.WeakSet[PooledSystemRandom] = weakref.WeakSet()


class PooledSystemRandom(random.SystemRandom):
    """random.SystemRandom with its bytes read BLOCK at a time."""

    def __init__(self) -> None:
        super().__init__()
        self._pool = b""
        self._at = 0
        _instances.add(self)

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        size = (k + 7) // 8
        return int.from_bytes(self._take(size)) >> (size * 8 - k)

    def randbytes(self, n: int) -> bytes:
        return self._take(n)

    def random(self) -> float:
        return (int.from_bytes(self._take(7)) >> 3) * 2.0**-53  # as SystemRandom's

    def _take(self, size: int) -> bytes:
        end = self._at + size
        if end > len(self._pool):
            self._pool, self._at, end = os.urandom(max(BLOCK, size)), 0, size
        taken = self._pool[self._at : end]
        self._at = end
        return taken

    def _forget(self) -> None:
        self._pool, self._at = b"", 0


def _after_fork_in_child() -> None:
    for instance in list(_instances):
        instance._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
