"""The soak's short variant (benchmarks/hardening/soak.py): two wgpy daemons carry a paced,
checksummed stream for 40 s with REKEY_AFTER_TIME shortened to 8 s, so it spans several rekeys.
The hour-long run is `python -m benchmarks.hardening --only soak`."""

from __future__ import annotations

import pytest

from benchmarks.hardening import Figure, soak

pytestmark = pytest.mark.netns("wg", "sysctl")


@pytest.fixture(scope="module")
def figures() -> dict[str, Figure]:
    return {figure.name: figure for figure in soak.run(short=True)}


def _held(figure: Figure) -> None:
    assert figure.held, f"{figure.name}: {figure.value} (promise: {figure.note})"


def test_daemon_memory_stays_flat_after_warm_up(figures: dict[str, Figure]) -> None:
    rss = [figure for name, figure in figures.items() if name.startswith("daemon ")]
    assert len(rss) == 2
    for figure in rss:
        _held(figure)


def test_every_rekey_completes_and_no_handshake_fails(figures: dict[str, Figure]) -> None:
    _held(figures["handshakes completed"])
    _held(figures["failed handshakes"])


def test_neither_daemon_drops_a_packet_on_a_clean_link(figures: dict[str, Figure]) -> None:
    _held(figures["packets dropped by either daemon"])


def test_the_stream_arrives_whole_across_the_rekeys(figures: dict[str, Figure]) -> None:
    _held(figures["bytes moved through the tunnel"])
