"""The handshake rate limiter: per-source token buckets, as the kernel's ratelimiter.c."""

from __future__ import annotations

import ipaddress
import struct
from itertools import accumulate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgpy.core.constants import HANDSHAKE_BURST, HANDSHAKES_PER_SECOND
from wgpy.core.ratelimiter import DEFAULT_MAX_ENTRIES, RateLimiter

COST = 1 / HANDSHAKES_PER_SECOND
START = 1000.0


def ipv4(number: int) -> bytes:
    return number.to_bytes(4, "big")


def ipv6(*words: int) -> bytes:
    return struct.pack("!4I", *words)


def packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def burst(limiter: RateLimiter, address: bytes, now: float, count: int) -> list[bool]:
    return [limiter.allow(address, now) for _ in range(count)]


# The Linux kernel's drivers/net/wireguard/selftest/ratelimiter.c, expected_results[]: for each
# message from one source, the time slept before it and whether it is allowed.
KERNEL_TIMINGS = [
    *[(0.0, True)] * HANDSHAKE_BURST,
    (0.0, False),
    (COST, True),
    (0.0, False),
    (2 * COST, True),
    (0.0, True),
    (0.0, False),
]


def test_kernel_selftest_timings() -> None:
    # timings_test(): one IPv4 and one IPv6 source follow the table. The IPv6 source changes its
    # lower 64 bits every step, which must not matter; a new IPv4 and a new IPv6 /64 source at each
    # step are always allowed.
    limiter = RateLimiter()
    now = START
    for i, (sleep, expected) in enumerate(KERNEL_TIMINGS):
        now += sleep
        assert limiter.allow(ipv4(8182), now) == expected, i
        assert limiter.allow(ipv4(8182 + i + 1), now), i
        assert limiter.allow(ipv6(1212, 289188, i, i), now) == expected, i
        assert limiter.allow(ipv6(1212 + i + 1, 289188, i, i), now), i


@pytest.mark.parametrize("max_entries", [16, DEFAULT_MAX_ENTRIES])
def test_kernel_selftest_capacity(max_entries: int) -> None:
    # capacity_test(): distinct sources fill the table, and the one past its bound is refused.
    limiter = RateLimiter(max_entries)
    results = [limiter.allow(ipv4(i), START) for i in range(max_entries + 1)]
    assert results == [True] * max_entries + [False]
    assert len(limiter) == max_entries


def test_a_new_source_gets_exactly_the_burst() -> None:
    limiter = RateLimiter()
    results = burst(limiter, packed("192.0.2.1"), START, HANDSHAKE_BURST + 3)
    assert results == [True] * HANDSHAKE_BURST + [False] * 3


def test_sources_have_independent_buckets() -> None:
    limiter = RateLimiter()
    burst(limiter, packed("192.0.2.1"), START, HANDSHAKE_BURST)
    assert not limiter.allow(packed("192.0.2.1"), START)
    assert all(burst(limiter, packed("192.0.2.2"), START, HANDSHAKE_BURST))
    assert all(burst(limiter, packed("fd00::1"), START, HANDSHAKE_BURST))


def test_ipv6_sources_in_one_64_share_a_bucket() -> None:
    limiter = RateLimiter()
    same_64 = [packed(f"fd00:1:2:3::{i:x}") for i in range(1, HANDSHAKE_BURST + 2)]
    results = [limiter.allow(address, START) for address in same_64]
    assert results == [True] * HANDSHAKE_BURST + [False]
    assert limiter.allow(packed("fd00:1:2:4::1"), START)
    assert len(limiter) == 2


def test_ipv4_mapped_ipv6_sources_are_limited_per_ipv4_address() -> None:
    limiter = RateLimiter()
    burst(limiter, packed("::ffff:192.0.2.1"), START, HANDSHAKE_BURST)
    assert not limiter.allow(packed("::ffff:192.0.2.1"), START)
    assert not limiter.allow(packed("192.0.2.1"), START)
    assert limiter.allow(packed("::ffff:192.0.2.2"), START)


