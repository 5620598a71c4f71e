"""The stack alone, packets in and out as the tunnel hands them over, checked with scapy's
independent parsers: UDP sockets, ICMP and ICMPv6 echo, port unreachable for closed ports, ICMP
errors back to the socket, and garbage dropped and counted by reason, never raised."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
)
from scapy.packet import Raw

from wgpy.netstack.drops import Drop
from wgpy.netstack.stack import EchoReplied, Stack

US4, US6 = "198.18.0.1", "fd00::1"
PEER4, PEER6 = "198.18.0.2", "fd00::2"
NOW = 100.0


def new_stack() -> Stack:
    return Stack([f"{US4}/32", f"{US6}/128"], mtu=1420, rng=random.Random(17))


def sent(stack: Stack) -> list[bytes]:
    return stack.packets_to_send(NOW)


def test_a_udp_datagram_reaches_the_bound_socket_and_the_answer_goes_back() -> None:
    stack = new_stack()
    socket = stack.udp_bind(5300)
    stack.receive(bytes(IP(src=PEER4, dst=US4) / UDP(sport=4000, dport=5300) / b"ask"), NOW)

    assert stack.events() == [socket]
    data, source = socket.recvfrom() or (b"", ("", 0))
    assert (data, source) == (b"ask", (PEER4, 4000))
    socket.sendto(b"answer", source)
    (packet,) = sent(stack)
    # Byte for byte what scapy builds, both checksums computed from scratch.
    fresh = IP(src=US4, dst=PEER4, id=0, flags="DF") / UDP(sport=5300, dport=4000) / b"answer"
    assert packet == bytes(fresh)


def test_udp_over_ipv6_carries_a_checksum_scapy_accepts() -> None:
    stack = new_stack()
    socket = stack.udp_bind()
    socket.sendto(b"six", (PEER6, 53))
    (packet,) = sent(stack)
    fresh = IPv6(src=US6, dst=PEER6) / UDP(sport=socket.port, dport=53) / b"six"
    assert packet == bytes(fresh)


def test_an_ephemeral_port_is_in_the_dynamic_range_and_a_taken_port_is_refused() -> None:
    stack = new_stack()
    socket = stack.udp_bind()
    assert 49152 <= socket.port <= 65535
    with pytest.raises(OSError, match="in use"):
        stack.udp_bind(socket.port)
    stack.udp_close(socket)
    assert stack.udp_bind(socket.port).port == socket.port


@pytest.mark.parametrize(
    ("offending", "expected_error"),
    [
        (
            IP(src=PEER4, dst=US4) / UDP(sport=4000, dport=9) / b"anyone?",
            IP(src=US4, dst=PEER4, id=0, flags="DF") / ICMP(type=3, code=3),
        ),
        (
            IPv6(src=PEER6, dst=US6) / UDP(sport=4000, dport=9) / b"anyone?",
            IPv6(src=US6, dst=PEER6) / ICMPv6DestUnreach(code=4),
        ),
    ],
    ids=["ipv4", "ipv6"],
)
def test_a_closed_udp_port_is_answered_with_port_unreachable_quoting_the_datagram(
    offending: IP, expected_error: IP
) -> None:
    stack = new_stack()
    stack.receive(bytes(offending), NOW)
    # Byte for byte what scapy builds: the error, its checksum, and the whole datagram quoted.
    assert sent(stack) == [bytes(expected_error / offending)]
    assert stack.drops == {Drop.UDP_PORT_CLOSED: 1}


def test_icmp_errors_are_rate_limited_like_linux() -> None:
    stack = new_stack()
    flood = [bytes(IP(src=PEER4, dst=US4) / UDP(sport=4000, dport=9)) for _ in range(200)]
    for packet in flood:
        stack.receive(packet, NOW)
    errors = len(sent(stack))
    assert errors < len(flood)
    assert stack.drops[Drop.ICMP_RATE_LIMITED] == len(flood) - errors
    stack.receive(flood[0], NOW + 1.0)  # A second later the bucket has refilled.
    assert len(sent(stack)) == 1


@pytest.mark.parametrize(
    ("request_", "reply_type"),
    [
        (IP(src=PEER4, dst=US4) / ICMP(type=8, id=7, seq=3) / b"ping", ICMP),
        (IPv6(src=PEER6, dst=US6) / ICMPv6EchoRequest(id=7, seq=3, data=b"ping"), ICMPv6EchoReply),
    ],
    ids=["ipv4", "ipv6"],
)
def test_an_echo_request_to_our_address_is_answered(request_: IP, reply_type: type) -> None:
    stack = new_stack()
    stack.receive(bytes(request_), NOW)
    (packet,) = sent(stack)
    reply = (IP if request_.version == 4 else IPv6)(packet)
    assert (reply.src, reply.dst) == (request_.dst, request_.src)
    expected = (
        IP(src=request_.dst, dst=request_.src) / ICMP(type=0, id=7, seq=3) / b"ping"
        if request_.version == 4
        else IPv6(src=request_.dst, dst=request_.src) / ICMPv6EchoReply(id=7, seq=3, data=b"ping")
    )
    assert bytes(reply[reply_type]) == bytes((type(expected)(bytes(expected)))[reply_type])


def test_a_ping_sends_an_echo_request_and_its_reply_is_an_event() -> None:
    stack = new_stack()
    stack.ping(PEER6, identifier=9, sequence=1, payload=b"x" * 8)
    (packet,) = sent(stack)
    request = IPv6(packet)
    assert (request[ICMPv6EchoRequest].id, request[ICMPv6EchoRequest].seq) == (9, 1)
    answer = IPv6(src=PEER6, dst=US6) / ICMPv6EchoReply(id=9, seq=1, data=b"x" * 8)
    stack.receive(bytes(answer), NOW)
    assert stack.events() == [EchoReplied(PEER6, 9, 1, b"x" * 8)]


def test_a_port_unreachable_for_a_datagram_we_sent_reaches_its_socket_as_refused() -> None:
    stack = new_stack()
    socket = stack.udp_bind()
    socket.sendto(b"hello", (PEER4, 7))
    (ours,) = sent(stack)
    answer = IP(src=PEER4, dst=US4) / ICMP(type=3, code=3) / IPerror(ours[:28])
    stack.receive(bytes(answer), NOW)

    assert stack.events() == [socket]
    (error,) = socket.errors
    assert error.remote == (PEER4, 7) and error.refused


def test_an_icmp_error_quoting_nothing_of_ours_is_dropped_and_counted() -> None:
    stack = new_stack()
    stranger = IP(src=US4, dst=PEER4) / UDPerror(sport=1234, dport=7)
    stack.receive(bytes(IP(src=PEER4, dst=US4) / ICMP(type=3, code=3) / stranger), NOW)
    assert stack.drops[Drop.ICMP_ERROR_UNMATCHED] == 1
    assert not stack.events() and not sent(stack)


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"", Drop.TRUNCATED_IP),
        (b"\x45" + bytes(10), Drop.TRUNCATED_IP),
        (bytes(IP(src=PEER4, dst=US4, chksum=1) / UDP()), Drop.BAD_IP_CHECKSUM),
        (bytes(IP(src=PEER4, dst=US4, flags="MF") / UDP()), Drop.FRAGMENT),
        (bytes(IP(src=PEER4, dst=PEER4) / UDP()), Drop.NOT_OUR_ADDRESS),
        (bytes(IP(src=PEER4, dst=US4, proto=47) / b"gre"), Drop.UNKNOWN_PROTOCOL),
        (bytes(IP(src=PEER4, dst=US4) / UDP(dport=9, chksum=1)), Drop.BAD_UDP_CHECKSUM),
        (bytes(IP(src=PEER4, dst=US4, proto=17) / b"\0\0"), Drop.TRUNCATED_UDP),
        (bytes(IP(src=PEER4, dst=US4) / ICMP(type=8, chksum=1)), Drop.BAD_ICMP_CHECKSUM),
        (bytes(IP(src=PEER4, dst=US4) / ICMP(type=13)), Drop.ICMP_IGNORED),
        (b"\x75" + bytes(40), Drop.BAD_IP_VERSION),
    ],
)
def test_a_packet_the_stack_cannot_use_is_dropped_by_reason(packet: bytes, reason: Drop) -> None:
    stack = new_stack()
    stack.receive(packet, NOW)
    assert stack.drops == {reason: 1}
    assert not sent(stack) and not stack.events()


@given(st.binary(max_size=120))
def test_any_bytes_from_the_tunnel_are_dropped_or_used_never_raised(data: bytes) -> None:
    stack = new_stack()
    stack.udp_bind(5300)
    for packet in (data, bytes(IP(src=PEER4, dst=US4, proto=17) / Raw(data)),
                   bytes(IPv6(src=PEER6, dst=US6, nh=58) / Raw(data))):  # fmt: skip
        stack.receive(packet, NOW)
    assert sum(stack.drops.values()) + len(sent(stack)) + len(stack.events()) >= 1
