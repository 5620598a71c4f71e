"""An interface moved into another network namespace, WireGuard's way of putting a container
behind a tunnel: created where the physical network is, then `ip link set wg0 netns container`.

Three namespaces, as wireguard-go's and the kernel's netns tests build them: both daemons start in
`middle`, where their UDP sockets stay, with endpoints on 127.0.0.1 or [::1] (loopback's MTU of
65536 lets UDP_SEGMENT and UDP_GRO carry super-datagrams); their interfaces are then moved into
`one` and `two`, which have no other way to reach each other.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import peers
import pytest
from peers import Family, Implementation, Peer

from wgpy.client import socket_path
from wgpy.core.constants import DEFAULT_MTU, TRANSPORT_MIN_SIZE
from wgpy.io.interface import HOUSEKEEPING_INTERVAL, Interface
from wgpy.io.tun import open_tun
from wgpy.io.udp_batches import datagrams_per_send
from wgpy.lab.netns import (
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    Namespace,
    can_ping,
    ip,
    ip_up,
    namespace,
    transfer,
    unique_ifname,
    wait_until,
    wg_genkey,
    wg_setconf,
)

pytestmark = pytest.mark.netns("wireguard-go", "wg", "ping", "iperf3", "ss", "setpriv")

TCP_BLOCK = 128 * 1024  # iperf3's default TCP write
GIB = 1 << 30
THREAD_NETNS = "/proc/thread-self/ns/net"
LOOPBACK: dict[Family, str] = {"ipv4": "127.0.0.1", "ipv6": "[::1]"}
PORTS = (peers.WG_PORT, peers.WG_PORT + 1)  # both daemons listen in `middle`
MOVED_MTU = 1280
# Two housekeeping ticks, and a little: one has surely come after what the test changed.
TWO_TICKS = 2.5 * HOUSEKEEPING_INTERVAL
TRANSFER_SIZE = 16 * 1024 * 1024

IPERF_PORT = 5201
# 1 GiB at a tenth of what wgpy carries on the machines measured (~1.5 Gbit/s).
IPERF_TIMEOUT = 60.0
# iperf3 sends UDP one datagram per system call, and wgpy carries those one by one: at this rate
# most arrive even on a busy machine (measured: 17% lost with the load of five test runs on two
# cores), where an unpaced sender loses 95% at its own TUN queue.
UDP_RATE = "500M"
UDP_MAX_LOSS_PERCENT = 50.0


class Lab(NamedTuple):
    middle: Namespace  # the daemons and their UDP sockets
    one: Namespace
    two: Namespace


@pytest.fixture
def lab() -> Iterator[Lab]:
    with namespace("wgmid") as middle, namespace("wgone") as one, namespace("wgtwo") as two:
        yield Lab(middle, one, two)


def move(ifname: str, source: Namespace, target: Namespace, *addresses: str) -> None:
    """Move `ifname` from `source` to `target` and bring it up there with `addresses`."""
    ip("-n", source.name, "link", "set", ifname, "netns", target.name)
    ip_up(target, ifname, *addresses)


def inner_addresses(peer: Peer) -> list[str]:
    return [f"{a}/{bits}" for a, bits in zip(peer.inner, peers.INNER_PREFIXES, strict=True)]


@contextmanager
def moved_tunnel(
    implementations: tuple[Implementation, Implementation], lab: Lab, outer: Family = "ipv4"
) -> Iterator[tuple[Peer, Peer]]:
    """Two peers serving in `lab.middle` on ports of their own, each the other's only peer over
    loopback, their interfaces moved into `lab.one` and `lab.two` and brought up there."""
    keys = (wg_genkey(), wg_genkey())
    pair = [
        Peer(lab.middle, implementation, unique_ifname(), own, inner)
        for implementation, own, inner in zip(implementations, keys, peers.INNER, strict=True)
    ]
    for peer, other, port, other_port in zip(pair, pair[::-1], PORTS, PORTS[::-1], strict=True):
        peer.config = (
            f"[Interface]\nPrivateKey = {peer.keys.private}\nListenPort = {port}\n\n"
            f"[Peer]\nPublicKey = {other.keys.public}\n"
            f"Endpoint = {LOOPBACK[outer]}:{other_port}\n"
            f"AllowedIPs = {other.inner[0]}/32, {other.inner[1]}/128\n"
        )
    with peers.cleaned_up(*pair):
        for peer, home in zip(pair, (lab.one, lab.two), strict=True):
            peer.process = peers.start_serving(lab.middle, peer.implementation, peer.ifname)
            wg_setconf(lab.middle, peer.ifname, peer.config)
            move(peer.ifname, lab.middle, home, *inner_addresses(peer))
        yield pair[0], pair[1]


@contextmanager
def moved_daemon(lab: Lab) -> Iterator[Peer]:
    """wgpy started in `lab.middle`, unconfigured, its interface moved into `lab.one`."""
    peer = Peer(lab.middle, peers.WGPY, unique_ifname(), wg_genkey(), peers.INNER[0])
    with peers.cleaned_up(peer):
        peer.process = peers.start_serving(lab.middle, peers.WGPY, peer.ifname)
        move(peer.ifname, lab.middle, lab.one)
        yield peer


def iperf3(client: Namespace, server: Namespace, address: str, *options: str) -> dict[str, Any]:
    """One iperf3 run from `client` to a one-off server on `address` in `server`: its report."""
    listener = server.popen(
        "iperf3", "-s", "-1", "-B", address, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    listening = f"{address}:{IPERF_PORT} "
    assert wait_until(lambda: listening in server.run("ss", "-Hltn").stdout, STARTUP_TIMEOUT)
    run = client.popen("iperf3", "-c", address, "-J", *options, stdout=subprocess.PIPE)
    output, _ = run.communicate(timeout=IPERF_TIMEOUT)
    server.stop(listener)
    report: dict[str, Any] = json.loads(output)
    assert "error" not in report, report["error"]
    return report


# Traffic through moved interfaces.


# Both outer endpoints of `middle`'s loopback, 127.0.0.1 and [::1]: every transfer runs over each.
OUTER_FAMILIES = pytest.mark.parametrize(
    "outer", ["ipv4", "ipv6"], ids=["ipv4-outer", "ipv6-outer"]
)


@pytest.mark.parametrize("implementations", peers.PAIRS)
@OUTER_FAMILIES
def test_moved_interfaces_carry_pings_and_a_checked_transfer_over_either_outer_family(
    lab: Lab, implementations: tuple[Implementation, Implementation], outer: Family
) -> None:
    with moved_tunnel(implementations, lab, outer) as (_, b):
        pinged = [can_ping(lab.one, address) for address in b.inner]
        result = transfer(lab.one, lab.two, b.inner[1], TRANSFER_SIZE)

    assert pinged == [True, True]
    assert result.intact


@pytest.mark.parametrize("implementations", peers.PAIRS)
@OUTER_FAMILIES
def test_moved_interfaces_carry_a_gibibyte_of_tcp_each_way_and_of_udp(
    lab: Lab, implementations: tuple[Implementation, Implementation], outer: Family
) -> None:
    with moved_tunnel(implementations, lab, outer) as (a, b):
        there = iperf3(lab.one, lab.two, b.inner[0], "-Z", "-n", "1G")
        back = iperf3(lab.one, lab.two, b.inner[0], "-Z", "-n", "1G", "-R")
        udp = iperf3(lab.one, lab.two, b.inner[0], "-u", "-b", UDP_RATE, "-n", "1G")
        # Asked through its configuration socket, which stayed in `middle`.
        sent_by_a = a.dump().peers[b.keys.public].tx_bytes
        alive = a.alive() and b.alive()

    for tcp in there["end"], back["end"]:
        # -n counts whole writes of iperf3's 128 KiB blocks: the last may go past the gibibyte.
        assert GIB <= tcp["sum_sent"]["bytes"] < GIB + 2 * TCP_BLOCK
        # The receiving iperf3 stops counting when told the sender is done, not at the last byte.
        assert tcp["sum_received"]["bytes"] > 0.99 * GIB
    assert udp["end"]["sum"]["bytes"] >= GIB
    assert udp["end"]["sum"]["lost_percent"] < UDP_MAX_LOSS_PERCENT
    assert sent_by_a > GIB
    assert alive


def test_an_interface_moved_back_where_its_daemon_runs_carries_traffic_again(lab: Lab) -> None:
    with moved_tunnel((peers.WGPY, peers.WGPY), lab) as (a, b):
        move(a.ifname, lab.one, lab.middle, *inner_addresses(a))
        result = transfer(lab.middle, lab.two, b.inner[0], TRANSFER_SIZE)
        pinged = can_ping(lab.middle, b.inner[1])

    assert result.intact
    assert pinged


def test_a_daemon_not_allowed_into_the_new_namespace_keeps_carrying_traffic(lab: Lab) -> None:
    # Root without CAP_SYS_ADMIN keeps CAP_NET_ADMIN, all a daemon needs, but may not enter
    # another namespace: once its interface is moved, it cannot look up the MTU any more.
    confined = Implementation(
        "wgpy without CAP_SYS_ADMIN",
        ("setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", *peers.WGPY.command),
    )
    with moved_tunnel((confined, peers.WGPY), lab) as (a, b):
        time.sleep(TWO_TICKS)
        pinged = can_ping(lab.one, b.inner[0])
        alive = a.alive()

    assert pinged
    assert alive


# The end of a moved interface.


def delete_the_interface(lab: Lab, ifname: str) -> None:
    ip("-n", lab.one.name, "link", "delete", ifname)


def delete_its_namespace(lab: Lab, ifname: str) -> None:
    lab.one.delete()  # the interface goes with it


@pytest.mark.parametrize("delete", [delete_the_interface, delete_its_namespace])
def test_a_daemon_outlives_the_move_of_its_interface_and_ends_cleanly_with_it(
    lab: Lab, delete: Callable[[Lab, str], None]
) -> None:
    with moved_daemon(lab) as peer:
        time.sleep(TWO_TICKS)
        survived_the_move = peer.alive()
        delete(lab, peer.ifname)
        ended = wait_until(lambda: not peer.alive(), STOP_TIMEOUT)

    assert survived_the_move
    assert ended
    assert peer.process is not None and peer.process.returncode == 0
    assert not peer.uapi_socket.exists()


# What is learnt about a moved interface, in-process.


def test_a_tun_reads_the_name_and_mtu_its_interface_has_in_the_namespace_it_was_moved_to(
    lab: Lab,
) -> None:
    with lab.middle.entered(), open_tun(unique_ifname()) as tun:
        own_namespace = os.stat(THREAD_NETNS).st_ino
        moved_name = unique_ifname("moved")
        rename = ("name", moved_name)
        ip("-n", lab.middle.name, "link", "set", tun.name, "netns", lab.one.name, *rename)
        ip("-n", lab.one.name, "link", "set", moved_name, "mtu", str(MOVED_MTU))

        assert tun.current_name() == moved_name
        assert tun.mtu() == MOVED_MTU
        assert tun.exists()
        assert os.stat(THREAD_NETNS).st_ino == own_namespace  # another thread went there


def moved_and_given_a_new_mtu(lab: Lab) -> tuple[Interface, str]:
    """An interface made in the middle namespace, moved to the first, given MOVED_MTU there and
    served for two ticks, then closed; with its `ip -d link` details from before the close."""
    with lab.middle.entered():
        interface = Interface(open_tun(unique_ifname()))
    try:
        move(interface.name, lab.middle, lab.one)
        ip("-n", lab.one.name, "link", "set", interface.name, "mtu", str(MOVED_MTU))
        serve_for(interface, TWO_TICKS)
        link = lab.one.run("ip", "-d", "link", "show", interface.name).stdout
    finally:
        interface.close()
    return interface, link


def test_the_device_takes_the_mtu_its_moved_interface_has_now(lab: Lab) -> None:
    interface, _ = moved_and_given_a_new_mtu(lab)

    assert interface.device.mtu == MOVED_MTU


def test_a_moved_interface_s_super_packets_fit_one_send_at_the_mtu_it_has_now(lab: Lab) -> None:
    _, link = moved_and_given_a_new_mtu(lab)

    assert f"gso_max_segs {datagrams_per_send(MOVED_MTU + TRANSPORT_MIN_SIZE)} " in link


def test_a_failing_mtu_lookup_is_logged_once_and_keeps_the_mtu_known_last(
    netns: Namespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="wgpy")
    with netns.entered():
        interface = Interface(open_tun(unique_ifname()))
    try:

        def lookup_fails() -> int:
            raise OSError(errno.ENODEV, "no such interface")

        monkeypatch.setattr(interface.tun, "mtu", lookup_fails)
        serve_for(interface, 2 * TWO_TICKS)
    finally:
        interface.close()

    assert caplog.text.count("MTU lookup failed") == 1
    assert interface.device.mtu == DEFAULT_MTU


def serve_for(interface: Interface, seconds: float) -> None:
    """Run the interface's loop for `seconds` (in this, the main thread: it takes signals)."""
    stopper = threading.Timer(seconds, interface.stop)
    stopper.start()
    try:
        interface.run()
    finally:
        stopper.cancel()


# The daemon's log.

FAILING_LOOP = (
    "import sys\n"
    "from wgpy.cli import daemon\n"
    "from wgpy.io.interface import Interface\n"
    "def fail(self):\n"
    "    raise RuntimeError('a bug in the loop')\n"
    "Interface.run = fail\n"
    "sys.exit(daemon.run(sys.argv[1:]))\n"
)


def test_a_daemon_that_fails_in_the_background_leaves_the_traceback_in_its_log(
    netns: Namespace,
) -> None:
    ifname = unique_ifname()
    result = netns.run("env", "LOG_LEVEL=error", sys.executable, "-c", FAILING_LOOP, ifname)

    assert result.returncode == 0  # it started, then failed in the background
    assert "RuntimeError: a bug in the loop" in result.stderr
    assert not socket_path(ifname).exists()
