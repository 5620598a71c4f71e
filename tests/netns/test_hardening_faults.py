"""The faults' short variants (benchmarks/hardening/faults.py): wgpy in one namespace,
wireguard-go in another, a router namespace between them imposing the fault; 4 MiB blobs. The
full run, against wgpy too and with 64 MiB blobs, is `python -m benchmarks.hardening --only
faults`."""

from __future__ import annotations

import pytest

from benchmarks.hardening import Figure, faults

pytestmark = pytest.mark.netns("wireguard-go", "wg", "nft", "ping", "sysctl")

BLOB = faults.SHORT_BLOB
PEER = "wireguard-go"


def _all_held(figures: list[Figure]) -> None:
    assert figures
    for figure in figures:
        assert figure.held, f"{figure.name}: {figure.value} (promise: {figure.note})"


def test_a_link_dropping_5_percent_drops_that_and_a_transfer_across_it_arrives_intact() -> None:
    _all_held(faults.lossy_transfer(PEER, BLOB))


def test_a_transfer_through_a_reordering_duplicating_relay_arrives_and_counts_replays() -> None:
    _all_held(faults.reordered_duplicated_transfer(PEER, BLOB))


def test_the_session_recovers_by_itself_after_the_peer_restarts() -> None:
    _all_held(faults.restart(PEER, restarted="peer"))


def test_the_session_recovers_by_itself_after_wgpy_restarts() -> None:
    _all_held(faults.restart(PEER, restarted="wgpy"))


def test_the_peer_follows_when_wgpys_outer_address_changes() -> None:
    _all_held(faults.endpoint_change(PEER))


def test_wgpys_timers_recover_the_session_when_a_restarted_peer_stays_silent() -> None:
    # wgpy's datagrams go unanswered; 15 s later (Keepalive-Timeout + Rekey-Timeout) it starts
    # a handshake itself.
    _all_held(faults.restart(PEER, restarted="peer", survivor_alone=True))
