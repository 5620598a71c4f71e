"""Per-source token buckets for handshake messages while the device is under load.

A port of the Linux kernel's drivers/net/wireguard/ratelimiter.c. Each source (an IPv4 address,
or the /64 of an IPv6 address) may send HANDSHAKES_PER_SECOND handshake messages a second, with a
burst of HANDSHAKE_BURST (other rates for other uses: see admission.py). Tokens are counted in
integer nanoseconds, as in the kernel, so a source sending at exactly the rate is never refused
for a rounding error.
"""

from __future__ import annotations

from typing import Final

from wgpy.core.constants import HANDSHAKE_BURST, HANDSHAKES_PER_SECOND

NSEC_PER_SEC: Final = 1_000_000_000
# The kernel collects entries idle for more than a second, once a second. A bucket idle that long
# has refilled completely (a slower one is kept until it has), so dropping it changes no answer,
# only the memory held.
IDLE_TIMEOUT_NS: Final = NSEC_PER_SEC
GC_INTERVAL_NS: Final = NSEC_PER_SEC
# The kernel's bound on machines with more than 1 GiB of RAM: table_size 8192, max_entries 8 times
# that. A source that would grow the table beyond it is refused.
DEFAULT_MAX_ENTRIES: Final = 8192 * 8

_V4_MAPPED_PREFIX: Final = bytes(10) + b"\xff\xff"


class _Bucket:
    __slots__ = ("last_ns", "tokens")

    def __init__(self, tokens: int, last_ns: int) -> None:
        self.tokens = tokens
        self.last_ns = last_ns


class RateLimiter:
    """Token buckets keyed by source; time is passed in as monotonic seconds."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        per_second: int = HANDSHAKES_PER_SECOND,
        burst: int = HANDSHAKE_BURST,
    ) -> None:
        self._buckets: dict[bytes, _Bucket] = {}
        self._max_entries = max_entries
        self._cost = NSEC_PER_SEC // per_second
        # The burst is part of the bucket's depth, not of the rate (the kernel's TOKEN_MAX).
        self._token_max = self._cost * burst
        self._idle_ns = max(IDLE_TIMEOUT_NS, self._token_max)
        self._next_gc_ns = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, address: bytes, now: float) -> bool:
        """Whether a handshake message from `address` (4 or 16 raw bytes) may be processed now."""
        now_ns = round(now * NSEC_PER_SEC)
        if now_ns >= self._next_gc_ns:
            self._collect(now_ns)
        key = _source_key(address)
        bucket = self._buckets.get(key)
        if bucket is None:
            return self._admit(key, now_ns)
        tokens = min(self._token_max, bucket.tokens + now_ns - bucket.last_ns)
        bucket.last_ns = now_ns
        allowed = tokens >= self._cost
        bucket.tokens = tokens - self._cost if allowed else tokens
        return allowed

    def _admit(self, key: bytes, now_ns: int) -> bool:
        """A new source starts with a full bucket, less this message."""
        if len(self._buckets) >= self._max_entries:
            return False
        self._buckets[key] = _Bucket(self._token_max - self._cost, now_ns)
        return True

    def _collect(self, now_ns: int) -> None:
        idle = [key for key, b in self._buckets.items() if now_ns - b.last_ns > self._idle_ns]
        for key in idle:
            del self._buckets[key]
        self._next_gc_ns = now_ns + GC_INTERVAL_NS


def _source_key(address: bytes) -> bytes:
    """The IPv4 address, or the /64 of an IPv6 one; IPv4-mapped IPv6 counts as IPv4.

    The keys of the two families differ in length, so they cannot collide.
    """
    if len(address) == 4:
        return address
    if len(address) == 16:
        # From a dual-stack socket every IPv4 peer is ::ffff:a.b.c.d, all in one /64.
        return address[12:] if address.startswith(_V4_MAPPED_PREFIX) else address[:8]
    raise ValueError(f"a source address is 4 or 16 bytes, not {len(address)}")
