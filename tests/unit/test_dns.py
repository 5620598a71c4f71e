"""The DNS stub resolver (wgpy.netstack.dns): a lookup asks A and AAAA, retransmits on a doubling
deadline across servers, accepts only answers that match a question in flight, and never raises
on what the network sends."""

from __future__ import annotations

import asyncio
import random

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from wgpy.netstack.dns import DropReason, Failed, Resolved, StubResolver
from wgpy.proxy.resolve import ResolutionFailed, resolve

SERVERS = ["192.0.2.53", "fd00::53"]
FIRST, SECOND = ("192.0.2.53", 53), ("fd00::53", 53)
RECORDS = {"A": ["198.18.0.7", "198.18.0.8"], "AAAA": ["fd00::7"]}


def answer(query: bytes, records: dict[str, list[str]] = RECORDS, rcode: int = 0) -> bytes:
    """What a server answers to `query` from `records`, by type."""
    request = dns.message.from_wire(query)
    response = dns.message.make_response(request)
    response.set_rcode(rcode)
    question = request.question[0]
    addresses = records.get(dns.rdatatype.to_text(question.rdtype), [])
    if addresses and rcode == dns.rcode.NOERROR:
        rdtype = dns.rdatatype.to_text(question.rdtype)
        response.answer.append(dns.rrset.from_text(question.name, 60, "IN", rdtype, *addresses))
    return response.to_wire()


def assert_resolved(events: list[Resolved | Failed], lookup: int) -> None:
    """One Resolved for `lookup`: RECORDS' IPv4 addresses (in any order, as DNS keeps them),
    then its IPv6 ones."""
    assert len(events) == 1 and isinstance(events[0], Resolved)
    assert events[0].lookup == lookup
    ipv4 = len(RECORDS["A"])
    assert sorted(events[0].addresses[:ipv4]) == RECORDS["A"]
    assert events[0].addresses[ipv4:] == RECORDS["AAAA"]


def started(name: str = "svc.example.") -> tuple[StubResolver, int]:
    resolver = StubResolver(SERVERS, random.Random(17), first_timeout=1.0, rounds=2)
    return resolver, resolver.query(name, now=0.0)


def test_a_lookup_asks_a_and_aaaa_of_the_first_server_and_resolves_both() -> None:
    resolver, lookup = started()
    sent = resolver.datagrams_to_send()
    types = sorted(dns.message.from_wire(d).question[0].rdtype for d, _ in sent)
    assert types == sorted([dns.rdatatype.A, dns.rdatatype.AAAA])
    assert {server for _, server in sent} == {FIRST}
    for query, server in sent:
        resolver.receive(answer(query), server, now=0.1)
    assert_resolved(resolver.events(), lookup)
    assert resolver.next_deadline() is None


def test_silence_moves_to_the_next_server_with_a_doubling_timeout() -> None:
    resolver, _ = started()
    resolver.datagrams_to_send()
    assert resolver.next_deadline() == 1.0
    resolver.handle_timer(1.0)
    assert {server for _, server in resolver.datagrams_to_send()} == {SECOND}
    assert resolver.next_deadline() == 2.0
    resolver.handle_timer(2.0)
    assert {server for _, server in resolver.datagrams_to_send()} == {FIRST}
    assert resolver.next_deadline() == 4.0  # the second round waits twice as long


def test_a_lookup_fails_when_every_attempt_times_out() -> None:
    resolver, lookup = started()
    while (deadline := resolver.next_deadline()) is not None:
        resolver.handle_timer(deadline)
    events = resolver.events()
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert events[0].lookup == lookup
    assert len(resolver.datagrams_to_send()) == 2 * 2 * len(SERVERS)  # 2 types, 2 rounds


