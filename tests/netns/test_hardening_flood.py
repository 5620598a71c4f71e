"""The flood's short variant (benchmarks/hardening/flood.py): 10,000 handshake initiations a
second from 4,096 addresses, valid mac1 and garbage inside, at a wgpy daemon for 14 s, while
wireguard-go makes a handshake with it. The 30-second run is
`python -m benchmarks.hardening --only flood`."""

from __future__ import annotations

import pytest

from benchmarks.hardening import Figure, flood

pytestmark = pytest.mark.netns("wireguard-go", "wg", "ping")


@pytest.fixture(scope="module")
def figures() -> dict[str, Figure]:
    return {figure.name: figure for figure in flood.run(short=True)}


# Each promise of the flood row, by what it says and the figure that must hold it.
PROMISES = [
    ("the flood reaches ten thousand initiations a second", "flood sent"),
    (
        "once under load wgpy answers 99 percent of the flood with cookie replies",
        "cookie replies sent",
    ),
    (
        "only the initiations before under load engaged cost a Diffie-Hellman",
        "Diffie-Hellmans for the flood",
    ),
    ("the kernel drops none of the flood on wgpy's socket", "flood dropped by the kernel"),
    (
        "a legitimate peer completes its handshake within 10 s during the flood",
        "legitimate handshake under flood",
    ),
    ("wgpy memory stays within 8 mib of where it began", "wgpy peak RSS"),
    ("wgpy cpu stays within 60 percent of a core", "wgpy CPU"),
]


@pytest.mark.parametrize(("promise", "name"), PROMISES, ids=[promise for promise, _ in PROMISES])
def test_the_flood_keeps_its_promise(figures: dict[str, Figure], promise: str, name: str) -> None:
    figure = figures[f"{name} (wireguard-go peer)"]
    assert figure.held, f"{promise}: {figure.value} (promise: {figure.note})"
