"""A wgpy peer inside an asyncio program, with no TUN: a UDP echo through the tunnel.

Two peers run in this process, Alice and Bob, each a `wgpy.core.device.Device` behind an asyncio
DatagramProtocol on a 127.0.0.1 port. Alice's application builds an IP packet with scapy, a UDP
datagram to Bob's echo service, and hands it to her device as a TUN would; the device makes the
handshake and sends the packet encrypted. Bob's device hands the decrypted packet to Bob's
application, which answers, and the answer comes back to Alice through the tunnel.

    python examples/asyncio_echo.py

Needs scapy (pip install scapy) for the packets; wgpy itself does not.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import Callable, Iterable
from typing import cast

from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from wgpy.core.device import Action, Device, SendDatagrams, WriteTun
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import generate_private_key

ECHO_PORT = 7
ALICE, BOB = "192.0.2.1", "192.0.2.2"  # tunnel addresses: they never reach a real network
ECHO_TIMEOUT = 5.0


class WireGuardProtocol(asyncio.DatagramProtocol):
    """The I/O edge of one device: UDP datagrams in and out, decrypted packets to `deliver`, and
    one timer, re-armed from `device.next_timer()` after every call into the device.

    The device's `now` is the loop's clock (monotonic), so a deadline from next_timer() goes
    straight to loop.call_at; `wall` is Unix time, which the handshake's TAI64N timestamp needs.
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self.deliver: Callable[[bytes], None] = lambda packet: None  # the application's
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = Endpoint(str(addr[0]), int(addr[1]))
        self.carry_out(self.device.handle_datagram(data, source, *self.clock()))

    def send_packet(self, packet: bytes) -> None:
        """An IP packet from the application, as a TUN device would hand it over."""
        self.carry_out(self.device.handle_tun_packet(packet, *self.clock()))

    def on_timer(self) -> None:
        self.timer = None
        self.carry_out(self.device.handle_timer(*self.clock()))

    def clock(self) -> tuple[float, float]:
        return self.loop.time(), time.time()

    def carry_out(self, actions: Iterable[Action]) -> None:
        assert self.transport is not None
        for action in actions:
            if isinstance(action, SendDatagrams):
                for data in action.datagrams:
                    self.transport.sendto(data, action.endpoint)
            elif isinstance(action, WriteTun):
                for packet in action.packets:
                    self.deliver(packet)
        self.rearm()

    def rearm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.device.next_timer()
        self.timer = None if deadline is None else self.loop.call_at(deadline, self.on_timer)


async def open_peer() -> WireGuardProtocol:
    """A device with a new key, on a UDP port of 127.0.0.1 that the system picks."""
    loop = asyncio.get_running_loop()
    device = Device(os.urandom, generate_private_key(os.urandom))
    _, protocol = await loop.create_datagram_endpoint(
        lambda: WireGuardProtocol(device), local_addr=("127.0.0.1", 0)
    )
    return protocol


def udp_endpoint(protocol: WireGuardProtocol) -> Endpoint:
    assert protocol.transport is not None
    host, port = protocol.transport.get_extra_info("sockname")[:2]
    return Endpoint(host, port)


def introduce(protocol: WireGuardProtocol, other: WireGuardProtocol, tunnel_address: str) -> None:
    """Make `other` a peer of `protocol`'s device: its public key, its UDP endpoint, and the
    tunnel address it may send from and is sent to (its AllowedIPs)."""
    assert other.device.static_public is not None
    peer = protocol.device.add_peer(other.device.static_public, endpoint=udp_endpoint(other))
    protocol.device.allowed_ips.insert(ipaddress.ip_network(tunnel_address), peer)


def echo_service(protocol: WireGuardProtocol) -> Callable[[bytes], None]:
    """Bob's application: answer every UDP datagram to ECHO_PORT with its own payload."""

    def deliver(packet: bytes) -> None:
        request = IP(packet)
        if UDP not in request or request[UDP].dport != ECHO_PORT:
            return
        udp = UDP(sport=ECHO_PORT, dport=request[UDP].sport)
        reply = IP(src=request.dst, dst=request.src) / udp / request[UDP].payload
        # Not from inside the device's call: the answer goes on the loop's next turn.
        asyncio.get_running_loop().call_soon(protocol.send_packet, bytes(reply))

    return deliver


async def echo(alice: WireGuardProtocol, replies: asyncio.Queue[bytes], text: str) -> None:
    """Send `text` to Bob's echo service through the tunnel and wait for it to come back."""
    udp = UDP(sport=40000, dport=ECHO_PORT) / Raw(text.encode())
    request = IP(src=ALICE, dst=BOB) / udp
    started = time.perf_counter()
    alice.send_packet(bytes(request))
    reply = IP(await asyncio.wait_for(replies.get(), ECHO_TIMEOUT))
    elapsed = (time.perf_counter() - started) * 1e3
    payload = bytes(reply[UDP].payload).decode()
    print(f"echo came back from {reply.src}:{reply[UDP].sport}: {payload!r} in {elapsed:.1f} ms")


async def main() -> int:
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    alice, bob = await open_peer(), await open_peer()
    alice.deliver, bob.deliver = replies.put_nowait, echo_service(bob)
    introduce(alice, bob, f"{BOB}/32")
    introduce(bob, alice, f"{ALICE}/32")
    for name, address, protocol in (("alice", ALICE, alice), ("bob", BOB, bob)):
        host, port = udp_endpoint(protocol)
        print(f"{name:5} is {address} in the tunnel, on UDP {host}:{port}")
    try:
        # The first packet finds no session: the device holds it, makes the handshake, sends it.
        await echo(alice, replies, "hello through the tunnel (handshake included)")
        await echo(alice, replies, "hello again (on the session)")
    finally:
        for protocol in (alice, bob):
            assert protocol.transport is not None
            protocol.transport.close()
    (peer,) = alice.device.peers.values()
    print(f"alice's device sent {peer.tx_bytes} bytes to bob and received {peer.rx_bytes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
