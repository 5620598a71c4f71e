"""Applying configuration-protocol requests to a device, and reading its state back."""

from __future__ import annotations

import ipaddress
import os

from wgpy import uapi
from wgpy.configure import apply_update, device_state
from wgpy.core.device import Device
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import generate_private_key, public_key

PEER_1 = public_key(generate_private_key(os.urandom))
PEER_2 = public_key(generate_private_key(os.urandom))


def apply(device: Device, text: str) -> None:
    apply_update(device, uapi.parse_set(text.strip().splitlines()), now=0.0)


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
    (state,) = device_state(device, 51820, 0).peers
    assert state.public_key == PEER_1
    assert state.endpoint == Endpoint("192.0.2.9", 51820)
    assert state.persistent_keepalive_interval == 25
    assert state.allowed_ips == [ipaddress.ip_network("10.0.0.0/24"),
                                 ipaddress.ip_network("fd00::/64")]  # fmt: skip
    assert device.allowed_ips.lookup(bytes([10, 0, 0, 7])) is device.peers[PEER_1]


def test_replace_allowed_ips_drops_the_old_ones() -> None:
    device = new_device()
    apply(device, f"public_key={PEER_1.hex()}\nreplace_allowed_ips=true\nallowed_ip=10.1.0.0/16")
    assert device_state(device, 0, 0).peers[0].allowed_ips == [ipaddress.ip_network("10.1.0.0/16")]
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
    assert device_state(device, 0, 0).private_key is None


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
    state = device_state(device, 1, 2)
    assert (state.listen_port, state.fwmark) == (1, 2)
    assert state.peers[0].last_handshake_time == (1_700_000_000, 250_000_000)


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
