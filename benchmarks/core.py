"""Protocol-core figures: handshakes per second and seal+open time per packet.

    python benchmarks/core.py

A handshake here is the full exchange between two sans-IO devices (initiation, response and the
confirming keepalive, with MACs); seal+open is one 1400-byte inner packet encrypted by one device
and decrypted, replay-checked and routed by the other.
"""

from __future__ import annotations

import ipaddress
import os
import statistics
import struct
import time

from wgpy.device import Device, SendDatagram
from wgpy.keys import generate_private_key, public_key

A_ENDPOINT, B_ENDPOINT = ("192.0.2.1", 51820), ("192.0.2.2", 51820)


def pair() -> tuple[Device, Device]:
    key_a, key_b = generate_private_key(os.urandom), generate_private_key(os.urandom)
    a, b = Device(os.urandom, key_a), Device(os.urandom, key_b)
    peer_b = a.add_peer(public_key(key_b), endpoint=B_ENDPOINT)
    peer_a = b.add_peer(public_key(key_a), endpoint=A_ENDPOINT)
    a.allowed_ips.insert(ipaddress.ip_network("10.0.0.2/32"), peer_b)
    b.allowed_ips.insert(ipaddress.ip_network("10.0.0.1/32"), peer_a)
    return a, b


def packet(size: int) -> bytes:
    payload = bytes(size - 20)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, 253, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))  # fmt: skip
    return header + payload


def handshakes_per_second(seconds: float = 2.0) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a, b = pair()
        (initiation,) = a.handle_tun_packet(packet(100), 0.0, 1e9)
        assert isinstance(initiation, SendDatagram)
        (response,) = b.handle_datagram(initiation.data, A_ENDPOINT, 0.0, 1e9)
        assert isinstance(response, SendDatagram)
        (data,) = a.handle_datagram(response.data, B_ENDPOINT, 0.0, 1e9)
        assert isinstance(data, SendDatagram)
        assert b.handle_datagram(data.data, A_ENDPOINT, 0.0, 1e9)
        count += 1
    return count / (time.perf_counter() - start)


def seal_open_microseconds(size: int = 1400, rounds: int = 5, per_round: int = 20000) -> float:
    a, b = pair()
    inner = packet(size)
    (initiation,) = a.handle_tun_packet(inner, 0.0, 1e9)
    (response,) = b.handle_datagram(initiation.data, A_ENDPOINT, 0.0, 1e9)  # type: ignore[union-attr]
    a.handle_datagram(response.data, B_ENDPOINT, 0.0, 1e9)  # type: ignore[union-attr]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            (sealed,) = a.handle_tun_packet(inner, 1.0, 1e9)
            b.handle_datagram(sealed.data, A_ENDPOINT, 1.0, 1e9)  # type: ignore[union-attr]
        samples.append((time.perf_counter() - start) / per_round * 1e6)
    return statistics.median(samples)


def main() -> None:
    print(f"handshakes per second (device to device, full exchange): {handshakes_per_second():.0f}")
    print(f"seal+open per 1400-byte packet (median of 5 rounds): {seal_open_microseconds():.1f} us")


if __name__ == "__main__":
    main()
