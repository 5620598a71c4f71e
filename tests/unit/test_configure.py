"""Applying configuration-protocol requests to a device, and reading its state back."""

from __future__ import annotations

import ipaddress
import os

import pytest

from wgpy import uapi
from wgpy.configure import (
    STEP_CHANGES,
    apply_update,
    format_device,
    format_peers,
    get_reply,
    update_steps,
)
from wgpy.core.device import Device
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import generate_private_key, public_key

PEER_1 = public_key(generate_private_key(os.urandom))
PEER_2 = public_key(generate_private_key(os.urandom))


def apply(device: Device, text: str) -> None:
    apply_update(device, uapi.parse_set(text.strip().splitlines()), now=0.0)


def state(device: Device, listen_port: int = 0, fwmark: int = 0) -> uapi.DeviceState:
    """The device as a client reads it from the reply to `get`."""
    return uapi.parse_get(get_reply(device, listen_port, fwmark))


def new_device() -> Device:
    device = Device(os.urandom, generate_private_key(os.urandom))
    apply(
        device,
        f"""
public_key={PEER_1.hex()}
endpoint=192.0.2.9:51820
persistent_keepalive_interval=25
allowed_ip=10.0.0.0/24
allowed_ip=fd00::/64
""",
    )
    return device


def test_a_set_creates_a_peer_with_everything_it_names() -> None:
    device = new_device()
    (peer,) = state(device).peers
    assert peer.public_key == PEER_1
    assert peer.endpoint == Endpoint("192.0.2.9", 51820)
    assert peer.persistent_keepalive_interval == 25
    assert peer.allowed_ips == [ipaddress.ip_network("10.0.0.0/24"),
                                 ipaddress.ip_network("fd00::/64")]  # fmt: skip
    assert device.allowed_ips.lookup(bytes([10, 0, 0, 7])) is device.peers[PEER_1]


def test_replace_allowed_ips_drops_the_old_ones() -> None:
    device = new_device()
    apply(device, f"public_key={PEER_1.hex()}\nreplace_allowed_ips=true\nallowed_ip=10.1.0.0/16")
    assert state(device).peers[0].allowed_ips == [ipaddress.ip_network("10.1.0.0/16")]
    assert device.allowed_ips.lookup(bytes([10, 0, 0, 7])) is None


def test_update_only_does_not_create_a_peer() -> None:
    device = new_device()
    apply(device, f"public_key={PEER_2.hex()}\nupdate_only=true\nendpoint=192.0.2.1:1")
    assert list(device.peers) == [PEER_1]


def test_remove_and_replace_peers() -> None:
    device = new_device()
    apply(device, f"public_key={PEER_2.hex()}\nallowed_ip=10.0.0.5/32")
    assert device.allowed_ips.lookup(bytes([10, 0, 0, 5])) is device.peers[PEER_2]
    apply(device, f"public_key={PEER_1.hex()}\nremove=true")
    assert list(device.peers) == [PEER_2]
    assert device.allowed_ips.lookup(bytes([10, 0, 0, 7])) is None
    apply(device, "replace_peers=true")
    assert device.peers == {}


def test_a_zero_key_removes_the_private_and_preshared_keys() -> None:
    device = new_device()
    apply(device, f"public_key={PEER_1.hex()}\npreshared_key={'11' * 32}")
    assert device.peers[PEER_1].preshared_key == bytes([0x11] * 32)
    apply(device, f"private_key={'00' * 32}\npublic_key={PEER_1.hex()}\npreshared_key={'00' * 32}")
    assert device.private_key is None
    assert device.peers[PEER_1].preshared_key is None
    assert state(device).private_key is None


def test_our_own_public_key_is_never_a_peer() -> None:
    device = new_device()
    assert device.static_public is not None
    apply(device, f"public_key={device.static_public.hex()}\nallowed_ip=10.9.0.0/16")
    assert device.static_public not in device.peers


def test_turning_persistent_keepalive_on_sends_one_at_once() -> None:
    device = new_device()
    assert device.next_timer() == 0.0, "due at the time of the set"


