"""The built-in demo: two wgpy devices, joined in memory, under a simulated clock.

It prints what WireGuard does, step by step: the handshake, data both ways, a passive keepalive,
and the rekey after REKEY_AFTER_TIME, all in well under a second of real time.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

from wgpy.core.constants import REKEY_AFTER_TIME
from wgpy.core.device import Action, Device, SendDatagrams, WriteTun
from wgpy.core.endpoint import Endpoint
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.keys import generate_private_key, public_key, to_base64

KINDS = {1: "handshake initiation", 2: "handshake response", 3: "cookie reply", 4: "transport data"}
WALL = 1_700_000_000.0


class Demo:
    def __init__(self) -> None:
        keys = {name: generate_private_key(os.urandom) for name in ("alice", "bob")}
        self.devices = {name: Device(os.urandom, key) for name, key in keys.items()}
        self.endpoints = {
            "alice": Endpoint("192.0.2.1", 51820),
            "bob": Endpoint("192.0.2.2", 51820),
        }
        self.addresses = {"alice": "10.0.0.1", "bob": "10.0.0.2"}
        self.now = 0.0
        for name, other in (("alice", "bob"), ("bob", "alice")):
            peer = self.devices[name].add_peer(
                public_key(keys[other]), endpoint=self.endpoints[other]
            )
            network = ipaddress.ip_network(f"{self.addresses[other]}/32")
            self.devices[name].allowed_ips.insert(network, peer)
            print(f"{name:5}  public key {to_base64(public_key(keys[name]))}")

    def send(self, sender: str, text: str) -> None:
        receiver = "bob" if sender == "alice" else "alice"
        packet = ipv4_packet(self.addresses[sender], self.addresses[receiver], text.encode())
        print(f"\n[t={self.now:6.1f}s] {sender}'s TUN hands over {len(packet)} bytes: {text!r}")
        self.carry_out(
            sender, self.devices[sender].handle_tun_packet(packet, self.now, WALL + self.now)
        )

    def carry_out(self, sender: str, actions: Iterable[Action]) -> None:
        receiver = "bob" if sender == "alice" else "alice"
        for action in actions:
            if isinstance(action, WriteTun):
                for packet in action.packets:
                    print(f"           {sender}'s TUN receives: {packet[20:].decode()!r}")
                continue
            assert isinstance(action, SendDatagrams)  # Neither device asks for peers.
            for data in action.datagrams:
                kind = KINDS[data[0]]
                note = " (keepalive)" if kind == "transport data" and len(data) == 32 else ""
                print(f"           {sender} -> {receiver}: {kind}, {len(data)} bytes{note}")
                replies = self.devices[receiver].handle_datagram(
                    data, self.endpoints[sender], self.now, WALL + self.now
                )
                self.carry_out(receiver, replies)

    def wait(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = [t for d in self.devices.values() if (t := d.next_timer()) is not None]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            for name, device in self.devices.items():
                actions = device.handle_timer(self.now, WALL + self.now)
                if actions:
                    print(f"\n[t={self.now:6.1f}s] a timer fires at {name}")
                self.carry_out(name, actions)
        self.now = end


def main() -> int:
    print("wgpy demo: two devices joined in memory, under a simulated clock\n")
    demo = Demo()
    demo.send("alice", "hello bob")
    demo.send("bob", "hello alice")
    demo.wait(12)
    demo.wait(REKEY_AFTER_TIME - 12)
    demo.send("alice", "still there after two minutes?")
    demo.send("bob", "yes, on fresh keys")
    for name, device in demo.devices.items():
        (peer,) = device.peers.values()
        print(f"\n{name}: sent {peer.tx_bytes} bytes, received {peer.rx_bytes} bytes, "
              f"dropped {sum(device.drops.values())}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
