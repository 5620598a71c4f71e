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


def _held(figures: dict[str, Figure], name: str) -> None:
    figure = figures[f"{name} (wireguard-go peer)"]
    assert figure.held, f"{figure.name}: {figure.value} (promise: {figure.note})"


def test_the_flood_reaches_ten_thousand_initiations_a_second(figures: dict[str, Figure]) -> None:
    _held(figures, "flood sent")


def test_once_under_load_wgpy_answers_99_percent_of_the_flood_with_cookie_replies(
    figures: dict[str, Figure],
) -> None:
    _held(figures, "cookie replies sent")


def test_only_the_initiations_before_under_load_engaged_cost_a_diffie_hellman(
    figures: dict[str, Figure],
) -> None:
    _held(figures, "Diffie-Hellmans for the flood")


def test_the_kernel_drops_none_of_the_flood_on_wgpys_socket(figures: dict[str, Figure]) -> None:
    _held(figures, "flood dropped by the kernel")


def test_a_legitimate_peer_completes_its_handshake_within_10_s_during_the_flood(
    figures: dict[str, Figure],
) -> None:
    _held(figures, "legitimate handshake under flood")


def test_wgpy_memory_stays_within_8_mib_of_where_it_began(figures: dict[str, Figure]) -> None:
    _held(figures, "wgpy peak RSS")


def test_wgpy_cpu_stays_within_60_percent_of_a_core(figures: dict[str, Figure]) -> None:
    _held(figures, "wgpy CPU")
