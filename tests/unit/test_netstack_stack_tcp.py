"""The stack's TCP: two stacks joined by an in-memory link under a fake clock (a connection's
own behaviour is tests/unit/test_netstack_tcp*.py's). Handshakes both ways over both families,
data through the demultiplexer, refusals by RST and by ICMP, the SYN-flood bound, and segments
for no connection answered with RFC 9293's reset."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, IPerror
from scapy.layers.inet6 import IPv6

from wgpy.io.vnet import segment
from wgpy.netstack import ip, tcp_segment
from wgpy.netstack.drops import Drop
from wgpy.netstack.stack import SYN_BACKLOG, Listener, Stack
from wgpy.netstack.tcp import TcpConnection, TcpDrop, TcpEvent, TcpState
from wgpy.netstack.tcp_segment import Flags, TcpSegment

A4, A6 = "198.18.0.1", "fd00::1"
B4, B6 = "198.18.0.2", "fd00::2"


class Link:
    """Two stacks and a clock: `settle` moves packets until both are quiet, running timers."""

    def __init__(self, **a_options: Any) -> None:
        self.a = Stack([A4, A6], mtu=1420, rng=random.Random(1), **a_options)
        self.b = Stack([B4, B6], mtu=1420, rng=random.Random(2))
        self.now = 0.0
        self.carried = 0

    def settle(self, until: float | None = None) -> None:
        while True:
            moved = False
            for sender, receiver in ((self.a, self.b), (self.b, self.a)):
                for packet in sender.packets_to_send(self.now):
                    receiver.receive(packet, self.now)
                    moved = True
                    self.carried += 1
            if moved:
                continue
            deadlines = [d for d in (self.a.next_deadline(), self.b.next_deadline()) if d]
            if until is None or not deadlines or min(deadlines) > until:
                return
            self.now = max(self.now, min(deadlines))
            self.a.handle_timer(self.now)
            self.b.handle_timer(self.now)


def accepted(listener: Listener) -> TcpConnection:
    conn = listener.accept()
    assert conn is not None, "nothing to accept"
    return conn


@pytest.mark.parametrize("remote", [B4, B6], ids=["ipv4", "ipv6"])
def test_a_connection_opens_carries_bytes_both_ways_and_closes(remote: str) -> None:
    link = Link()
    listener = link.b.tcp_listen(80)
    client = link.a.tcp_connect(remote, 80, link.now)
    link.settle()
    server = accepted(listener)
    assert client.state is server.state is TcpState.ESTABLISHED
    assert TcpEvent.ESTABLISHED in client.events()
    assert (server.remote, server.local) == (client.local, client.remote)

    request, response = b"GET / HTTP/1.0\r\n\r\n", random.Random(0).randbytes(200_000)
    client.send(request)
    link.a.wake(client)
    link.settle(until=link.now + 1)
    assert server.receive_data(1 << 20) == request
    received = bytearray()
    while len(received) < len(response):
        taken = server.send(response[len(received) :][:65536]) if server.send_space else 0
        link.b.wake(server)
        link.settle(until=link.now + 1)
        received += client.receive_data(1 << 20)
        link.a.wake(client)
        response_left = response[len(received) :]
        assert taken or response_left
    assert bytes(received) == response

    client.close()
    link.a.wake(client)
    server.close()
    link.b.wake(server)
    link.settle(until=link.now + 300)  # past TIME_WAIT
    assert link.a.connections == link.b.connections == 0


def test_the_next_deadline_is_the_earliest_a_connection_still_has_armed() -> None:
    link = Link()
    listener = link.b.tcp_listen(80)
    client = link.a.tcp_connect(B4, 80, link.now)
    (syn,) = link.a.packets_to_send(link.now)  # and the SYN's retransmission timer
    assert link.a.next_deadline() == client.next_deadline() == link.now + 1.0
    link.b.receive(syn, link.now)
    link.settle()  # its SYN-ACK stops that timer: no deadline left to fire for nothing
    assert link.a.next_deadline() is None
    server = accepted(listener)
    server.send(b"x")
    link.b.wake(server)
    link.settle()  # the byte arrives: the client owes a delayed ACK
    assert link.a.next_deadline() == client.next_deadline() == link.now + 0.040
    client.close()
    link.a.wake(client)
    link.settle()  # the FIN carries that ACK, and the server's ACK stops the FIN's RTO
    assert client.state is TcpState.FIN_WAIT_2
    assert link.a.next_deadline() is client.next_deadline() is None


def connection_in_time_wait(link: Link, listener: Listener) -> TcpConnection:
    """A connection from A to `listener`'s port on B, opened and closed: A's end, in TIME-WAIT."""
    client = link.a.tcp_connect(B4, listener.port, link.now)
    link.settle()
    assert client.state is TcpState.ESTABLISHED
    server = accepted(listener)
    client.close()  # the client closes first, so its end waits in TIME-WAIT
    link.a.wake(client)
    link.settle()
    server.close()
    link.b.wake(server)
    link.settle()
    assert client.state is TcpState.TIME_WAIT
    return client


def test_a_port_in_time_wait_towards_one_service_is_free_towards_another() -> None:
    link = Link(ephemeral_ports=range(50000, 50002))
    listeners = link.b.tcp_listen(80), link.b.tcp_listen(81)
    for _ in range(2):
        connection_in_time_wait(link, listeners[0])
    with pytest.raises(OSError, match="no free port"):
        link.a.tcp_connect(B4, 80, link.now)  # both four-tuples still wait
    other = link.a.tcp_connect(B4, 81, link.now)
    link.settle()
    assert other.state is TcpState.ESTABLISHED
    assert other.local.port in (50000, 50001)
    link.settle(until=link.now + 61)  # past TIME-WAIT: the ports are free towards port 80 again
    assert link.a.tcp_connect(B4, 80, link.now).local.port in (50000, 50001)


def test_past_the_time_wait_limit_the_oldest_waiting_connection_ends_at_once() -> None:
    link = Link(ephemeral_ports=range(50000, 50003), time_wait_limit=2)
    listener = link.b.tcp_listen(80)
    clients = [connection_in_time_wait(link, listener) for _ in range(3)]
    assert link.a.connections == 2 and link.a.time_wait_overflows == 1
    # The oldest's four-tuple is free again; the two others still wait, their ports taken.
    fourth = link.a.tcp_connect(B4, 80, link.now)
    assert fourth.local.port == clients[0].local.port
    link.settle(until=link.now + 61)  # the two leave TIME-WAIT in their own time
    assert fourth.state is TcpState.ESTABLISHED and link.a.connections == 1


def test_a_client_connecting_faster_than_time_wait_lets_go_still_finds_ports() -> None:
    link = Link(ephemeral_ports=range(50000, 50004), time_wait_limit=2)
    listener = link.b.tcp_listen(80)
    for _ in range(10):  # four ports, each four-tuple in TIME-WAIT for 60 s: all ten get one
        connection_in_time_wait(link, listener)
    assert link.a.time_wait_overflows == 8


def test_a_connect_finds_the_last_free_port_and_never_a_listening_one() -> None:
    stack = Stack([A4], mtu=1420, rng=random.Random(5), ephemeral_ports=range(50000, 50004))
    stack.tcp_listen(50001)
    taken = {stack.tcp_connect(B4, 80, 0.0).local.port for _ in range(3)}
    assert taken == {50000, 50002, 50003}
    with pytest.raises(OSError, match="no free port"):
        stack.tcp_connect(B4, 80, 0.0)


def test_a_syn_to_a_port_nobody_listens_on_is_refused_by_rst() -> None:
    link = Link()
    client = link.a.tcp_connect(B4, 81, link.now)
    link.settle()
    assert client.events() == [TcpEvent.REFUSED]
    assert link.b.drops == {Drop.TCP_NO_LISTENER: 1}
    assert link.a.connections == 0


def test_an_icmp_port_unreachable_for_our_syn_refuses_the_connection() -> None:
    stack = Stack([A4], mtu=1420, rng=random.Random(3))
    client = stack.tcp_connect(B4, 80, 0.0)
    (syn,) = stack.packets_to_send(0.0)
    stack.receive(bytes(IP(src=B4, dst=A4) / ICMP(type=3, code=3) / IPerror(syn)), 0.1)
    assert client.events() == [TcpEvent.REFUSED]
    assert stack.packets_to_send(0.1) == [] and stack.connections == 0


def test_a_segment_for_no_connection_is_answered_with_rfc_9293s_reset() -> None:
    stack = Stack([A4], mtu=1420, rng=random.Random(4))
    stray = IP(src=B4, dst=A4) / TCP(sport=5000, dport=6000, flags="A", seq=7, ack=12345)
    stack.receive(bytes(stray), 0.0)
    (packet,) = stack.packets_to_send(0.0)
    # <SEQ=SEG.ACK><CTL=RST>, byte for byte as scapy builds it, checksums and all.
    reset = TCP(sport=6000, dport=5000, flags="R", seq=12345, ack=0, window=0)
    assert packet == bytes(IP(src=A4, dst=B4, id=0, flags="DF") / reset)


def test_a_reset_for_no_connection_is_not_answered() -> None:
    stack = Stack([A6], mtu=1420, rng=random.Random(5))
    stack.receive(bytes(IPv6(src=B6, dst=A6) / TCP(sport=1, dport=2, flags="R")), 0.0)
    assert stack.packets_to_send(0.0) == []
    assert stack.drops == {Drop.TCP_NO_LISTENER: 1}


def test_a_segment_with_a_bad_checksum_is_dropped_and_counted() -> None:
    stack = Stack([A4], mtu=1420, rng=random.Random(6))
    stack.tcp_listen(80)
    stack.receive(bytes(IP(src=B4, dst=A4) / TCP(dport=80, flags="S", chksum=1)), 0.0)
    assert stack.drops == {Drop.BAD_TCP_SEGMENT: 1}
    assert stack.packets_to_send(0.0) == [] and stack.connections == 0


def test_behind_an_authenticated_tunnel_the_checksums_are_not_checked_again() -> None:
    # As Linux's WireGuard marks what it decrypts CHECKSUM_UNNECESSARY: the device's Poly1305
    # covered the packet whole, so its sums are the sender's business.
    stack = Stack([A4], mtu=1420, rng=random.Random(6), authenticated=True)
    stack.tcp_listen(80)
    stack.receive(bytes(IP(src=B4, dst=A4, chksum=1) / TCP(dport=80, flags="S", chksum=1)), 0.0)
    assert stack.drops == {} and stack.connections == 1
    (syn_ack,) = stack.packets_to_send(0.0)
    assert IP(syn_ack)[TCP].flags == "SA"  # and its own sums right, as scapy recomputes them
    fresh = IP(syn_ack)
    del fresh.chksum, fresh[TCP].chksum
    assert bytes(fresh) == syn_ack


def test_a_syn_flood_of_ten_thousand_half_open_connections_costs_a_bounded_backlog() -> None:
    stack = Stack([A4], mtu=1420, rng=random.Random(7))
    listener = stack.tcp_listen(80)
    rng = random.Random(8)
    flood = 10_000
    for n in range(flood):
        source = f"198.18.{1 + n // 250}.{1 + n % 250}"
        syn = IP(src=source, dst=A4) / TCP(sport=rng.randrange(1024, 65536), dport=80, flags="S")
        stack.receive(bytes(syn), 0.0)
    assert stack.connections == len(listener.half_open) == SYN_BACKLOG
    assert stack.drops == {Drop.SYN_BACKLOG_FULL: flood - SYN_BACKLOG}
    assert len(stack.packets_to_send(0.0)) == SYN_BACKLOG  # one SYN-ACK each

    # Unanswered, the SYN-ACKs are retried and given up: the backlog empties by itself.
    now = 0.0
    while (deadline := stack.next_deadline()) is not None:
        now = deadline
        stack.handle_timer(now)
        stack.packets_to_send(now)
    assert stack.connections == len(listener.half_open) == 0
    assert listener.accept() is None
    assert now < 600  # Linux gives up on a SYN-ACK after ~1 minute (tcp_synack_retries 5)


def test_a_listener_that_closes_resets_the_connections_it_did_not_accept() -> None:
    link = Link()
    listener = link.b.tcp_listen(80)
    client = link.a.tcp_connect(B4, 80, link.now)
    link.settle()
    link.b.tcp_unlisten(listener)
    link.settle()
    assert TcpEvent.RESET in client.events()
    assert link.a.connections == link.b.connections == 0


def test_drops_by_reason_include_the_connections_own() -> None:
    link = Link()
    link.b.tcp_listen(80)
    client = link.a.tcp_connect(B4, 80, link.now)
    link.settle()
    (local, port), (remote, remote_port) = client.local, client.remote
    far_outside = (client.rcv_nxt + (1 << 30)) & 0xFFFFFFFF
    stray = IP(src=remote, dst=local) / TCP(
        sport=remote_port, dport=port, flags="A", seq=far_outside, ack=client.snd_nxt & 0xFFFFFFFF
    )
    link.a.receive(bytes(stray), link.now)
    link.a.receive(bytes(IP(src=B4, dst=A4) / TCP(dport=port, chksum=1)), link.now)
    assert link.a.drop_counts() == {TcpDrop.OUT_OF_WINDOW: 1, Drop.BAD_TCP_SEGMENT: 1}


hostile_segments = st.lists(
    st.tuples(
        st.sampled_from([80, 81]),  # the listener's port, or a closed one
        st.integers(0, 0xFFFFFFFF),  # seq
        st.integers(0, 0xFFFFFFFF),  # ack
        st.integers(0, 0xFF),  # flags, any combination
        st.integers(0, 0xFFFF),  # window
        st.binary(max_size=64),  # payload
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(hostile_segments, st.booleans())
def test_hostile_segments_from_the_tunnel_never_raise_and_state_stays_bounded(
    segments: list[tuple[int, int, int, int, int, bytes]], at_the_connection: bool
) -> None:
    """Checksummed segments with any flags, numbers and payload, some aimed at the open
    connection's own ports: each is taken, answered or dropped, never raised."""
    link = Link()
    link.b.tcp_listen(80, syn_backlog=8)
    client = link.a.tcp_connect(B4, 80, link.now)
    link.settle()
    a4, b4 = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    for port, seq, ack, flags, window, payload in segments:
        src_port = client.local.port if at_the_connection else 40000 + port
        segment = TcpSegment(src_port, port, seq, ack, Flags(flags), window, payload=payload)
        wire = tcp_segment.serialize(segment, a4, b4)
        link.b.receive(ip.build(a4, b4, ip.TCP, wire), link.now)
        link.now += 0.01
        link.b.packets_to_send(link.now)
    link.settle(until=link.now + 600)  # every timer runs out
    assert link.b.connections <= 1 + 8  # the accepted one, and at most the SYN backlog


