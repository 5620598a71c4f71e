"""Run as a script: two user-space stacks over a seeded wire that loses, duplicates and reorders
packets, carrying 1 MiB of TCP each way (checked whole), UDP to an open and a closed port, and
pings; then print which stack ran (wgpy.compiled), the SHA-256 of every packet either stack sent
with its time, that of the UDP answers, and how many ICMP errors came back.
tests/unit/test_compiled.py runs it on the compiled stack and on its sources, which must agree
to the byte."""

from __future__ import annotations

import hashlib
import heapq
import random

from wgpy import compiled
from wgpy.netstack.stack import Stack

A, B = "198.18.0.1", "198.18.0.2"
DATA = 1 << 20


def main() -> None:
    rng = random.Random(7)
    stacks = {A: Stack([A], mtu=1420, rng=random.Random(1)), B: Stack([B], mtu=1420, rng=rng)}
    sent, wire = hashlib.sha256(), []
    count = 0
    now = 0.0

    def carry() -> None:
        nonlocal count
        for source, destination in ((A, B), (B, A)):
            for packet in stacks[source].packets_to_send(now):
                sent.update(f"{now:.6f}".encode() + packet)
                copies = 0 if rng.random() < 0.03 else 2 if rng.random() < 0.02 else 1
                for _ in range(copies):
                    late = 0.005 + (0.01 * rng.random() if rng.random() < 0.03 else 0.0)
                    count += 1
                    heapq.heappush(wire, (now + late, count, destination, packet))

    listener = stacks[B].tcp_listen(80)
    client = stacks[A].tcp_connect(B, 80, now)
    up, down = random.Random(2).randbytes(DATA), random.Random(3).randbytes(DATA)
    client.send(up)
    stacks[A].wake(client)
    received = {"up": bytearray(), "down": bytearray()}
    server = None
    echo = stacks[B].udp_bind(53)
    asker = stacks[A].udp_bind()
    for number in range(20):
        asker.sendto(number.to_bytes(2, "big"), (B, 53 if number % 4 else 54))
        stacks[A].ping(B, 1, number, b"ping")
    while now < 120.0:
        carry()
        deadlines = [d for d in (s.next_deadline() for s in stacks.values()) if d is not None]
        now = min([*deadlines, wire[0][0] if wire else 120.0, 120.0])
        while wire and wire[0][0] <= now:
            _, _, destination, packet = heapq.heappop(wire)
            stacks[destination].receive(packet, now)
        for stack in stacks.values():
            stack.handle_timer(now)
        if server is None and (server := listener.accept()) is not None:
            server.send(down)
            stacks[B].wake(server)
        for conn, name in ((server, "up"), (client, "down")):
            if conn is not None and conn.readable:
                received[name] += conn.receive_data(1 << 20)
                stacks[A if name == "down" else B].wake(conn)
        while (datagram := echo.recvfrom()) is not None:
            echo.sendto(datagram[0], datagram[1])
        stacks[A].events()
        stacks[B].events()
    assert received == {"up": up, "down": down}, "the transfer did not complete"
    answers = sorted(datagram for datagram, _ in iter(asker.recvfrom, None))
    print(compiled.stack_path())
    print(sent.hexdigest(), hashlib.sha256(b"".join(answers)).hexdigest(), len(asker.errors))


if __name__ == "__main__":
    main()
