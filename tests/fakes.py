"""Fakes at the I/O seam: two devices joined in memory, and a clock under the test's control."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from wgpy.core.device import Action, Device, WriteTun
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import generate_private_key, public_key

WALL_EPOCH = 1_700_000_000.0


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@dataclass
class Node:
    name: str
    device: Device
    endpoint: Endpoint
    received: list[bytes] = field(default_factory=list)


class Link:
    """Devices `a` (10.0.0.1, fd00::1) and `b` (10.0.0.2, fd00::2), peers of each other, and the
    wire between them. The test advances time and decides what the wire loses."""

    def __init__(
        self,
        seed: int = 1,
        psk: bytes | None = None,
        psk_b: bytes | None = None,
        under_load_threshold_b: int | None = None,
    ) -> None:
        rng = seeded_rng(seed)
        self.now = 1000.0
        key_a, key_b = generate_private_key(rng), generate_private_key(rng)
        load = (
            {}
            if under_load_threshold_b is None
            else {"under_load_threshold": under_load_threshold_b}
        )
        self.a = Node("a", Device(rng, key_a), Endpoint("192.0.2.1", 51820))
        self.b = Node("b", Device(rng, key_b, **load), Endpoint("192.0.2.2", 51820))
        self.peer_of_b = self.a.device.add_peer(
            public_key(key_b), preshared_key=psk, endpoint=self.b.endpoint
        )
        self.peer_of_a = self.b.device.add_peer(
            public_key(key_a), preshared_key=psk_b or psk, endpoint=self.a.endpoint
        )
        for device, peer, suffix in (
            (self.a.device, self.peer_of_b, 2),
            (self.b.device, self.peer_of_a, 1),
        ):
            device.allowed_ips.insert(ipaddress.ip_network(f"10.0.0.{suffix}/32"), peer)
            device.allowed_ips.insert(ipaddress.ip_network(f"fd00::{suffix}/128"), peer)
        self.wire: list[tuple[Node, bytes, Endpoint]] = []
        self.sent: list[tuple[str, float, bytes]] = []
        self.lose: Callable[[str, bytes], bool] = lambda sender, data: False

    @property
    def wall(self) -> float:
        return WALL_EPOCH + self.now

    def node(self, name: str) -> Node:
        return self.a if name == "a" else self.b

    def send(self, name: str, packet: bytes, deliver: bool = True) -> None:
        """`name`'s TUN hands the device an outbound packet."""
        node = self.node(name)
        self._carry_out(node, node.device.handle_tun_packet(packet, self.now, self.wall))
        if deliver:
            self.deliver()

    def inject(self, name: str, data: bytes, source: Endpoint) -> None:
        """A datagram arriving at `name` from anywhere: an attacker, or a peer that roamed."""
        node = self.node(name)
        self._carry_out(node, node.device.handle_datagram(data, source, self.now, self.wall))
        self.deliver()

    def deliver(self) -> None:
        """Carry datagrams across until the wire is quiet."""
        while self.wire:
            sender, data, endpoint = self.wire.pop(0)
            receiver = self.a if endpoint == self.a.endpoint else self.b
            if endpoint != receiver.endpoint:
                continue  # Addressed to nobody on this link.
            actions = receiver.device.handle_datagram(data, sender.endpoint, self.now, self.wall)
            self._carry_out(receiver, actions)

    def advance(self, seconds: float) -> None:
        """Let time pass, firing every timer when it is due."""
        end = self.now + seconds
        while True:
            deadlines = [d for n in (self.a, self.b) if (d := n.device.next_timer()) is not None]
            upcoming = min(deadlines, default=None)
            if upcoming is None or upcoming > end:
                break
            self.now = max(self.now, upcoming)
            for node in (self.a, self.b):
                self._carry_out(node, node.device.handle_timer(self.now, self.wall))
            self.deliver()
        self.now = end

    def mark(self) -> int:
        """A position in the log of sent datagrams, for `kinds(start=...)`."""
        return len(self.sent)

    def kinds(self, sender: str | None = None, start: int = 0) -> list[int]:
        """The message types sent (by `sender`, from position `start`), in order."""
        return [data[0] for name, _, data in self.sent[start:] if sender in (None, name)]

    def times(self, sender: str, kind: int) -> list[float]:
        return [at for name, at, data in self.sent if name == sender and data[0] == kind]

    def _carry_out(self, node: Node, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, WriteTun):
                node.received += action.packets
                continue
            for data in action.datagrams:
                self.sent.append((node.name, self.now, data))
                if not self.lose(node.name, data):
                    self.wire.append((node, data, action.endpoint))
