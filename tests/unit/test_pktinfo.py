"""Sticky sources, the edge's half (wgpy/io/pktinfo.py): the control message a receive reports
becomes the one every send to the peer carries. Against the kernel in
tests/netns/test_sticky_source.py."""

from __future__ import annotations

import socket
import struct

from wgpy.io.pktinfo import IP_PKTINFO, local_address, local_in
from wgpy.io.udp_batches import SOL_UDP, UDP_GRO

GRO = (SOL_UDP, UDP_GRO, struct.pack("=i", 1400))


def in_pktinfo(ifindex: int, spec_dst: str, addr: str) -> bytes:
    return struct.pack("=i4s4s", ifindex, socket.inet_aton(spec_dst), socket.inet_aton(addr))


def in6_pktinfo(addr: str, ifindex: int) -> bytes:
    return struct.pack("=16sI", socket.inet_pton(socket.AF_INET6, addr), ifindex)


def test_an_ipv4_send_leaves_from_the_local_address_received_on_through_any_interface() -> None:
    received = (socket.IPPROTO_IP, IP_PKTINFO, in_pktinfo(7, "198.18.0.3", "198.18.0.3"))
    local = local_in([GRO, received])
    assert local == (socket.IPPROTO_IP, IP_PKTINFO, in_pktinfo(0, "198.18.0.3", "198.18.0.3"))
    assert local_address(local) == "198.18.0.3"


def test_an_ipv6_send_leaves_from_the_address_received_on_through_any_interface() -> None:
    received = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, in6_pktinfo("fd00:1::3", 7))
    local = local_in([received, GRO])
    assert local == (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, in6_pktinfo("fd00:1::3", 0))
    assert local_address(local) == "fd00:1::3"


def test_an_ipv4_send_leaves_from_the_local_address_not_the_broadcast_one_written_to() -> None:
    received = (socket.IPPROTO_IP, IP_PKTINFO, in_pktinfo(7, "198.18.0.3", "198.18.0.255"))
    local = local_in([received])
    assert local is not None
    assert local_address(local) == "198.18.0.3"


def test_a_receive_that_reports_no_address_leaves_the_source_to_the_routing_table() -> None:
    assert local_in([]) is None
    assert local_in([GRO]) is None
