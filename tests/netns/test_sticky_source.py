"""Sticky sources against the kernel: datagrams to a peer leave from the address the peer wrote
to, and from the routing table's choice once that address has left the host (issue 15).

The responder's namespace has two addresses a family on its veth: the primary the routing table
picks for the initiator (198.18.0.2, fd00:1::2, on the initiator's subnet) and a secondary on a
second subnet of the link (198.19.0.2, fd00:3::2), which the initiator has as its endpoint. (On
one IPv6 subnet the kernel would pick the newer of the two.) A packet socket in the initiator's
namespace records the source of every datagram that arrives from the responder's port. First
the UDP edge alone (wgpy/io/pktinfo.py, udp_batches.py), then two wgpy daemons: the one-datagram
path is a ping, the UDP_SEGMENT path a TCP transfer from the responder.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest
from peers import (
    STANDING_IN,
    WG_PORT,
    WGPY,
    Family,
    Peer,
    cleaned_up,
    endpoint,
    make_peers,
    once_past,
    unless_standing_in,
)

from wgpy.core.endpoint import Endpoint, Local
from wgpy.io.pktinfo import local_address
from wgpy.io.udp import open_udp
from wgpy.io.udp_batches import UdpBatches
from wgpy.lab.netns import VETH, Namespace, can_ping, ip, transfer, veth_pair

pytestmark = pytest.mark.netns

FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6")
SECONDARY = {"ipv4": "198.19.0.2", "ipv6": "fd00:3::2"}
SECONDARY_SUBNET = {"ipv4": "198.19.0.0/24", "ipv6": "fd00:3::/64"}
TRANSFER_SIZE = 8 * 1024 * 1024
# Enough to span the address's deletion, a quarter of the way in.
DELETION_TRANSFER_SIZE = 16 * 1024 * 1024
# What no single datagram on the veth's 1500-byte MTU reaches: a UDP_SEGMENT send, uncut.
SUPER_DATAGRAM = 1500

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
IPPROTO_UDP = 17


class Arrivals:
    """The source address and size of every UDP datagram from port `port` that arrives in `ns`
    on its veth, recorded by a thread from a packet socket until closed."""

    def __init__(self, ns: Namespace, port: int = WG_PORT) -> None:
        with ns.entered():
            self._socket = socket.socket(
                socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL)
            )
        self._socket.bind((VETH, ETH_P_ALL))
        self._socket.settimeout(0.1)
        self._port = port
        self.seen: list[tuple[str, int]] = []
        self._open = True
        self._thread = threading.Thread(target=self._record)
        self._thread.start()

    def sources(self) -> set[str]:
        return {source for source, _ in self.seen}

    def largest(self) -> int:
        return max(size for _, size in self.seen)

    def _record(self) -> None:
        while self._open:
            try:
                packet, (_, protocol, kind, *_) = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            if kind != PACKET_OUTGOING:
                arrival = _udp_source(packet, protocol, self._port)
                if arrival is not None:
                    self.seen.append(arrival)

    def close(self) -> None:
        self._open = False
        self._thread.join()
        self._socket.close()

    def __enter__(self) -> Arrivals:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _udp_source(packet: bytes, protocol: int, port: int) -> tuple[str, int] | None:
    """The source address and size of an IP packet carrying UDP from `port`, or None."""
    if protocol == ETH_P_IP and packet[9] == IPPROTO_UDP:
        family, source, udp = socket.AF_INET, packet[12:16], (packet[0] & 0x0F) * 4
    elif protocol == ETH_P_IPV6 and packet[6] == IPPROTO_UDP:
        family, source, udp = socket.AF_INET6, packet[8:24], 40
    else:
        return None
    if int.from_bytes(packet[udp : udp + 2], "big") != port:
        return None
    return socket.inet_ntop(family, source), len(packet)


def primary(ns: Namespace, family: Family) -> str:
    return ns.ipv4 if family == "ipv4" else ns.ipv6


def add_secondary(host: Namespace, other: Namespace, family: Family) -> None:
    """The secondary address on `host`'s veth, which `other` reaches on-link."""
    nodad = ["nodad"] if family == "ipv6" else []
    ip("-n", host.name, "address", "add", secondary_cidr(family), "dev", VETH, *nodad)
    ip("-n", other.name, "route", "add", SECONDARY_SUBNET[family], "dev", VETH)


def delete_secondary(host: Namespace, family: Family) -> None:
    ip("-n", host.name, "address", "delete", secondary_cidr(family), "dev", VETH)


def secondary_cidr(family: Family) -> str:
    return f"{SECONDARY[family]}/{SECONDARY_SUBNET[family].split('/')[1]}"


# -- the UDP edge --------------------------------------------------------------------------------


class Edge(NamedTuple):
    family: Family
    host: Namespace  # with the secondary address
    sock: socket.socket  # the host's wgpy socket of `family`, as open_udp makes it
    remote: socket.socket  # a plain socket of `family` in the other namespace


@pytest.fixture(params=FAMILIES)
def edge(request: pytest.FixtureRequest) -> Iterator[Edge]:
    family: Family = request.param
    inet = socket.AF_INET if family == "ipv4" else socket.AF_INET6
    with veth_pair() as (other, host):
        add_secondary(host, other, family)
        with host.entered():
            sock4, sock6 = open_udp(0)
        with other.entered():
            remote = socket.socket(inet, socket.SOCK_DGRAM)
        assert sock4 is not None and sock6 is not None
        with sock4, sock6, remote:
            sock = sock4 if family == "ipv4" else sock6
            sock.settimeout(5)
            remote.settimeout(5)
            yield Edge(family, host, sock, remote)


