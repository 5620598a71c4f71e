"""The device's batch entry points, `handle_tun_packets` and `handle_datagrams`, against their
definition: the same datagrams, packets, drops, counters and timers as the one-at-a-time entry
points given the same packets in the same order.

Two identical links (same seed, so the same keys and indices) are driven side by side, one a
packet at a time and one in batches, and compared after every step.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from device_views import outcome, state
from fakes import Link

from wgpy.core.constants import KEEPALIVE_TIMEOUT, MAX_STAGED_PACKETS, REKEY_ON_RECEIVE_TIME
from wgpy.core.device import Action, datagrams_of, packets_of
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint
from wgpy.core.ippacket import ipv4_packet, ipv6_packet
from wgpy.core.send import send_keepalive, send_queued_handshake_initiation
from wgpy.core.transport import encrypt_packet, encrypt_packets

A_TO_B = ipv4_packet("10.0.0.1", "10.0.0.2", b"ping")


class Twins:
    """Two identical links; `one` is driven a packet at a time, `batched` in batches."""

    def __init__(self, connect: bool = True) -> None:
        self.one, self.batched = Link(seed=7), Link(seed=7)
        if connect:
            for link in (self.one, self.batched):
                link.send("a", A_TO_B)

    def advance(self, seconds: float) -> None:
        for link in (self.one, self.batched):
            link.advance(seconds)

    def tun(self, name: str, packets: list[bytes]) -> list[tuple[bytes, Endpoint]]:
        """`name` reads `packets` from its TUN; returns what it sends, checked to agree."""
        one, batched = self.one.node(name).device, self.batched.node(name).device
        now, wall = self.one.now, self.one.wall
        singly: list[Action] = []
        for packet in packets:
            singly += one.handle_tun_packet(packet, now, wall)
        together = batched.handle_tun_packets(packets, now, wall)
        assert outcome(together) == outcome(singly)
        assert state(batched) == state(one)
        return outcome(together)[0]

    def network(self, name: str, datagrams: list[bytes], source: Endpoint) -> list[bytes]:
        """`name` receives `datagrams` from `source`; returns what it writes to its TUN."""
        one, batched = self.one.node(name).device, self.batched.node(name).device
        now, wall = self.one.now, self.one.wall
        singly: list[Action] = []
        for data in datagrams:
            singly += one.handle_datagram(data, source, now, wall)
        views = [memoryview(d) for d in datagrams]  # as a GRO receive hands them over
        together = batched.handle_datagrams(views, source, now, wall)
        assert outcome(together) == outcome(singly)
        assert state(batched) == state(one)
        return outcome(together)[1]


def data_from_a(twins: Twins, packets: list[bytes]) -> list[bytes]:
    return [data for data, _ in twins.tun("a", packets)]


def sealed_by_a(twins: Twins, inner: bytes) -> bytes:
    """A transport message from a carrying `inner` whatever it is, as a peer could send it."""
    sealed = []
    for link in (twins.one, twins.batched):
        keypair = link.peer_of_b.keypairs.current
        assert keypair is not None
        sealed.append(encrypt_packet(keypair, inner, link.a.device.mtu))
    assert sealed[0] == sealed[1]
    return sealed[0]


A = Endpoint("192.0.2.1", 51820)


def test_a_batch_of_packets_is_sealed_as_the_same_packets_one_at_a_time() -> None:
    twins = Twins()
    packets = [ipv4_packet("10.0.0.1", "10.0.0.2", bytes([n]) * n) for n in range(40)]
    assert len(data_from_a(twins, packets)) == 40


def test_packets_without_a_route_or_endpoint_are_dropped_in_a_batch_as_one_by_one() -> None:
    twins = Twins()
    for link in (twins.one, twins.batched):
        peer = link.a.device.add_peer(b"\x09" * 32)  # a peer with no endpoint
        link.a.device.allowed_ips.insert(ipaddress.ip_network("10.9.0.0/16"), peer)
    no_route, no_endpoint = ipv4_packet("10.0.0.1", "10.8.0.1"), ipv4_packet("10.0.0.1", "10.9.0.1")
    packets = [
        A_TO_B,
        no_route,
        no_route,  # each drop counts, though the batch routes a destination once
        b"\x45garbage",  # not IP
        no_endpoint,
        no_endpoint,
        ipv6_packet("fd00::1", "fd00::2", b"six"),
        A_TO_B,
    ]
    twins.tun("a", packets)
    drops = twins.batched.a.device.drops
    assert drops[DropReason.NO_ROUTE] == 3 and drops[DropReason.NO_ENDPOINT] == 2


def test_a_batch_before_the_handshake_is_staged_and_overflows_as_one_by_one() -> None:
    twins = Twins(connect=False)
    packets = [ipv4_packet("10.0.0.1", "10.0.0.2", bytes([n % 256])) for n in range(200)]
    sent = twins.tun("a", packets)
    assert len(sent) == 1  # one initiation
    assert twins.batched.a.device.drops[DropReason.STAGED_OVERFLOW] == 200 - MAX_STAGED_PACKETS


def test_a_batch_larger_than_the_staging_queue_is_all_sent_on_an_established_session() -> None:
    twins = Twins()
    packets = [ipv4_packet("10.0.0.1", "10.0.0.2", bytes([n % 256])) for n in range(300)]
    assert len(data_from_a(twins, packets)) == 300
    assert not twins.batched.a.device.drops


def test_a_batch_of_datagrams_is_opened_as_the_same_datagrams_one_at_a_time() -> None:
    twins = Twins()
    packets = [ipv4_packet("10.0.0.1", "10.0.0.2", bytes([n]) * n) for n in range(30)]
    datagrams = data_from_a(twins, packets)
    assert twins.network("b", datagrams, A) == packets


def test_bad_datagrams_in_a_batch_are_dropped_and_counted_as_one_by_one() -> None:
    twins = Twins()
    good = data_from_a(twins, [A_TO_B] * 3)
    spoofed = data_from_a(twins, [ipv4_packet("10.0.0.7", "10.0.0.2", b"spoof")])
    not_ip = sealed_by_a(twins, b"\x00" * 24)
    forged = good[0][:-1] + bytes([good[0][-1] ^ 1])
    batch = [
        good[0],
        good[0],  # replayed
        forged,
        b"\x04\x00\x00\x00" + b"\xff" * 28,  # unknown receiver index
        b"\x09garbage",
        b"",
        good[1],
        *spoofed,
        not_ip,
        good[2],
    ]
    assert twins.network("b", batch, A) == [A_TO_B] * 3
    drops = twins.batched.b.device.drops
    for reason in (
        DropReason.REPLAYED_COUNTER,
        DropReason.DECRYPT_FAILED,
        DropReason.UNKNOWN_INDEX,
        DropReason.UNKNOWN_TYPE,
        DropReason.DISALLOWED_SOURCE,
        DropReason.INVALID_INNER_PACKET,
    ):
        assert drops[reason] >= 1, reason


def test_keepalives_and_data_in_one_batch_arm_the_same_timers_as_one_by_one() -> None:
    twins = Twins()
    twins.advance(KEEPALIVE_TIMEOUT + 1)  # b's keepalive timer has fired: it is disarmed
    assert twins.batched.peer_of_a.timers.send_keepalive is None
    keepalive_twins: list[bytes] = []
    for link in (twins.one, twins.batched):
        actions = send_keepalive(link.a.device, link.peer_of_b, link.now, link.wall)
        keepalive_twins += datagrams_of(actions)
    assert keepalive_twins[0] == keepalive_twins[1]
    data = data_from_a(twins, [A_TO_B, A_TO_B])
    twins.network("b", [keepalive_twins[0], *data], A)
    timers = twins.batched.peer_of_a.timers
    assert timers.send_keepalive is not None and timers.need_another_keepalive


def test_a_roamed_source_becomes_the_endpoint_after_a_batch() -> None:
    twins = Twins()
    datagrams = data_from_a(twins, [A_TO_B] * 2)
    roamed = Endpoint("198.18.0.9", 4444)
    twins.network("b", datagrams, roamed)
    assert twins.batched.peer_of_a.endpoint == roamed


def test_a_handshake_in_the_middle_of_a_batch_is_handled_in_its_place() -> None:
    twins = Twins()
    before = data_from_a(twins, [A_TO_B])
    initiations: list[bytes] = []
    for link in (twins.one, twins.batched):
        link.advance(10)  # a's data went unanswered long enough for it to rekey
        peer = link.peer_of_b
        actions = send_queued_handshake_initiation(
            link.a.device, peer, link.now, link.wall, is_retry=False
        )
        initiations += datagrams_of(actions)
    assert initiations[0] == initiations[1]
    after = data_from_a(twins, [A_TO_B])
    twins.network("b", [*before, initiations[0], *after], A)


def test_the_first_message_on_a_new_session_takes_the_one_by_one_path_within_a_batch() -> None:
    twins = Twins()
    responses: list[bytes] = []
    for link in (twins.one, twins.batched):
        link.advance(REKEY_ON_RECEIVE_TIME)
        (initiation,) = datagrams_of(
            send_queued_handshake_initiation(
                link.b.device, link.peer_of_a, link.now, link.wall, is_retry=False
            )
        )
        (response,) = datagrams_of(
            link.a.device.handle_datagram(initiation, link.b.endpoint, link.now, link.wall)
        )
        responses.append(response)
        # b now holds the new session as initiator; a holds it as `next` until b uses it.
        actions = link.b.device.handle_datagram(response, link.a.endpoint, link.now, link.wall)
        link.b.received += packets_of(actions)
    from_b = [data for data, _ in twins.tun("b", [ipv4_packet("10.0.0.2", "10.0.0.1")] * 3)]
    twins.network("a", from_b, ("192.0.2.2", 51820))
    assert twins.batched.peer_of_b.keypairs.next is None


def test_an_initiator_rekeys_once_per_batch_when_its_session_nears_its_end() -> None:
    twins = Twins()
    twins.advance(REKEY_ON_RECEIVE_TIME - 5)
    from_b = [data for data, _ in twins.tun("b", [ipv4_packet("10.0.0.2", "10.0.0.1")] * 3)]
    twins.advance(6)
    before = len(twins.batched.sent)
    written = twins.network("a", from_b, ("192.0.2.2", 51820))
    assert len(written) == 3
    assert twins.batched.peer_of_b.timers.sent_lastminute_handshake
    assert len(twins.batched.sent) == before  # the initiation is among the returned actions


@pytest.mark.parametrize("make", [bytes, memoryview])
def test_handle_datagrams_takes_bytes_and_views(make: Callable[[bytes], object]) -> None:
    twins = Twins()
    datagrams = data_from_a(twins, [A_TO_B])
    device = twins.batched.b.device
    actions = device.handle_datagrams(
        [make(d) for d in datagrams],  # type: ignore[misc]
        A,
        twins.batched.now,
        twins.batched.wall,
    )
    assert outcome(actions)[1] == [A_TO_B]


def test_encrypt_packets_seals_as_encrypt_packet_does_one_after_another() -> None:
    twins = Twins()
    # Lengths on both sides of the MTU, where the padding stops short of a multiple of 16.
    around_mtu = [bytes(length) for length in range(1400, 1430)]
    packets = [b"", ipv4_packet("10.0.0.1", "10.0.0.2", b"x" * 33), *around_mtu]
    keypairs = [link.peer_of_b.keypairs.current for link in (twins.one, twins.batched)]
    assert keypairs[0] is not None and keypairs[1] is not None
    singly = [encrypt_packet(keypairs[0], packet, 1420) for packet in packets]
    assert encrypt_packets(keypairs[1], packets, 1420) == singly
    assert keypairs[0].send_counter == keypairs[1].send_counter
