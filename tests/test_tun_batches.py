"""What one wake-up reads from the TUN (wgpy/io/tun_batches.py). A datagram socket pair stands in
for the TUN's file: like a TUN, it hands over one packet per read."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP

from wgpy.io.offload import NO_OFFLOAD
from wgpy.io.tun_batches import BATCH, OffloadTun, PlainTun, TunBatches

PACKETS = [bytes(IP(src="192.0.2.1", dst="192.0.2.2") / ICMP(seq=n)) for n in range(BATCH + 3)]


@pytest.fixture
def kernel_side() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the kernel's end, the daemon's end)"""
    kernel, daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with kernel, daemon:
        yield kernel, daemon


def tun_on(daemon: socket.socket, offload: bool) -> tuple[TunBatches, bytes]:
    """The batches on `daemon`'s file, and what the kernel puts before each packet."""
    if offload:
        return OffloadTun(daemon.fileno(), udp=False), NO_OFFLOAD
    return PlainTun(daemon.fileno()), b""


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_a_lone_packet_is_read_alone(
    kernel_side: tuple[socket.socket, socket.socket], offload: bool
) -> None:
    kernel, daemon = kernel_side
    tun, header = tun_on(daemon, offload)
    kernel.send(header + PACKETS[0])

    assert tun.read() == [PACKETS[0]]
    with pytest.raises(BlockingIOError):
        tun.read()


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_a_wake_up_reads_what_waits_up_to_a_batch(
    kernel_side: tuple[socket.socket, socket.socket], offload: bool
) -> None:
    kernel, daemon = kernel_side
    tun, header = tun_on(daemon, offload)
    for packet in PACKETS:
        kernel.send(header + packet)

    assert tun.read() == PACKETS[:BATCH]
    assert tun.read() == PACKETS[BATCH:]


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_a_wake_up_with_nothing_waiting_raises_blocking_io_error(
    kernel_side: tuple[socket.socket, socket.socket], offload: bool
) -> None:
    _, daemon = kernel_side
    tun, _ = tun_on(daemon, offload)
    with pytest.raises(BlockingIOError):
        tun.read()
