"""A UDP relay between two WireGuard peers that reorders and duplicates what it forwards.

    python -m benchmarks.hardening.relay A_SIDE B_SIDE B_ENDPOINT    (each ADDRESS:PORT)

It listens on A_SIDE for peer A and on B_SIDE for peer B: what arrives from A goes to
B_ENDPOINT from B_SIDE, what arrives from B goes to A's last seen address from A_SIDE, so each
peer takes the relay for the other. On the way it holds back one datagram in REORDER_SHARE and
lets it go after the next one; and after one transport-data message in DUPLICATE_SHARE it sends
again a message picked from the last RECENT it forwarded that way, a replay the receiver must
drop. It prints "ready" once it listens; on SIGTERM, one JSON line of counts per direction
("to_a", "to_b"), and exits.
"""

from __future__ import annotations

import collections
import json
import random
import select
import signal
import socket
import sys
from dataclasses import asdict, dataclass, field

REORDER_SHARE = 0.05
DUPLICATE_SHARE = 0.02
RECENT = 64
# Held datagrams go out after this long without traffic, lest they wait forever.
IDLE_SECONDS = 0.005
RECEIVE_BUFFER = 4 * 1024 * 1024
TRANSPORT_DATA = 4


@dataclass
class Counts:
    forwarded: int = 0
    reordered: int = 0
    duplicated: int = 0  # transport-data messages sent a second time


@dataclass
class Direction:
    """One way through the relay: out of `sock` to `target`."""

    sock: socket.socket
    target: tuple[str, int] | None
    counts: Counts = field(default_factory=Counts)
    held: bytes | None = None
    recent: collections.deque[bytes] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT)
    )

    def forward(self, datagram: bytes, rng: random.Random) -> None:
        if self.target is None:
            return
        if self.held is None and rng.random() < REORDER_SHARE:
            self.held = datagram
            self.counts.reordered += 1
            return
        self._send(datagram)
        self.flush()
        if datagram[0] == TRANSPORT_DATA:
            self.recent.append(datagram)
            if rng.random() < DUPLICATE_SHARE:
                self._send(rng.choice(self.recent))
                self.counts.duplicated += 1

    def flush(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self._send(held)

    def _send(self, datagram: bytes) -> None:
        assert self.target is not None
        self.sock.sendto(datagram, self.target)
        self.counts.forwarded += 1


def relay(a_side: tuple[str, int], b_side: tuple[str, int], b_endpoint: tuple[str, int]) -> str:
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    a_sock, b_sock = (bound(address) for address in (a_side, b_side))
    print("ready", flush=True)
    to_b, to_a = Direction(b_sock, b_endpoint), Direction(a_sock, None)
    rng = random.Random(1)
    while not stopped:
        ready, _, _ = select.select([a_sock, b_sock], [], [], IDLE_SECONDS)
        if not ready:
            to_a.flush()
            to_b.flush()
        for sock in ready:
            datagram, source = sock.recvfrom(65535)
            if sock is a_sock:
                to_a.target = source  # A is wherever it last sent from
                to_b.forward(datagram, rng)
            else:
                to_a.forward(datagram, rng)
    return json.dumps({"to_a": asdict(to_a.counts), "to_b": asdict(to_b.counts)})


def bound(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind(address)
    return sock


def endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str]) -> int:
    a_side, b_side, b_endpoint = (endpoint(arg) for arg in argv)
    print(relay(a_side, b_side, b_endpoint), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
