"""The user-space TCP's own cost: CPU time per full-sized data segment, both ends together, for
a bulk transfer between two connections in memory (no IP, no WireGuard, no clock but a fake one),
with and without the wire format (serialize, checksum, decode).

    python benchmarks/netstack_tcp.py

It is the figure to compare before and after a change to wgpy/netstack/tcp*.py; the throughput
through a tunnel (benchmarks/tunnel.py) adds the device, the stack and the event loop.
"""

from __future__ import annotations

import ipaddress
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

from wgpy.netstack.tcp import Address, TcpConnection
from wgpy.netstack.tcp_segment import TcpSegment, decode, serialize

MSS = 1380  # a WireGuard tunnel's MTU of 1420, less the IPv4 and TCP headers
SIZE = 64 << 20
CHUNK = 256 << 10
TICK = 0.0005  # fake seconds per exchange: a 1 ms round trip
A, B = Address("192.0.2.1", 40000), Address("192.0.2.2", 443)
A_IP, B_IP = (ipaddress.ip_address(end.host).packed for end in (A, B))

Carry = Callable[[TcpSegment, bytes, bytes], TcpSegment]


def in_memory(segment: TcpSegment, src: bytes, dst: bytes) -> TcpSegment:
    return segment


def on_the_wire(segment: TcpSegment, src: bytes, dst: bytes) -> TcpSegment:
    decoded = decode(serialize(segment, src, dst), src, dst)
    assert isinstance(decoded, TcpSegment)
    return decoded


def microseconds_per_segment(carry: Carry) -> float:
    sender = TcpConnection.connect(A, B, 0.0, iss=1, mss=MSS)
    syn = carry(sender.segments_to_send(0.0)[0], A_IP, B_IP)
    receiver = TcpConnection.accept(syn, B, A, 0.0, iss=7, mss=MSS)
    now, sent, received = 0.0, 0, 0
    block = os.urandom(CHUNK)  # zeros would make the checksums unfairly cheap
    started = time.process_time()
    while received < SIZE:
        now += TICK
        if sent < SIZE:
            sent += sender.send(block)
        for conn, peer, src, dst in (
            (sender, receiver, A_IP, B_IP),
            (receiver, sender, B_IP, A_IP),
        ):
            for segment in conn.segments_to_send(now):
                peer.receive(carry(segment, src, dst), now)
            deadline = conn.next_deadline()
            if deadline is not None and deadline <= now:
                conn.handle_timer(now)
        received += len(receiver.receive_data(SIZE))
    elapsed = time.process_time() - started
    return elapsed / (SIZE / (MSS - 12)) * 1e6  # 12: the timestamps option in every segment


def median(measure: Callable[[], float], rounds: int = 3) -> float:
    return statistics.median(measure() for _ in range(rounds))


def main() -> None:
    for name, carry in (("in memory", in_memory), ("through the wire format", on_the_wire)):
        us = median(partial(microseconds_per_segment, carry))
        mbits = (MSS - 12) * 8 / us
        print(f"TCP {name}: {us:.2f} us CPU per segment, both ends ({mbits:.0f} Mbit/s a core)")


if __name__ == "__main__":
    main()
