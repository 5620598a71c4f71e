"""A peer's endpoint: the UDP address its datagrams come from and go to."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple


class Endpoint(NamedTuple):
    """An IP address and UDP port. `host` is bare text, without brackets, with an IPv6 zone after
    '%'; a config file's Endpoint may hold a host name until it is resolved.

    A tuple, so the socket module takes it as an address as it is (`sendto`, `connect`), and it
    equals and hashes as recvfrom's (host, port) does. `str()` writes it as wg does, IPv6 in
    brackets. The local address a datagram arrived on, when it is kept, goes beside the endpoint,
    not in it: a third element would no longer be an address the socket module takes.
    """

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# The local end of a peer's path: what the I/O edge saw of the address a datagram from the peer
# arrived on, in the form its sends take (wgpy/io/pktinfo.py: a control message, level, type
# and data). The core keeps it beside the endpoint and hands it back with every datagram to the
# peer, so replies leave from the address the peer wrote to; it never looks inside. None leaves
# the choice to the routing table.
Local = tuple[int, int, bytes]


def source_bytes(endpoint: tuple[str, int]) -> bytes:
    """An endpoint as the cookie MAC covers it (whitepaper 5.4.7): the address's bytes, then the
    port big-endian."""
    return ipaddress.ip_address(endpoint[0]).packed + endpoint[1].to_bytes(2, "big")
