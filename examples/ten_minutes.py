"""Ten minutes of WireGuard in well under a second: two peers under a simulated clock.

The device never reads a clock. Every call takes `now` (monotonic seconds) and `wall` (Unix
seconds), and `next_timer()` says when it next wants `handle_timer`; so a loop that jumps from one
event to the next runs ten minutes of timers as fast as the processor allows.

Alice sends Bob one packet a second for ten minutes, and Bob sends nothing back. What follows is
WireGuard's timer logic (whitepaper section 6): the first packet starts a handshake; Alice, the
initiator, rekeys on sending once her session is REKEY_AFTER_TIME (120 s) old; Bob, who receives
data and has nothing to say, answers with a keepalive every KEEPALIVE_TIMEOUT (10 s), so Alice
knows the tunnel works.

    python examples/ten_minutes.py
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from wgpy.core.constants import (
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    TRANSPORT_MIN_SIZE,
)
from wgpy.core.device import Action, Device, WriteTun
from wgpy.core.endpoint import Endpoint
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.keys import generate_private_key

DURATION = 600.0  # simulated seconds
SEND_EVERY = 1.0
WALL_START = 1_700_000_000.0  # Unix time at the simulation's t = 0, for the TAI64N timestamps


@dataclass
class Node:
    name: str
    address: str  # in the tunnel
    endpoint: Endpoint  # on the simulated wire: nothing is sent anywhere
    device: Device = field(init=False)
    delivered: int = 0

    def __post_init__(self) -> None:
        self.device = Device(os.urandom, generate_private_key(os.urandom))


class Simulation:
    def __init__(self) -> None:
        self.alice = Node("alice", "192.0.2.1", Endpoint("198.18.0.1", 51820))
        self.bob = Node("bob", "192.0.2.2", Endpoint("198.18.0.2", 51820))
        for node, other in ((self.alice, self.bob), (self.bob, self.alice)):
            assert other.device.static_public is not None
            peer = node.device.add_peer(other.device.static_public, endpoint=other.endpoint)
            node.device.allowed_ips.insert(ipaddress.ip_network(f"{other.address}/32"), peer)
        self.now = 0.0
        self.counts: Counter[str] = Counter()

    @property
    def wall(self) -> float:
        return WALL_START + self.now

    def run(self) -> None:
        sends = (n * SEND_EVERY for n in range(int(DURATION / SEND_EVERY) + 1))
        for moment in sends:
            self.advance_to(moment)
            packet = ipv4_packet(self.alice.address, self.bob.address, b"tick")
            self.counts["data packets sent"] += 1
            actions = self.alice.device.handle_tun_packet(packet, self.now, self.wall)
            self.carry_out(self.alice, actions)

    def advance_to(self, moment: float) -> None:
        """Fire every timer due before `moment`, in order, then set the clock to it."""
        while True:
            due = [(d, node) for node in (self.alice, self.bob) if (d := node.device.next_timer())]
            if not due or min(due, key=lambda pair: pair[0])[0] > moment:
                break
            deadline, node = min(due, key=lambda pair: pair[0])
            self.now = max(self.now, deadline)
            self.carry_out(node, node.device.handle_timer(self.now, self.wall))
        self.now = moment

    def carry_out(self, sender: Node, actions: Iterable[Action]) -> None:
        """Deliver what `sender` sends at once (a wire without delay or loss), recursively."""
        receiver = self.bob if sender is self.alice else self.alice
        for action in actions:
            if isinstance(action, WriteTun):
                sender.delivered += len(action.packets)
                continue
            assert action.endpoint == receiver.endpoint
            for data in action.datagrams:
                self.observe(sender, data)
                replies = receiver.device.handle_datagram(
                    data, sender.endpoint, self.now, self.wall
                )
                self.carry_out(receiver, replies)

    def observe(self, sender: Node, data: bytes) -> None:
        kind = data[0]
        if kind == MESSAGE_INITIATION:
            self.counts["initiations"] += 1
        elif kind == MESSAGE_RESPONSE:
            self.counts["handshakes"] += 1
            handshakes = self.counts["handshakes"]
            what = "handshake" if handshakes == 1 else f"rekey {handshakes - 1}"
            initiator = self.bob if sender is self.alice else self.alice
            print(
                f"t={self.now:6.1f} s  {what}: {initiator.name} initiated, {sender.name} answered"
            )
        elif kind == MESSAGE_TRANSPORT and len(data) == TRANSPORT_MIN_SIZE:  # nothing inside
            self.counts["keepalives"] += 1
            self.counts[f"keepalives from {sender.name}"] += 1
            if self.counts["keepalives"] == 1:
                print(f"t={self.now:6.1f} s  keepalive: {sender.name} (the others are counted)")


def main() -> int:
    started = time.perf_counter()
    simulation = Simulation()
    simulation.run()
    elapsed = time.perf_counter() - started
    counts = simulation.counts
    print(f"\n{DURATION / 60:g} simulated minutes in {elapsed:.3f} s of wall time")
    print(f"handshakes: {counts['handshakes']}")
    print(f"rekeys: {counts['handshakes'] - 1}")
    print(
        f"keepalives: {counts['keepalives']} (alice {counts['keepalives from alice']}, "
        f"bob {counts['keepalives from bob']})"
    )
    print(f"data packets: {counts['data packets sent']} sent, {simulation.bob.delivered} delivered")
    print(f"drops: {sum(node.device.drops.total() for node in (simulation.alice, simulation.bob))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
