"""The namespace harness, and the TUN and UDP edges tested inside it.

`test_wireguard_go_peers_ping_each_other_through_the_tunnel` is the template for interop tests:
two namespaces on a veth pair, a WireGuard peer in each, configured with wg(8), pinged both ways.
"""

from __future__ import annotations

import errno
import select
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP

import wgpy
from wgpy.core.constants import DEFAULT_MTU
from wgpy.io.tun import Tun, describe, open_tun
from wgpy.io.udp import SO_MARK, SOCKET_BUFFER_SIZE, open_udp, set_fwmark
from wgpy.lab.netns import (
    WG_PORT,
    Namespace,
    WgKeys,
    can_ping,
    ip_up,
    one_peer_config,
    start_wireguard_go,
    unique_ifname,
    veth_pair,
    wg_genkey,
    wg_setconf,
)

# Each test here needs a namespace, so `-m netns` selects it as it selects the rest of tests/netns.
pytestmark = pytest.mark.netns

# Tunnel addresses of the two peers: (IPv4, IPv6), on a /24 and a /64.
TUNNEL = (("192.0.2.1", "fd00:2::1"), ("192.0.2.2", "fd00:2::2"))
TUNNEL_ALLOWED_IPS = "192.0.2.0/24, fd00:2::/64"


@pytest.fixture
def inside(netns: Namespace) -> Iterator[Namespace]:
    """Run the test in a fresh namespace: the sockets and devices it opens live there."""
    with netns.entered():
        yield netns


# The harness.


@pytest.mark.netns("ping")
def test_veth_pair_carries_ipv4_and_ipv6_both_ways(netns_pair: tuple[Namespace, Namespace]) -> None:
    a, b = netns_pair
    for source, target in ((a, b), (b, a)):
        assert can_ping(source, target.ipv4)
        assert can_ping(source, target.ipv6)


@pytest.mark.netns("wireguard-go", "wg", "ping")
def test_wireguard_go_peers_ping_each_other_through_the_tunnel(
    netns_pair: tuple[Namespace, Namespace],
) -> None:
    a, b = netns_pair
    keys_a, keys_b = wg_genkey(), wg_genkey()
    # One peer reaches the other over the IPv4 underlay, the other over IPv6.
    wg_a = _wireguard_go_peer(a, keys_a, keys_b, f"{b.ipv4}:{WG_PORT}", TUNNEL[0])
    wg_b = _wireguard_go_peer(b, keys_b, keys_a, f"[{a.ipv6}]:{WG_PORT}", TUNNEL[1])

    for source, target in ((a, TUNNEL[1]), (b, TUNNEL[0])):
        for address in target:
            assert can_ping(source, address)
    assert _latest_handshake(a, wg_a) > 0
    assert _latest_handshake(b, wg_b) > 0


@pytest.mark.netns
def test_cleanup_ends_every_process_and_deletes_both_namespaces() -> None:
    processes = []
    with pytest.raises(RuntimeError, match="test failed"), veth_pair() as (a, b):
        processes = [ns.popen("sleep", "600") for ns in (a, b)]
        raise RuntimeError("test failed")

    assert not a.exists() and not b.exists()
    assert all(process.returncode is not None for process in processes)
    assert not any(Path(f"/proc/{process.pid}").exists() for process in processes)


# wgpy.io.tun


def test_open_tun_creates_the_named_interface_with_wireguard_gos_mtu(inside: Namespace) -> None:
    with open_tun("wgtest0") as tun:
        assert tun.name == "wgtest0"
        assert tun.mtu() == DEFAULT_MTU == 1420
        assert f"mtu {DEFAULT_MTU}" in inside.run("ip", "link", "show", "wgtest0").stdout


def test_set_mtu_changes_the_interface_mtu(inside: Namespace) -> None:
    with open_tun("wgtest0") as tun:
        tun.set_mtu(1280)
        assert tun.mtu() == 1280
        assert "mtu 1280" in inside.run("ip", "link", "show", "wgtest0").stdout


