"""The admission flood's short variant (benchmarks/hardening/admission.py): 10,000 valid
initiations a second from 4,096 unknown keys, each from its own address, at a wgpy daemon whose
WGPY_PEER_HOOK takes half a second to refuse each, for 14 s, with cookies out of the way (the
worst case), while wireguard-go, a listed peer, makes a handshake with it. The full run, with
and without cookies, is `python -m benchmarks.hardening --only admission`."""

from __future__ import annotations

import pytest

from benchmarks.hardening import Figure, admission

pytestmark = pytest.mark.netns("wireguard-go", "wg", "ping")


@pytest.fixture(scope="module")
def figures() -> dict[str, Figure]:
    return {figure.name: figure for figure in admission.run(short=True)}


# Each promise of the admission row, by what it says and the figure that must hold it.
PROMISES = [
    ("the flood reaches ten thousand initiations a second", "unknown-key flood sent"),
    ("at most four hooks run at once", "peer hooks at once"),
    (
        "a listed peer completes its handshake within 10 s during the flood",
        "legitimate handshake under unknown-key flood",
    ),
    ("wgpy memory stays within 8 mib of where it began", "wgpy peak RSS under unknown-key flood"),
]


@pytest.mark.parametrize(("promise", "name"), PROMISES, ids=[promise for promise, _ in PROMISES])
def test_the_admission_flood_keeps_its_promise(
    figures: dict[str, Figure], promise: str, name: str
) -> None:
    figure = figures[f"{name} (no cookies)"]
    assert figure.held, f"{promise}: {figure.value} (promise: {figure.note})"
