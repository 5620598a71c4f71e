"""wgpy.io.pooled_random: the system's randomness read a block at a time, as the stack draws it."""

from __future__ import annotations

import os

import pytest

from wgpy.io.pooled_random import BLOCK, PooledSystemRandom


def test_draws_cover_their_range_and_only_it() -> None:
    rng = PooledSystemRandom()
    bits = [rng.getrandbits(32) for _ in range(2000)]
    assert all(0 <= value < 1 << 32 for value in bits) and max(bits) >= 1 << 31
    wide = [rng.getrandbits(64) for _ in range(2000)]
    assert len(set(wide)) == len(wide)  # (a repeat: one chance in 10**13)
    ports = {rng.randrange(28232) for _ in range(20000)}  # ~14,300 distinct expected
    assert min(ports) >= 0 and max(ports) < 28232 and len(ports) > 13000
    assert all(0.0 <= rng.random() < 1.0 for _ in range(1000))
    assert rng.getrandbits(0) == 0 and len(rng.randbytes(5)) == 5
    with pytest.raises(ValueError):
        rng.getrandbits(-1)


def test_the_pool_is_read_again_when_spent_and_never_reused() -> None:
    rng = PooledSystemRandom()
    taken = b"".join(rng.randbytes(7) for _ in range(3 * BLOCK // 7))
    blocks = [taken[i : i + 64] for i in range(0, len(taken) - 64, 64)]
    assert len(set(blocks)) == len(blocks)  # no stretch handed out twice
    assert len(rng.randbytes(2 * BLOCK)) == 2 * BLOCK  # more than a block at once


def test_a_forked_child_does_not_hand_out_its_parents_numbers() -> None:
    rng = PooledSystemRandom()
    rng.getrandbits(32)  # the pool read: the rest of it is the parent's
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's)
        os.write(write, rng.randbytes(16))
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 16)
    os.close(read)
    assert len(from_child) == 16 and from_child != rng.randbytes(16)