def test_tokens_come_back_at_the_rate_up_to_the_burst() -> None:
    limiter = RateLimiter()
    source = packed("192.0.2.1")
    burst(limiter, source, START, HANDSHAKE_BURST)
    assert not limiter.allow(source, START + COST / 2)
    assert burst(limiter, source, START + COST, 2) == [True, False]
    # Idle for long enough to earn many tokens, but the bucket holds only the burst.
    later = START + 0.9
    assert burst(limiter, source, later, HANDSHAKE_BURST + 1) == [True] * HANDSHAKE_BURST + [False]


def test_a_source_sending_at_exactly_the_rate_is_never_refused() -> None:
    limiter = RateLimiter()
    source = packed("198.18.0.1")
    start = 12.34  # a clock value whose multiples of 1/20 s are inexact in binary floating point
    burst(limiter, source, start, HANDSHAKE_BURST)
    steady = [limiter.allow(source, start + i * COST) for i in range(1, 10 * HANDSHAKES_PER_SECOND)]
    assert all(steady)


def test_refused_messages_keep_the_partial_refill() -> None:
    limiter = RateLimiter()
    source = packed("192.0.2.1")
    burst(limiter, source, START, HANDSHAKE_BURST)
    # Knocking every half-cost still earns one message per full cost, no fewer and no more.
    results = [limiter.allow(source, START + k * COST / 2) for k in range(1, 9)]
    assert results == [False, True] * 4


def test_sources_idle_for_over_a_second_are_collected() -> None:
    limiter = RateLimiter()
    for i in range(100):
        limiter.allow(ipv4(i), START)
    recent = ipv4(7)
    limiter.allow(recent, START + 0.9)
    assert len(limiter) == 100
    assert limiter.allow(recent, START + 1.5)
    assert len(limiter) == 1


def test_a_flood_of_sources_cannot_grow_the_table_past_its_bound() -> None:
    limiter = RateLimiter(max_entries=64)
    flood = [limiter.allow(ipv4(i), START) for i in range(10_000)]
    assert sum(flood) == 64
    assert len(limiter) == 64
    # Known sources are still served while the table is full; new ones wait for collection.
    assert limiter.allow(ipv4(0), START + 0.1)
    assert not limiter.allow(ipv4(50_000), START + 0.5)
    assert limiter.allow(ipv4(50_000), START + 1.5)
    assert len(limiter) == 1


@pytest.mark.parametrize("length", [0, 3, 5, 8, 15, 17])
def test_an_address_of_another_length_is_an_error(length: int) -> None:
    with pytest.raises(ValueError, match="4 or 16 bytes"):
        RateLimiter().allow(bytes(length), START)


@given(st.lists(st.one_of(st.integers(0, 60), st.integers(0, 1500)), max_size=120))
def test_no_interval_admits_more_than_the_burst_plus_the_rate(gaps_ms: list[int]) -> None:
    limiter = RateLimiter()
    times_ms = list(accumulate(gaps_ms))
    allowed = [limiter.allow(b"\xc0\x00\x02\x01", START + t / 1000) for t in times_ms]
    ms_per_token = 1000 // HANDSHAKES_PER_SECOND
    for i in range(len(times_ms)):
        for j in range(i, len(times_ms)):
            bound = HANDSHAKE_BURST + (times_ms[j] - times_ms[i]) // ms_per_token
            assert sum(allowed[i : j + 1]) <= bound, (i, j)


@given(st.lists(st.integers(1000 // HANDSHAKES_PER_SECOND, 3000), max_size=60))
def test_messages_spaced_at_least_a_token_apart_are_all_allowed(gaps_ms: list[int]) -> None:
    limiter = RateLimiter()
    times_ms = accumulate(gaps_ms)
    assert all(limiter.allow(b"\xc0\x00\x02\x01", START + t / 1000) for t in times_ms)