def hello(edge: Edge) -> tuple[Endpoint, Local | None]:
    """A datagram from the remote socket to the secondary address: its source and local."""
    edge.remote.sendto(b"hello", (SECONDARY[edge.family], edge.sock.getsockname()[1]))
    datagrams, source, local = UdpBatches(gso=True, gro=False).receive_one(edge.sock)
    assert datagrams == [b"hello"]
    return source, local


def sources_of(edge: Edge, count: int) -> set[str]:
    """The source addresses of the next `count` datagrams the remote socket receives."""
    return {edge.remote.recvfrom(200)[1][0] for _ in range(count)}


def test_a_receive_reports_the_secondary_address_a_peer_wrote_to(edge: Edge) -> None:
    _, local = hello(edge)
    assert local is not None
    assert local_address(local) == SECONDARY[edge.family]


@pytest.mark.parametrize("count", [1, 5], ids=["one-datagram", "udp-segment"])
def test_a_send_leaves_from_the_address_a_peer_wrote_to(edge: Edge, count: int) -> None:
    source, local = hello(edge)
    assert UdpBatches(gso=True, gro=False).send(edge.sock, [bytes(100)] * count, source, local)
    assert sources_of(edge, count) == {SECONDARY[edge.family]}


@pytest.mark.parametrize("count", [1, 5], ids=["one-datagram", "udp-segment"])
def test_a_send_from_a_deleted_address_leaves_from_the_primary_and_says_so(
    edge: Edge, count: int
) -> None:
    source, local = hello(edge)
    delete_secondary(edge.host, edge.family)
    assert not UdpBatches(gso=True, gro=False).send(edge.sock, [bytes(100)] * count, source, local)
    assert sources_of(edge, count) == {primary(edge.host, edge.family)}


# -- two daemons -----------------------------------------------------------------------------------


@contextmanager
def writing_to_the_secondary(
    initiator_ns: Namespace, responder_ns: Namespace, family: Family
) -> Iterator[tuple[Peer, Peer]]:
    """Two wgpy daemons, the initiator's endpoint for the responder its secondary address."""
    add_secondary(responder_ns, initiator_ns, family)
    initiator, responder = make_peers((WGPY, WGPY), initiator_ns, responder_ns, outer=family)
    initiator.config = initiator.config.replace(
        endpoint(responder_ns, family), endpoint_text(SECONDARY[family])
    )
    with cleaned_up(initiator, responder):
        responder.start()
        initiator.start()
        yield initiator, responder


def endpoint_text(address: str) -> str:
    return str(Endpoint(address, WG_PORT))


def endpoints(initiator: Peer, responder: Peer) -> tuple[str, str]:
    """What `wg show` says each side's endpoint for the other is."""
    return (
        initiator.dump().peers[responder.keys.public].endpoint,
        responder.dump().peers[initiator.keys.public].endpoint,
    )


@pytest.mark.netns("wg", "ping")
@pytest.mark.parametrize("family", FAMILIES)
def test_every_reply_leaves_from_the_secondary_address_the_initiator_wrote_to(
    netns_pair: tuple[Namespace, Namespace], family: Family
) -> None:
    a, b = netns_pair
    with writing_to_the_secondary(a, b, family) as (initiator, responder), Arrivals(a) as arrivals:
        assert can_ping(a, responder.inner[0])  # the handshake, then one datagram each way
        moved = transfer(b, a, initiator.inner[0], TRANSFER_SIZE)
        shown = endpoints(initiator, responder)

    assert moved.intact
    assert arrivals.sources() == {SECONDARY[family]}
    # (wireguard-go 0.0.20220316, standing in, sends one datagram a system call.)
    assert STANDING_IN or arrivals.largest() > SUPER_DATAGRAM, "no UDP_SEGMENT in the transfer"
    assert shown == (endpoint_text(SECONDARY[family]), endpoint(a, family))


def ping_both_ways(initiator: Peer, responder: Peer, family: Family) -> None:
    """The secondary deleted, a ping from the responder, then one from the initiator, which
    could not reach the responder before the responder's datagrams showed where it is now."""
    delete_secondary(responder.ns, family)
    assert can_ping(responder.ns, initiator.inner[0])
    assert can_ping(initiator.ns, responder.inner[0])


def transfer_from_the_responder(initiator: Peer, responder: Peer, family: Family) -> None:
    """A TCP transfer from the responder (UDP_SEGMENT sends, as the first test shows), the
    secondary deleted a quarter of the way in."""
    deletion = once_past(0.25, lambda: delete_secondary(responder.ns, family))
    moved = transfer(
        responder.ns, initiator.ns, initiator.inner[0], DELETION_TRANSFER_SIZE, progress=deletion
    )
    assert moved.intact


@unless_standing_in("0.0.20220316 keeps an IPv4 source Linux refuses (ENETUNREACH)", strict=False)
@pytest.mark.netns("wg", "ping")
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "traffic", [ping_both_ways, transfer_from_the_responder], ids=["one-datagram", "udp-segment"]
)
def test_once_the_secondary_is_deleted_traffic_goes_on_from_the_primary(
    netns_pair: tuple[Namespace, Namespace],
    family: Family,
    traffic: Callable[[Peer, Peer, Family], None],
) -> None:
    a, b = netns_pair
    with writing_to_the_secondary(a, b, family) as (initiator, responder):
        assert can_ping(a, responder.inner[0])
        before = endpoints(initiator, responder)
        with Arrivals(a) as arrivals:
            traffic(initiator, responder, family)
        after = endpoints(initiator, responder)

    assert arrivals.sources() <= {SECONDARY[family], primary(b, family)}
    assert arrivals.seen[-1][0] == primary(b, family)
    assert before == (endpoint_text(SECONDARY[family]), endpoint(a, family))
    assert after == (endpoint(b, family), endpoint(a, family))