def test_an_mtu_out_of_range_is_refused_and_leaves_no_interface(inside: Namespace) -> None:
    with pytest.raises(OSError) as raised:
        open_tun("wgtest0", mtu=10)
    assert raised.value.errno == errno.EINVAL
    assert describe(raised.value) == "wgtest0: MTU out of range"
    assert inside.run("ip", "link", "show", "wgtest0", check=False).returncode != 0


def test_the_kernel_fills_in_a_numbered_name(inside: Namespace) -> None:
    with open_tun("wgtest%d") as tun:
        assert tun.name == "wgtest0"


@pytest.mark.netns("ping")
def test_reads_the_packets_the_kernel_routes_into_the_device(inside: Namespace) -> None:
    with open_tun("wgtest0") as tun:
        ip_up(inside, "wgtest0", "192.0.2.1/24")
        inside.popen("ping", "-c", "1", "-W", "1", "192.0.2.2")

        request = _read_ipv4(tun, lambda p: p.dst == "192.0.2.2" and ICMP in p)

    assert request.src == "192.0.2.1"
    assert request[ICMP].type == 8  # echo request


def test_written_packets_reach_the_kernel_which_answers_through_the_device(
    inside: Namespace,
) -> None:
    with open_tun("wgtest0") as tun:
        ip_up(inside, "wgtest0", "192.0.2.1/24")
        tun.write(bytes(IP(src="192.0.2.2", dst="192.0.2.1") / ICMP(id=0x7767) / b"wgpy"))

        reply = _read_ipv4(tun, lambda p: ICMP in p and p[ICMP].id == 0x7767)

    assert (reply.src, reply.dst) == ("192.0.2.1", "192.0.2.2")
    assert reply[ICMP].type == 0  # echo reply
    assert bytes(reply[ICMP].payload) == b"wgpy"


def test_exists_turns_false_once_the_interface_is_deleted(inside: Namespace) -> None:
    with open_tun("wgtest0") as tun:
        assert tun.exists()
        inside.run("ip", "link", "delete", "wgtest0")

        assert not tun.exists()
        with pytest.raises(OSError) as raised:
            tun.read()
        assert raised.value.errno == errno.EBADFD


def test_a_name_in_use_by_another_tun_is_reported_as_taken(inside: Namespace) -> None:
    with open_tun("wgtest0"), pytest.raises(OSError) as raised:
        open_tun("wgtest0")
    assert raised.value.errno == errno.EBUSY
    assert describe(raised.value) == "wgtest0: interface name taken"


def test_a_name_held_by_another_kind_of_device_is_reported_as_taken(inside: Namespace) -> None:
    inside.run("ip", "link", "add", "wgtest0", "type", "veth", "peer", "name", "wgtest1")
    with pytest.raises(OSError) as raised:
        open_tun("wgtest0")
    assert raised.value.errno == errno.EINVAL
    assert "interface name taken" in describe(raised.value)


@pytest.mark.netns("setpriv")
def test_without_cap_net_admin_opening_is_not_permitted(netns: Namespace) -> None:
    # Root without CAP_NET_ADMIN in its bounding set, so the kernel refuses TUNSETIFF.
    script = (
        "from wgpy.io.tun import describe, open_tun\n"
        "try:\n    open_tun('wgtest0')\n"
        "except OSError as err:\n    print(err.errno, describe(err))\n"
    )
    result = netns.run(
        "setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
        "env", f"PYTHONPATH={Path(wgpy.__file__).parents[1]}", sys.executable, "-c", script,
    )  # fmt: skip
    assert result.stdout.strip() == f"{errno.EPERM} wgtest0: not permitted (needs CAP_NET_ADMIN)"


# wgpy.io.udp