def pure_tso(packet: bytes, size: int) -> list[bytes]:
    """wgpy.io.vnet.segment's reference TSO as the Stack's `split` (the tunnel gives the
    accelerator's twin, which tests/unit/test_accel.py holds to it)."""
    ipv4 = packet[0] >> 4 == 4
    gso = (segment.GSO_TCPV4, 20) if ipv4 else (segment.GSO_TCPV6, 40)
    header = segment.VnetHdr(segment.F_NEEDS_CSUM, gso[0], 0, size, gso[1], 16)
    return segment.segment(packet, header, pure=True)


def without_ip_id(packet: bytes) -> bytes:
    """The packet with its IPv4 ID and header checksum zeroed: a cutter numbers its pieces, a
    single segment goes out with ID 0 (the IDs of DF packets mean nothing, RFC 6864)."""
    if packet[0] >> 4 != 4:
        return packet
    return packet[:4] + bytes(2) + packet[6:10] + bytes(2) + packet[12:]


@pytest.mark.parametrize("remote", [B4, B6], ids=["ipv4", "ipv6"])
def test_runs_cut_by_a_splitter_are_the_segments_the_stack_would_send_one_by_one(
    remote: str,
) -> None:
    sent: dict[bool, list[bytes]] = {}
    cut: list[int] = []

    def splitter(packet: bytes, size: int) -> list[bytes]:
        pieces = pure_tso(packet, size)
        cut.append(len(pieces))
        return pieces

    for split in (False, True):
        a = Stack([A4, A6], mtu=1420, rng=random.Random(1), split=splitter if split else None)
        b = Stack([B4, B6], mtu=1420, rng=random.Random(2))
        listener = b.tcp_listen(80)
        client = a.tcp_connect(remote, 80, 0.0)
        data, received, packets = random.Random(3).randbytes(300_000), bytearray(), []
        client.send(data)
        for step in range(1, 60):
            if step == 3:  # established: the FIN follows the data
                client.close()
                a.wake(client)
            for packet in a.packets_to_send(step / 1000):
                packets.append(packet)
                b.receive(packet, step / 1000)
            for packet in b.packets_to_send(step / 1000):
                a.receive(packet, step / 1000)
            server = listener.ready[0] if listener.ready else None
            if server is not None:
                received += server.receive_data(1 << 20)
                b.wake(server)
        assert bytes(received) == data and not b.drop_counts()
        sent[split] = packets
    assert list(map(without_ip_id, sent[True])) == list(map(without_ip_id, sent[False]))
    assert sum(cut) > 150 and max(cut) > 10  # most of the 220 data segments went in runs
    fin_run = sent[True][-1]  # the last piece of the last run carries the FIN
    assert fin_run[(20 if remote == B4 else 40) + 13] & Flags.FIN
