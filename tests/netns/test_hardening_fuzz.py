"""Fuzzing (issue 8): the short run of benchmarks/hardening/fuzz.py keeps every promise. Its pieces
are tested in process in tests/unit/test_hardening_fuzz.py.

The full run (10^6 datagrams, 10^5 requests and files) is `python -m benchmarks.hardening --only
fuzz`; its figures are in docs/HARDENING.md.
"""

from __future__ import annotations

import pytest

from benchmarks.hardening import fuzz


@pytest.mark.netns("wg", "nft", "dnsmasq", "setpriv", "ss")  # ss, dnsmasq: the proxy lab
def test_the_short_fuzz_run_keeps_every_promise() -> None:
    figures = fuzz.run(short=True)

    broken = [
        f"{figure.name}: {figure.value} ({figure.note})" for figure in figures if not figure.held
    ]
    assert broken == []
    assert {figure.area for figure in figures} == {"fuzz"}