def test_answers_from_elsewhere_or_to_other_questions_are_dropped() -> None:
    resolver, _ = started()
    query, server = resolver.datagrams_to_send()[0]
    reply = bytearray(answer(query))
    resolver.receive(bytes(reply), ("198.18.9.9", 53), now=0.1)  # a server never asked
    wrong_id = bytes([reply[0] ^ 0xFF, reply[1]]) + bytes(reply[2:])
    resolver.receive(wrong_id, server, now=0.1)
    other = dns.message.make_response(dns.message.make_query("other.example.", "A"))
    other.id = dns.message.from_wire(query).id
    resolver.receive(other.to_wire(), server, now=0.1)
    assert resolver.drops[DropReason.UNEXPECTED] == 3
    assert resolver.events() == []


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"\xff" * 12, bytes(range(256)) * 20])
def test_garbage_is_dropped_as_malformed_never_raised(garbage: bytes) -> None:
    resolver, _ = started()
    resolver.receive(garbage, FIRST, now=0.1)
    assert resolver.drops[DropReason.MALFORMED] == 1
    assert resolver.events() == []


def test_a_name_that_does_not_exist_resolves_to_no_address() -> None:
    resolver, lookup = started()
    for query, server in resolver.datagrams_to_send():
        resolver.receive(answer(query, rcode=dns.rcode.NXDOMAIN), server, now=0.1)
    assert resolver.events() == [Resolved(lookup, "svc.example.", [])]


def test_a_server_failure_asks_the_next_server_at_once() -> None:
    resolver, lookup = started()
    for query, server in resolver.datagrams_to_send():
        resolver.receive(answer(query, rcode=dns.rcode.SERVFAIL), server, now=0.1)
    resolver.handle_timer(0.1)
    retried = resolver.datagrams_to_send()
    assert {server for _, server in retried} == {SECOND}
    for query, server in retried:
        resolver.receive(answer(query), server, now=0.2)
    assert_resolved(resolver.events(), lookup)


def test_a_cname_chain_ends_at_the_addresses() -> None:
    resolver, lookup = started("www.example.")
    for query, server in resolver.datagrams_to_send():
        request = dns.message.from_wire(query)
        response = dns.message.make_response(request)
        response.answer.append(dns.rrset.from_text("www.example.", 60, "IN", "CNAME", "svc."))
        if request.question[0].rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text("svc.", 60, "IN", "A", "198.18.0.9"))
        resolver.receive(response.to_wire(), server, now=0.1)
    assert resolver.events() == [Resolved(lookup, "www.example.", ["198.18.0.9"])]


def test_a_name_dns_cannot_carry_is_a_value_error() -> None:
    resolver, _ = started()
    with pytest.raises(ValueError, match="no DNS name"):
        resolver.query("a" * 64 + ".example.", now=0.0)


# The asyncio helper, over a network whose datagram endpoints answer in memory --------------------


class _AnsweringTransport(asyncio.DatagramTransport):
    def __init__(self, protocol: asyncio.DatagramProtocol, server: tuple[str, int], silent: bool):
        super().__init__()
        self.protocol, self.server, self.silent = protocol, server, silent

    def sendto(self, data: bytes, addr: object = None) -> None:  # type: ignore[override]
        if not self.silent:
            reply = answer(data)
            asyncio.get_running_loop().call_soon(
                self.protocol.datagram_received, reply, self.server
            )

    def close(self) -> None:
        pass


class _DnsNetwork:
    def __init__(self, silent: set[tuple[str, int]]) -> None:
        self.silent = silent

    async def create_datagram_endpoint(self, protocol_factory, local_addr=None, remote_addr=None):  # type: ignore[no-untyped-def]
        protocol = protocol_factory()
        return _AnsweringTransport(protocol, remote_addr, remote_addr in self.silent), protocol


def test_resolve_runs_the_stub_over_a_networks_datagrams() -> None:
    network = _DnsNetwork(silent={FIRST})
    addresses = asyncio.run(
        resolve(network, SERVERS, "svc.example.", first_timeout=0.01)  # type: ignore[arg-type]
    )
    assert sorted(addresses) == sorted(RECORDS["A"] + RECORDS["AAAA"])


def test_resolve_raises_resolution_failed_when_no_server_answers() -> None:
    network = _DnsNetwork(silent={FIRST, SECOND})

    async def attempt() -> list[str]:
        return await resolve(network, SERVERS[:1], "svc.example.", first_timeout=0.01)  # type: ignore[arg-type]

    with pytest.raises(ResolutionFailed, match="no answer"):
        asyncio.run(attempt())