def test_the_state_reports_the_last_handshake_as_seconds_and_nanoseconds() -> None:
    device = new_device()
    device.peers[PEER_1].last_handshake_wall = 1_700_000_000.25
    reported = state(device, 1, 2)
    assert (reported.listen_port, reported.fwmark) == (1, 2)
    assert reported.peers[0].last_handshake_time == (1_700_000_000, 250_000_000)


def many_peers(count: int) -> str:
    """A `set` body of `count` peers, each with an endpoint and two allowed IPs."""
    return "".join(
        f"public_key={n.to_bytes(32, 'big').hex()}\nendpoint=192.0.2.1:{1000 + n}\n"
        f"allowed_ip=10.{n >> 8}.{n & 255}.0/24\nallowed_ip=fd00::{n:x}/128\n"
        for n in range(1, count + 1)
    )


def test_a_set_applied_in_steps_pauses_every_step_changes_and_ends_as_applied_at_once() -> None:
    lines = many_peers(300).splitlines()
    stepped, whole = Device(os.urandom), Device(os.urandom)
    steps = sum(1 for _ in update_steps(stepped, uapi.parse_set(lines), 0.0))
    apply_update(whole, uapi.parse_set(lines), 0.0)
    assert steps == 300 * 3 // STEP_CHANGES, "a peer, then each of its two allowed IPs"
    assert get_reply(stepped, 0, 0) == get_reply(whole, 0, 0)


def test_a_step_applies_no_more_than_step_changes() -> None:
    device = Device(os.urandom)
    steps = update_steps(device, uapi.parse_set(many_peers(300).splitlines()), 0.0)
    next(steps)
    assert len(device.peers) == STEP_CHANGES // 3 + 1
    assert len(device.allowed_ips) == STEP_CHANGES - len(device.peers)


def test_each_change_is_let_go_once_applied_not_all_at_the_end() -> None:
    update = uapi.parse_set(many_peers(300).splitlines())
    steps = update_steps(Device(os.urandom), update, 0.0)
    next(steps)
    assert len(update.peers) == 300 - (STEP_CHANGES // 3 + 1)
    for _ in steps:
        pass
    assert update.peers == []


REPLACE_WITH_THE_SAME = f"public_key={PEER_1.hex()}\nreplace_allowed_ips=true\n"


def test_the_same_allowed_ips_in_the_same_order_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device = new_device()
    touched: list[str] = []
    for method in ("insert", "remove", "remove_peer"):
        monkeypatch.setattr(device.allowed_ips, method, lambda *_, m=method: touched.append(m))
    apply(device, REPLACE_WITH_THE_SAME + "allowed_ip=10.0.0.0/24\nallowed_ip=fd00::/64")
    assert touched == []


def test_the_same_allowed_ips_in_another_order_are_replaced_in_that_order() -> None:
    device = new_device()
    apply(device, REPLACE_WITH_THE_SAME + "allowed_ip=fd00::/64\nallowed_ip=10.0.0.0/24")
    assert state(device).peers[0].allowed_ips == [ipaddress.ip_network("fd00::/64"),
                                                  ipaddress.ip_network("10.0.0.0/24")]  # fmt: skip


def test_a_get_written_in_slices_is_the_get_written_whole() -> None:
    device = Device(os.urandom, generate_private_key(os.urandom))
    apply_update(device, uapi.parse_set(many_peers(10).splitlines()), 0.0)
    peers = list(device.peers.values())
    sliced = format_device(device, 1, 2) + "".join(
        format_peers(device, peers[start : start + 3]) for start in range(0, 10, 3)
    )
    assert sliced + uapi.format_errno(0) == get_reply(device, 1, 2)
    assert len(state(device).peers) == 10


def test_stats_count_drops_handshake_attempts_and_the_session_age() -> None:
    from fakes import Link

    from wgpy.configure import device_stats
    from wgpy.core.ippacket import ipv4_packet

    link = Link(under_load_threshold_b=1)
    link.send("a", ipv4_packet("10.0.0.1", "10.0.0.2"))
    link.advance(6)
    a, b = device_stats(link.a.device, link.now), device_stats(link.b.device, link.now)
    assert b.cookie_replies_sent == 1
    assert b.drops == {"cookie_required": 1}
    (peer,) = a.peers
    assert (peer.handshake_attempts, peer.cookie_replies_received) == (2, 1)
    assert peer.keypair_age is not None and 0 <= peer.keypair_age < 1
