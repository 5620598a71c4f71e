"""What of the harness and the TUN and UDP edges needs no namespace: the lab's wg configuration,
interface names refused before they reach the kernel, a missing clone device, endpoints packed for
the device. The harness and the edges inside namespaces are tests/netns/test_netns_harness.py."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from wgpy import config
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import from_base64, to_base64
from wgpy.io import tun as tun_module
from wgpy.io.tun import describe, open_tun, valid_name
from wgpy.lab.netns import WG_PORT, one_peer_config

PRIVATE, PEER, PSK = (to_base64(bytes([n]) * 32) for n in (1, 2, 3))


# wgpy.lab.netns


def test_a_one_peer_config_reads_back_as_its_arguments() -> None:
    allowed, endpoint = "192.0.2.2/32, fd00:2::/64", "198.18.0.2:51820"
    text = one_peer_config(PRIVATE, PEER, allowed, endpoint, preshared_key=PSK, keepalive=25)
    parsed = config.parse(text, wg_only=True)
    interface = parsed.interface
    assert (interface.private_key, interface.listen_port) == (from_base64(PRIVATE), WG_PORT)
    (peer,) = parsed.peers
    assert (peer.public_key, peer.preshared_key) == (from_base64(PEER), from_base64(PSK))
    assert [str(prefix) for prefix in peer.allowed_ips] == ["192.0.2.2/32", "fd00:2::/64"]
    assert (peer.endpoint, peer.persistent_keepalive) == (Endpoint("198.18.0.2", 51820), 25)


def test_a_one_peer_config_leaves_out_what_it_is_not_given() -> None:
    (peer,) = config.parse(one_peer_config(PRIVATE, PEER, "192.0.2.2/32"), wg_only=True).peers
    assert (peer.endpoint, peer.preshared_key, peer.persistent_keepalive) == (None, None, None)


# wgpy.io.tun


@pytest.mark.parametrize("name", ["", "a" * 16, ".", "..", "wg/0", "wg 0", "wg\t0", "wg:0"])
def test_invalid_names_are_refused_before_reaching_the_kernel(name: str) -> None:
    assert not valid_name(name)
    with pytest.raises(OSError) as raised:
        open_tun(name)
    assert raised.value.errno == errno.EINVAL
    assert "invalid interface name" in describe(raised.value)


@pytest.mark.parametrize("name", ["a" * 15, "wg0", "wg-home.1", "wg%d"])
def test_names_the_kernel_accepts_are_valid(name: str) -> None:
    assert valid_name(name)


def test_a_missing_clone_device_is_reported_by_its_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tun_module, "CLONE_DEVICE", str(tmp_path / "tun"))
    with pytest.raises(OSError) as raised:
        open_tun("wgtest0")
    assert raised.value.errno == errno.ENOENT
    assert describe(raised.value) == "wgtest0: no /dev/net/tun"


# wgpy.io.udp
