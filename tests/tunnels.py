"""Pairs of wgpy.tunnel.Tunnel in one process, peers of each other over 127.0.0.1: the rootless
path end to end with no root, no TUN and no namespace. Shared by the unit tests of the tunnel
and, later, of the proxy on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import dns.rcode
import dns.rrset

from wgpy import tunnel
from wgpy.core.keys import generate_private_key, public_key, to_base64

# Tunnel addresses: RFC 2544's benchmarking range and the unique-local range, never routed.
A4, A6 = "198.18.17.1", "fd00:17::1"
B4, B6 = "198.18.17.2", "fd00:17::2"


def config_text(
    private: bytes, address: tuple[str, str], peer: bytes, allowed: tuple[str, str], *,
    endpoint: str | None = None, dns_server: str | None = None, extra: str = "",
) -> str:  # fmt: skip
    lines = [
        "[Interface]",
        f"PrivateKey = {to_base64(private)}",
        f"Address = {address[0]}/32, {address[1]}/128",
        *([f"DNS = {dns_server}"] if dns_server else []),
        extra,
        "[Peer]",
        f"PublicKey = {to_base64(public_key(peer))}",
        f"AllowedIPs = {allowed[0]}/32, {allowed[1]}/128",
        *([f"Endpoint = {endpoint}"] if endpoint else []),
    ]
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def tunnel_pair(
    *, dns_on_b: bool = False, name_a: str | None = None
) -> AsyncIterator[tuple[tunnel.Tunnel, tunnel.Tunnel]]:
    """Tunnels A and B, peers of each other; A knows B's endpoint and starts the handshake.
    With `dns_on_b`, A's DNS = is B's tunnel address (serve a DnsZone there on port 53). With
    `name_a`, A serves its configuration socket under that name."""
    key_a, key_b = generate_private_key(os.urandom), generate_private_key(os.urandom)
    b = tunnel.open(config_text(key_b, (B4, B6), key_a, (A4, A6)))
    async with b:
        a = tunnel.open(
            config_text(
                key_a, (A4, A6), key_b, (B4, B6),
                endpoint=f"127.0.0.1:{b.listen_port}", dns_server=B4 if dns_on_b else None,
            ),
            name=name_a,
        )  # fmt: skip
        async with a:
            yield a, b


class UdpEcho(asyncio.DatagramProtocol):
    """Sends every datagram back where it came from."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class Collect(asyncio.DatagramProtocol):
    """Keeps what arrives, datagrams and errors alike, in one queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]] | Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.queue.put_nowait(exc)


class DnsZone(asyncio.DatagramProtocol):
    """A tiny authoritative server: `records` maps a name to its addresses; others NXDOMAIN."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        (question,) = query.question
        name = question.name.to_text(omit_final_dot=True)
        if name not in self.records:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        kind = "AAAA" if question.rdtype == 28 else "A"
        found = [a for a in self.records.get(name, []) if (":" in a) == (kind == "AAAA")]
        if found:
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", kind, *found))
        self.transport.sendto(reply.to_wire(), addr)
