"""The proxy's fuzzing (benchmarks/hardening/fuzz_proxy.py) in process: its generated garbage
SOCKS5 and HTTP requests all end in a rejection with its error reply, a decision, or a wait, and
none raises. The live half runs in tests/netns/test_hardening_fuzz.py's short fuzz run."""

from __future__ import annotations

import random

from benchmarks.hardening import fuzz_proxy


def test_garbage_requests_in_process_keep_every_promise() -> None:
    result = fuzz_proxy.fuzz_in_process(3000, seed=17)
    assert result.crashes == []
    assert result.held and result.requests == 3000
    assert 0 < result.rejected < result.requests  # the garbage reaches both outcomes


def test_the_generator_makes_both_protocols_and_oversized_requests() -> None:
    rng = random.Random(17)
    requests = [fuzz_proxy.generate(rng) for _ in range(500)]
    assert {protocol for protocol, _ in requests} == {"socks5", "http"}
    assert max(len(request) for _, request in requests) > 16 * 1024  # past the HTTP head limit
