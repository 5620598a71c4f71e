"""The floods' short variants, 10,000 handshake initiations a second at a wgpy daemon for 14 s
while wireguard-go, a listed peer, makes a handshake with it:

- benchmarks/hardening/flood.py: from 4,096 addresses, valid mac1 and garbage inside;
- benchmarks/hardening/admission.py: valid initiations (mac1 right, no cookie) from 4,096
  unknown keys, each from its own address, at a daemon whose WGPY_PEER_HOOK takes half a second
  to refuse each.

The full runs are `python -m benchmarks.hardening --only flood,admission`. They also hold wgpy's
CPU under the flood to its bound, which this run does not: a speed figure belongs to a benchmark
on the machine it was measured on. The 27-29% of a core behind the 60% bound came from a machine
about twice as fast as the 2-core VMs of 2026-12-07, where any commit measured 60-89% from one
hour to the next. The regressions that bound guards against fail the rows below on any machine:
a Diffie-Hellman per initiation fails the Diffie-Hellman row, and a cookie path too slow for
10,000 a second fails the kernel's drops and the cookie replies."""

from __future__ import annotations

import functools

import pytest

from benchmarks.hardening import Figure, admission, flood

pytestmark = pytest.mark.netns("wireguard-go", "wg", "ping")

AREAS = {"flood": flood, "admission": admission}


@functools.cache
def figures(area: str) -> dict[str, Figure]:
    """The figures of `area`'s short run, made once for all its promises."""
    return {figure.name: figure for figure in AREAS[area].run(short=True)}


# Each promise of the floods' rows, by its area, what it says and the figure that must hold it.
PROMISES = [
    ("flood", "the flood reaches ten thousand initiations a second", "flood sent"),
    (
        "flood",
        "once under load wgpy answers 99 percent of the flood with cookie replies",
        "cookie replies sent",
    ),
    (
        "flood",
        "only the initiations before under load engaged cost a Diffie-Hellman",
        "Diffie-Hellmans for the flood",
    ),
    ("flood", "the kernel drops none of the flood on wgpy's socket", "flood dropped by the kernel"),
    (
        "flood",
        "a legitimate peer completes its handshake within 10 s during the flood",
        "legitimate handshake under flood",
    ),
    ("flood", "wgpy memory stays within 8 mib of where it began", "wgpy peak RSS"),
    (
        "admission",
        "the unknown-key flood reaches ten thousand initiations a second",
        "unknown-key flood sent",
    ),
    ("admission", "at most four peer hooks run at once", "peer hooks at once"),
    (
        "admission",
        "a listed peer completes its handshake within 10 s during the unknown-key flood",
        "legitimate handshake under unknown-key flood",
    ),
    (
        "admission",
        "wgpy memory stays within 8 mib of where it began under the unknown-key flood",
        "wgpy peak RSS under unknown-key flood",
    ),
]
VARIANT = {"flood": "wireguard-go peer", "admission": "cookies"}


@pytest.mark.parametrize(
    ("area", "promise", "name"), PROMISES, ids=[promise for _, promise, _ in PROMISES]
)
def test_the_flood_keeps_its_promise(area: str, promise: str, name: str) -> None:
    figure = figures(area)[f"{name} ({VARIANT[area]})"]
    assert figure.held, f"{promise}: {figure.value} (promise: {figure.note})"
