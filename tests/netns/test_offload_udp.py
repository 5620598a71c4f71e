"""Batches on the UDP sockets (wgpy/io/udp_batches.py) against the kernel, on the loopback of a
fresh namespace: a UDP_SEGMENT send, a UDP_GRO receive, a wake-up's batches, and the plain path."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from wgpy.core.endpoint import Endpoint
from wgpy.io import pktinfo
from wgpy.io.readiness import input_waiting
from wgpy.io.udp_batches import UdpBatches, enable_gro, supports_gso
from wgpy.lab.netns import Namespace

# Each test here needs a namespace, so `-m netns` selects it as it selects the rest of tests/netns.
pytestmark = pytest.mark.netns


@pytest.fixture
def pair(
    netns: Namespace, request: pytest.FixtureRequest
) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A sender and a receiver on the loopback of a fresh namespace: IPv4, or IPv6 when the test
    parametrizes `pair` with AF_INET6."""
    family = getattr(request, "param", socket.AF_INET)
    with netns.entered():
        sender = socket.socket(family, socket.SOCK_DGRAM)
        receiver = socket.socket(family, socket.SOCK_DGRAM)
    with sender, receiver:
        receiver.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        receiver.settimeout(5)
        yield sender, receiver


def one_run() -> list[bytes]:
    """Seven datagrams of one size and a shorter one to end them: one UDP_SEGMENT send."""
    return [os.urandom(200) for _ in range(7)] + [os.urandom(33)]


def sent_as_one_run(sender: socket.socket, receiver: socket.socket) -> list[bytes]:
    """`one_run()`, sent to `receiver` in one UDP_SEGMENT send: on the loopback, a socket with
    UDP_GRO on receives the batch whole. Returns the datagrams."""
    datagrams = one_run()
    UdpBatches(gso=True, gro=False).send(sender, datagrams, receiver.getsockname())
    return datagrams


def test_a_segmented_send_arrives_as_the_datagrams_it_carries(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    assert supports_gso(sender)
    datagrams = one_run()

    UdpBatches(gso=True, gro=False).send(sender, datagrams, receiver.getsockname())

    assert [receiver.recv(1000) for _ in datagrams] == datagrams


def test_a_gro_receive_hands_over_the_datagrams_of_one_source_together(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    assert enable_gro(receiver)
    datagrams = sent_as_one_run(sender, receiver)

    received: list[bytes] = []
    while len(received) < len(datagrams):
        batch, source, _ = UdpBatches(gso=False, gro=True).receive_one(receiver)
        assert source[1] == sender.getsockname()[1]
        received += [bytes(d) for d in batch]

    assert received == datagrams


def test_a_wake_up_takes_what_waits_as_runs_from_one_source_each(
    pair: tuple[socket.socket, socket.socket], netns: Namespace
) -> None:
    sender, receiver = pair
    with netns.entered():
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with other:
        for sock, data in ((sender, b"a1"), (sender, b"a2"), (other, b"b1"), (sender, b"a3")):
            sock.sendto(data, receiver.getsockname())
        receiver.setblocking(False)  # as the data path keeps its sockets

        batches = UdpBatches(gso=False, gro=False).receive(receiver, input_waiting(receiver))
        a, b = sender.getsockname()[1], other.getsockname()[1]

    assert [([bytes(d) for d in datagrams], source[1]) for datagrams, source, _ in batches] == [
        ([b"a1", b"a2"], a),
        ([b"b1"], b),
        ([b"a3"], a),
    ]


def test_a_lone_datagram_after_a_gro_batch_from_the_same_source_is_one_datagram(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    assert enable_gro(receiver)
    batches = UdpBatches(gso=False, gro=True)  # one, as the data path keeps it
    datagrams = sent_as_one_run(sender, receiver)
    received: list[bytes] = []
    while len(received) < len(datagrams):
        received += [bytes(d) for d in batches.receive_one(receiver)[0]]

    sender.sendto(b"x" * 3000, receiver.getsockname())  # longer than the batch's size

    assert received == datagrams
    assert batches.receive_one(receiver)[0] == [b"x" * 3000]


def test_each_receive_reports_the_local_address_it_arrived_on(
    pair: tuple[socket.socket, socket.socket], netns: Namespace
) -> None:
    sender, _ = pair
    with netns.entered():
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver:
        receiver.bind(("0.0.0.0", 0))
        receiver.settimeout(5)
        pktinfo.enable(receiver)
        port = receiver.getsockname()[1]
        batches = UdpBatches(gso=False, gro=False)  # one, as the data path keeps it
        locals_ = []
        for address in ("127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.1"):
            sender.sendto(address.encode(), (address, port))
            (data,), _, local = batches.receive_one(receiver)
            assert local is not None
            locals_.append((data, pktinfo.local_address(local)))

    assert locals_ == [
        (a.encode(), a) for a in ("127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.1")
    ]


def test_a_wake_up_with_nothing_waiting_raises_blocking_io_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, receiver = pair
    receiver.setblocking(False)
    with pytest.raises(BlockingIOError):
        UdpBatches(gso=False, gro=True).receive(receiver, input_waiting(receiver))


def test_without_offloads_each_datagram_is_its_own_system_call(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    plain = UdpBatches(gso=False, gro=False)
    plain.send(sender, [b"one", b"two"], receiver.getsockname())
    assert plain.receive_one(receiver)[0] == [memoryview(b"one")]
    assert plain.receive_one(receiver)[0] == [memoryview(b"two")]


@pytest.mark.parametrize("pair", [socket.AF_INET6], indirect=True)
@pytest.mark.parametrize("gro", [False, True])
def test_a_receive_names_an_ipv6_source_as_an_endpoint_of_host_and_port(
    pair: tuple[socket.socket, socket.socket], gro: bool
) -> None:
    sender, receiver = pair
    sender.sendto(b"ping", receiver.getsockname())  # recvfrom names it (host, port, 0, 0)

    _, source, _ = UdpBatches(gso=False, gro=gro).receive_one(receiver)

    port = sender.getsockname()[1]
    assert source == Endpoint("::1", port)
    assert str(source) == f"[::1]:{port}"
