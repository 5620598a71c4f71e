"""What the daemon makes and drops while it runs is freed by reference counting alone: no reference
cycles. The daemon freezes what a `set` creates out of the cyclic collector's sight, so that a
full collection does not walk every peer (wgpy/io/interface.py); a cycle among frozen objects would
never be freed. Each test counts the cyclic garbage its scenario leaves: it must be none."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest
from fakes import Link
from oracle import _with_macs

from wgpy import uapi
from wgpy.configure import apply_update
from wgpy.core.device import Device
from wgpy.core.drops import DropReason
from wgpy.core.ippacket import ipv4_packet

PEERS = 20


@pytest.fixture(autouse=True)
def collector_off() -> Iterator[None]:
    """Only the scenario's own garbage is counted: nothing older, nothing collected meanwhile."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def cyclic_garbage() -> list[str]:
    """The kinds of the objects that only a cyclic collection frees, collected now."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        kinds = sorted({type(found).__name__ for found in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
    return kinds


def a_to_b() -> bytes:
    return ipv4_packet("10.0.0.1", "10.0.0.2")


def test_sessions_made_rekeyed_and_expired_leave_no_cycles() -> None:
    link = Link()
    link.send("a", a_to_b())
    assert link.b.received
    for _ in range(4):  # past REKEY_AFTER_TIME, so a new handshake, and on to REJECT_AFTER_TIME
        link.advance(100)
        link.send("a", a_to_b())
    link.advance(600)  # every session expires
    assert link.kinds("a").count(1) > 1
    assert cyclic_garbage() == []


def test_handshakes_that_never_complete_leave_no_cycles() -> None:
    link = Link()
    link.lose = lambda sender, data: sender == "b"  # no response ever arrives
    link.send("a", a_to_b())
    link.advance(120)  # retried every 5 s, then given up
    assert link.kinds("a").count(1) > 2
    assert cyclic_garbage() == []


def test_a_response_that_fails_to_authenticate_leaves_no_cycles() -> None:
    link = Link()
    link.lose = lambda sender, data: sender == "b"
    link.send("a", a_to_b())
    response = next(data for name, _, data in link.sent if name == "b" and data[0] == 2)
    tag_flipped = response[:59] + bytes([response[59] ^ 1])  # the empty payload's AEAD tag
    assert link.a.device.static_public is not None
    forged = _with_macs(tag_flipped, receiver_static_public=link.a.device.static_public)
    link.inject("a", forged, link.b.endpoint)
    assert link.a.device.drops[DropReason.HANDSHAKE_INVALID] == 1
    assert cyclic_garbage() == []


def test_an_initiation_that_fails_to_authenticate_leaves_no_cycles() -> None:
    link = Link()
    assert link.b.device.static_public is not None
    body = bytes([1, 0, 0, 0]) + os.urandom(112)  # an initiation's, before its MACs
    initiation = _with_macs(body, receiver_static_public=link.b.device.static_public)
    link.inject("b", initiation, link.a.endpoint)
    assert link.b.device.drops[DropReason.HANDSHAKE_INVALID] == 1
    assert cyclic_garbage() == []


def peer_lines(key: bytes, index: int, lengths: tuple[int, int]) -> list[str]:
    return [
        f"public_key={key.hex()}",
        f"endpoint=192.0.2.{index}:51820",
        "persistent_keepalive_interval=25",
        "replace_allowed_ips=true",
        f"allowed_ip=198.18.{index}.0/{lengths[0]}",
        f"allowed_ip=fd00::{index:x}00/{lengths[1]}",
    ]


def test_peers_added_changed_and_removed_by_sets_leave_no_cycles() -> None:
    device = Device(os.urandom, os.urandom(32))
    keys = [os.urandom(32) for _ in range(PEERS)]
    # Added, then every allowed IP replaced; ipaddress makes a cycle of a /31 or /127 network.
    for lengths in ((24, 128), (31, 127)):
        lines = [line for n, key in enumerate(keys) for line in peer_lines(key, n, lengths)]
        apply_update(device, uapi.parse_set(lines), 0.0)
    apply_update(device, uapi.parse_set(["replace_peers=true"]), 0.0)
    assert not device.peers
    assert cyclic_garbage() == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"set=1\nallowed_ip=10.0.0.300/32\n\n",  # a value refused
        b"set=1\nno equals sign\n\n",  # a line refused
        b"set=1\nlisten_port=1\n",  # cut short
    ],
    ids=["bad-value", "bad-line", "cut-short"],
)
def test_a_refused_set_leaves_no_cycles(request_bytes: bytes) -> None:
    reader = uapi.RequestReader()
    requests = [*reader.feed(request_bytes), *reader.feed(b"")]
    assert [request.error is not None for request in requests] == [True]
    del reader, requests
    assert cyclic_garbage() == []