def test_port_zero_binds_all_addresses_of_both_families_on_one_port(inside: Namespace) -> None:
    sock4, sock6 = open_udp(0)
    assert sock4 is not None and sock6 is not None
    with sock4, sock6:
        host4, port4 = sock4.getsockname()
        host6, port6, *_ = sock6.getsockname()
        assert (host4, host6) == ("0.0.0.0", "::")
        assert port4 == port6 != 0
        assert sock6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_a_port_in_use_raises_eaddrinuse(inside: Namespace) -> None:
    first4, first6 = open_udp(0)
    assert first4 is not None and first6 is not None
    with first4, first6, pytest.raises(OSError) as raised:
        open_udp(first4.getsockname()[1])
    assert raised.value.errno == errno.EADDRINUSE


def test_a_port_in_use_for_ipv6_only_raises_eaddrinuse(inside: Namespace) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as squatter:
        squatter.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        squatter.bind(("::", 0))
        with pytest.raises(OSError) as raised:
            open_udp(squatter.getsockname()[1])
    assert raised.value.errno == errno.EADDRINUSE


def test_datagrams_to_either_family_arrive_with_the_senders_endpoint(inside: Namespace) -> None:
    sock4, sock6 = open_udp(0)
    assert sock4 is not None and sock6 is not None
    with sock4, sock6, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender6:
        port = sock4.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender4:
            sender4.sendto(b"over ipv4", ("127.0.0.1", port))
            data, endpoint = sock4.recvfrom(64)
            assert data == b"over ipv4"
            assert endpoint == ("127.0.0.1", sender4.getsockname()[1])
        sender6.sendto(b"over ipv6", ("::1", port))
        data, endpoint = sock6.recvfrom(64)
        assert data == b"over ipv6"
        assert endpoint[:2] == ("::1", sender6.getsockname()[1])


def test_fwmark_marks_both_sockets_and_zero_clears_it(inside: Namespace) -> None:
    sock4, sock6 = open_udp(0, fwmark=0xFFFF_FFFF)
    assert sock4 is not None and sock6 is not None
    with sock4, sock6:
        for sock in (sock4, sock6):
            assert _fwmark(sock) == 0xFFFF_FFFF
            set_fwmark(sock, 0)
            assert _fwmark(sock) == 0


def test_buffers_are_raised_beyond_the_sysctl_limit_with_cap_net_admin(inside: Namespace) -> None:
    sock4, sock6 = open_udp(0)
    assert sock4 is not None and sock6 is not None
    with sock4, sock6:
        for sock in (sock4, sock6):
            # The kernel doubles the size it is given, for its own bookkeeping (socket(7)).
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * SOCKET_BUFFER_SIZE
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * SOCKET_BUFFER_SIZE


# Helpers.


def _wireguard_go_peer(
    ns: Namespace, own: WgKeys, peer: WgKeys, peer_endpoint: str, addresses: tuple[str, str]
) -> str:
    """Start wireguard-go in `ns` with one peer and the tunnel `addresses`; return its name."""
    ifname = unique_ifname()
    start_wireguard_go(ns, ifname)
    wg_setconf(
        ns, ifname, one_peer_config(own.private, peer.public, TUNNEL_ALLOWED_IPS, peer_endpoint)
    )
    ip_up(ns, ifname, f"{addresses[0]}/24", f"{addresses[1]}/64")
    return ifname


def _latest_handshake(ns: Namespace, ifname: str) -> int:
    """Seconds since the epoch of the interface's only peer's last handshake, 0 for never."""
    _public_key, seconds = ns.run("wg", "show", ifname, "latest-handshakes").stdout.split()
    return int(seconds)


def _read_ipv4(tun: Tun, wanted: Callable[[IP], bool], timeout: float = 5.0) -> IP:
    """The first IPv4 packet from `tun` that `wanted` accepts; other packets are skipped."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([tun], [], [], left)[0]:
            packet = tun.read()
            if packet[0] >> 4 == 4 and wanted(parsed := IP(packet)):
                return parsed
    raise AssertionError(f"no wanted packet from {tun.name} within {timeout} s")


def _fwmark(sock: socket.socket) -> int:
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_MARK, 4), sys.byteorder)
