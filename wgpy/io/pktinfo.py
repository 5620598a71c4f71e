"""Sticky sources: datagrams to a peer leave from the address the peer's datagrams arrived on.

On a host with several addresses the routing table picks one source for every reply, and a peer
that wrote to another (a secondary address; or through NAT or a strict firewall, which match the
reply to what went out) drops the answer. As the kernel's drivers/net/wireguard/socket.c and
wireguard-go's conn/sticky_linux.go do, each socket reports the address every datagram arrived
on (IP_PKTINFO, IPV6_RECVPKTINFO), the device keeps it beside the peer's endpoint
(wgpy.core.endpoint.Local), and every send to the peer names it as the source in a control
message of the same kind. Once the address has left the host such a send fails: the datagrams go
again without it, and the next datagram from the peer teaches the address to use.

Facts from ip(7), ipv6(7), include/uapi/linux/in.h and in6.h, net/ipv4/ip_sockglue.c
(ip_cmsg_send) and net/ipv6/datagram.c (ip6_datagram_send_ctl).
"""

from __future__ import annotations

import errno
import socket
from typing import Final

from wgpy.core.endpoint import Local

IP_PKTINFO: Final = 8  # not in Python 3.11's socket module
# The control messages' data: struct in_pktinfo is ipi_ifindex, ipi_spec_dst (the local
# address), ipi_addr (the header's destination); struct in6_pktinfo is ipi6_addr, ipi6_ifindex.
IN_PKTINFO_SIZE: Final = 12
IN6_PKTINFO_SIZE: Final = 20
_ANY_INTERFACE: Final = bytes(4)

# What sendmsg raises when the source a control message names is no longer the host's: IPv4's
# route lookup fails with ENETUNREACH, IPv6's check of the message with EINVAL (as measured on
# Linux 6.x); EADDRNOTAVAIL and ENODEV (a vanished interface) are the other ways to say so.
SOURCE_GONE: Final = frozenset({errno.ENETUNREACH, errno.EINVAL, errno.EADDRNOTAVAIL, errno.ENODEV})


def enable(sock: socket.socket) -> None:
    """Have `sock` report with every datagram the address it arrived on."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def local_in(control: list[tuple[int, int, bytes]]) -> Local | None:
    """The control message that sends from the address a receive's `control` reports, or None
    when it reports none.

    The message names the address alone, with no interface: a send bound to an interface leaves
    through it even after the routes have moved the peer elsewhere (IPv4 then takes the peer for
    on-link there), while the address alone leaves the way to the routing table, as the kernel's
    WireGuard does. For IPv4 it is ipi_spec_dst, the local address, which ip_cmsg_send takes as
    the source (ipi_addr is the header's destination, which may be a broadcast address).
    """
    for level, kind, data in control:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= IN_PKTINFO_SIZE:
            return level, kind, _ANY_INTERFACE + data[4:IN_PKTINFO_SIZE]
        if (
            level == socket.IPPROTO_IPV6
            and kind == socket.IPV6_PKTINFO
            and len(data) >= IN6_PKTINFO_SIZE
        ):
            return level, kind, data[:16] + _ANY_INTERFACE
    return None


def local_address(local: Local) -> str:
    """The address `local` sends from, as text."""
    level, _, data = local
    if level == socket.IPPROTO_IPV6:
        return socket.inet_ntop(socket.AF_INET6, data[:16])
    return socket.inet_ntop(socket.AF_INET, data[4:8])
