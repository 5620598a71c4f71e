"""The TUN and UDP edges where no namespace is needed: interface names refused before they reach
the kernel, a missing clone device, endpoints packed for the device. The harness and the edges
inside namespaces are tests/netns/test_netns_harness.py."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from wgpy.io import tun as tun_module
from wgpy.io.tun import describe, open_tun, valid_name
from wgpy.io.udp import endpoint_bytes

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


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (("192.0.2.7", 51820), (bytes([192, 0, 2, 7]), 51820)),
        (("fd00:1::2", 1, 0, 0), (bytes.fromhex("fd000001" + "00" * 11 + "02"), 1)),
        (("fe80::1%veth0", 2, 0, 3), (bytes.fromhex("fe80" + "00" * 13 + "01"), 2)),
    ],
)
def test_endpoint_bytes_packs_the_address_and_keeps_the_port(
    endpoint: tuple[str, int], expected: tuple[bytes, int]
) -> None:
    assert endpoint_bytes(endpoint) == expected
