"""What one wake-up reads from the TUN (wgpy/io/tun_batches.py). A datagram socket pair stands in
for the TUN's file: like a TUN, it hands over one packet per read."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP

from wgpy.io.tun_batches import BATCH, OffloadTun, PlainTun, TunBatches
from wgpy.io.vnet.segment import NO_OFFLOAD

PACKETS = [bytes(IP(src="192.0.2.1", dst="192.0.2.2") / ICMP(seq=n)) for n in range(BATCH + 3)]


class Kernel:
    """The kernel's end of a stand-in TUN, and what it puts before each packet."""

    def __init__(self, end: socket.socket, header: bytes) -> None:
        self.end, self.header = end, header

    def hands_over(self, *packets: bytes) -> None:
        for packet in packets:
            self.end.send(self.header + packet)


@pytest.fixture(params=[False, True], ids=["plain", "offload"])
def tun(request: pytest.FixtureRequest) -> Iterator[tuple[TunBatches, Kernel]]:
    """Batches on the daemon's end of a stand-in TUN, plain or with the virtio-net header."""
    kernel, daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with kernel, daemon:
        if request.param:
            yield OffloadTun(daemon.fileno(), udp=False), Kernel(kernel, NO_OFFLOAD)
        else:
            yield PlainTun(daemon.fileno()), Kernel(kernel, b"")


def test_a_lone_packet_is_read_alone(tun: tuple[TunBatches, Kernel]) -> None:
    batches, kernel = tun
    kernel.hands_over(PACKETS[0])

    assert batches.read() == [PACKETS[0]]
    with pytest.raises(BlockingIOError):
        batches.read()


def test_a_wake_up_reads_what_waits_up_to_a_batch(tun: tuple[TunBatches, Kernel]) -> None:
    batches, kernel = tun
    kernel.hands_over(*PACKETS)

    assert batches.read() == PACKETS[:BATCH]
    assert batches.read() == PACKETS[BATCH:]


def test_a_wake_up_with_nothing_waiting_raises_blocking_io_error(
    tun: tuple[TunBatches, Kernel],
) -> None:
    batches, _ = tun
    with pytest.raises(BlockingIOError):
        batches.read()
