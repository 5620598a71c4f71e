"""Fakes at the I/O seam: devices joined in memory, a clock under the test's control."""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from wgpy.device import Action, Device, SendDatagram, WriteTun
from wgpy.keys import generate_private_key, public_key

WALL_EPOCH = 1_700_000_000.0


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    generator = random.Random(seed)
    return generator.randbytes


def ipv4_packet(source: str, destination: str, payload: bytes = b"") -> bytes:
    """A minimal IPv4/UDP-less packet (protocol 253, for experiments) with a valid header."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0,
        0,
        64,
        253,
        0,
        ipaddress.IPv4Address(source).packed,
        ipaddress.IPv4Address(destination).packed,
    )
    return header + payload


def ipv6_packet(source: str, destination: str, payload: bytes = b"") -> bytes:
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(payload),
        253,
        64,
        ipaddress.IPv6Address(source).packed,
        ipaddress.IPv6Address(destination).packed,
    )
    return header + payload


@dataclass
class Node:
    name: str
    device: Device
    endpoint: tuple[str, int]
    received: list[bytes] = field(default_factory=list)


class Link:
    """Two devices and the wire between them. The test advances time and decides what is lost."""

    def __init__(self, seed: int = 1, psk: bytes | None = None, **device_options: object) -> None:
        rng = seeded_rng(seed)
        self.now = 1000.0
        key_a, key_b = generate_private_key(rng), generate_private_key(rng)
        self.a = Node("a", Device(rng, key_a, **device_options), ("192.0.2.1", 51820))  # type: ignore[arg-type]
        self.b = Node("b", Device(rng, key_b, **device_options), ("192.0.2.2", 51820))  # type: ignore[arg-type]
        self.peer_of_b = self.a.device.add_peer(
            public_key(key_b), preshared_key=psk, endpoint=self.b.endpoint
        )
        self.peer_of_a = self.b.device.add_peer(
            public_key(key_a), preshared_key=psk, endpoint=self.a.endpoint
        )
        self.a.device.allowed_ips.insert(ipaddress.ip_network("10.0.0.2/32"), self.peer_of_b)
        self.a.device.allowed_ips.insert(ipaddress.ip_network("fd00::2/128"), self.peer_of_b)
        self.b.device.allowed_ips.insert(ipaddress.ip_network("10.0.0.1/32"), self.peer_of_a)
        self.b.device.allowed_ips.insert(ipaddress.ip_network("fd00::1/128"), self.peer_of_a)
        self.wire: list[tuple[Node, bytes, tuple[str, int]]] = []
        self.sent: list[tuple[str, bytes]] = []
        self.drop_filter: Callable[[str, bytes], bool] = lambda sender, data: False

    @property
    def wall(self) -> float:
        return WALL_EPOCH + self.now

    def node(self, name: str) -> Node:
        return self.a if name == "a" else self.b

    def other(self, node: Node) -> Node:
        return self.b if node is self.a else self.a

    def send(self, name: str, packet: bytes) -> None:
        node = self.node(name)
        self._carry_out(node, node.device.handle_tun_packet(packet, self.now, self.wall))
        self.deliver()

    def _carry_out(self, node: Node, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, WriteTun):
                node.received.append(action.packet)
            else:
                assert isinstance(action, SendDatagram)
                self.sent.append((node.name, action.data))
                if not self.drop_filter(node.name, action.data):
                    self.wire.append((node, action.data, action.endpoint))

    def deliver(self) -> None:
        """Carry datagrams across until the wire is quiet."""
        while self.wire:
            sender, data, endpoint = self.wire.pop(0)
            receiver = self.a if endpoint == self.a.endpoint else self.b
            if receiver is sender or endpoint != receiver.endpoint:
                continue  # Addressed to nobody on this link.
            actions = receiver.device.handle_datagram(data, sender.endpoint, self.now, self.wall)
            self._carry_out(receiver, actions)

    def advance(self, seconds: float, step: float = 0.05) -> None:
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
