"""Protocol-core figures: handshakes per second, seal+open time per packet, and the Python work
of the fast data path per 64 KiB super-packet.

    python benchmarks/core.py

A handshake here is the full exchange between two sans-IO devices (initiation, response and the
confirming keepalive, with MACs), the devices built beforehand; seal+open is one 1400-byte inner
packet encrypted by one device and decrypted, replay-checked and routed by the other, checked
once before timing to come out whole, and with no drop while timed. The super-packet figure is
what the two daemons' data paths do in Python for one TCP super-packet, without the system
calls: the sender cuts it into segments (with checksums), seals them and groups them for
UDP_SEGMENT; the receiver splits what UDP_GRO would hand over, opens and checks each, and
coalesces them for the TUN. It is the CPU figure to compare before and after a change, steadier
than a throughput run. The devices use the compiled accelerator when it is built; WGPY_PURE=1
measures the pure path.
"""

from __future__ import annotations

import ipaddress
import os
import statistics
import struct
import time

from wgpy.core.device import Device, datagrams_of, packets_of
from wgpy.core.endpoint import Endpoint
from wgpy.core.ippacket import IPV4_HEADER_LEN, ipv4_packet
from wgpy.core.keys import generate_private_key, public_key
from wgpy.io import accel
from wgpy.io.udp_batches import gso_runs
from wgpy.io.vnet.checksum import fold, pseudo_header_sum
from wgpy.io.vnet.coalesce import coalesce
from wgpy.io.vnet.segment import F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, VnetHdr, segment

A_ENDPOINT, B_ENDPOINT = Endpoint("192.0.2.1", 51820), Endpoint("192.0.2.2", 51820)


def pair() -> tuple[Device, Device]:
    key_a, key_b = generate_private_key(os.urandom), generate_private_key(os.urandom)
    cipher, lone = accel.batch_cipher(), accel.lone_cipher()
    a, b = (
        Device(os.urandom, key_a, batch_cipher=cipher, lone_cipher=lone),
        Device(os.urandom, key_b, batch_cipher=cipher, lone_cipher=lone),
    )
    peer_b = a.add_peer(public_key(key_b), endpoint=B_ENDPOINT)
    peer_a = b.add_peer(public_key(key_a), endpoint=A_ENDPOINT)
    a.allowed_ips.insert(ipaddress.ip_network("10.0.0.2/32"), peer_b)
    b.allowed_ips.insert(ipaddress.ip_network("10.0.0.1/32"), peer_a)
    return a, b


def packet(size: int) -> bytes:
    return ipv4_packet("10.0.0.1", "10.0.0.2", bytes(size - IPV4_HEADER_LEN))


def handshakes_per_second(seconds: float = 2.0, pairs_per_round: int = 50) -> float:
    """Full exchanges per second of time spent in them: the device pairs (key generation and
    all) are built outside the timed part."""
    count, timed = 0, 0.0
    inner = packet(100)
    while timed < seconds:
        pairs = [pair() for _ in range(pairs_per_round)]
        start = time.perf_counter()
        for a, b in pairs:
            (initiation,) = datagrams_of(a.handle_tun_packet(inner, 0.0, 1e9))
            (response,) = datagrams_of(b.handle_datagram(initiation, A_ENDPOINT, 0.0, 1e9))
            (data,) = datagrams_of(a.handle_datagram(response, B_ENDPOINT, 0.0, 1e9))
            assert packets_of(b.handle_datagram(data, A_ENDPOINT, 0.0, 1e9)) == [inner]
        timed += time.perf_counter() - start
        count += len(pairs)
    return count / timed


def seal_open_microseconds(size: int = 1400, rounds: int = 5, per_round: int = 20000) -> float:
    a, b = pair()
    inner = packet(size)
    (initiation,) = datagrams_of(a.handle_tun_packet(inner, 0.0, 1e9))
    (response,) = datagrams_of(b.handle_datagram(initiation, A_ENDPOINT, 0.0, 1e9))
    a.handle_datagram(response, B_ENDPOINT, 0.0, 1e9)
    # What is timed must be the whole path: a packet dropped on the way would look faster.
    (sealed,) = datagrams_of(a.handle_tun_packet(inner, 1.0, 1e9))
    assert packets_of(b.handle_datagram(sealed, A_ENDPOINT, 1.0, 1e9)) == [inner], "not opened"
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            (sealed,) = datagrams_of(a.handle_tun_packet(inner, 1.0, 1e9))
            b.handle_datagram(sealed, A_ENDPOINT, 1.0, 1e9)
        samples.append((time.perf_counter() - start) / per_round * 1e6)
    assert not b.drops, f"dropped while timed: {dict(b.drops)}"
    return statistics.median(samples)


def tso_super_packet(segments: int = 46, mss: int = 1368) -> tuple[bytes, VnetHdr]:
    """A TCP super-packet as a TUN with TSO hands it over: IPv4, TCP with a timestamp option,
    the checksum field holding the pseudo-header sum (CHECKSUM_PARTIAL)."""
    tcp_len = 32
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))  # fmt: skip
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 5201, 1, 1, (tcp_len // 4) << 4, 0x10,
                                512, 0, 0))  # fmt: skip
    tcp += bytes([1, 1, 8, 10]) + struct.pack("!II", 1, 2)
    packet = bytearray(ip + tcp + os.urandom(segments * mss))
    struct.pack_into("!H", packet, 2, min(len(packet), 0xFFFF))
    struct.pack_into("!H", packet, 20 + 16, fold(pseudo_header_sum(packet, 6, 0)))
    return bytes(packet), VnetHdr(F_NEEDS_CSUM, GSO_TCPV4, 20 + tcp_len, mss, 20, 16)


def super_packet_microseconds(rounds: int = 5, per_round: int = 200) -> float:
    """Python work of both data paths for one TSO super-packet, median per super-packet."""
    a, b = pair()
    super_packet, hdr = tso_super_packet()
    (handshake,) = datagrams_of(a.handle_tun_packet(packet(100), 0.0, 1e9))
    (response,) = datagrams_of(b.handle_datagram(handshake, A_ENDPOINT, 0.0, 1e9))
    a.handle_datagram(response, B_ENDPOINT, 0.0, 1e9)

    def through_both() -> list[bytes]:
        actions = a.handle_tun_packets(segment(super_packet, hdr), 1.0, 1e9)
        sealed = datagrams_of(actions)
        buffers = []
        for run in gso_runs(sealed):  # as UDP_GRO hands them over: views of one buffer
            view = memoryview(b"".join(run))
            size = len(run[0])
            received = [view[at : at + size] for at in range(0, len(view), size)]
            inner = b.handle_datagrams(received, A_ENDPOINT, 1.0, 1e9)
            buffers += coalesce(packets_of(inner))
        return buffers

    # What reaches B's TUN must be the super-packet's payload again, in as many super-packets
    # as UDP_SEGMENT sends (each at most 64 KiB of datagrams).
    merged = through_both()
    payload = b"".join(buffer[VNET_HDR_LEN + hdr.hdr_len :] for buffer in merged)
    assert payload == super_packet[hdr.hdr_len :], "the data paths did not carry it intact"
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            through_both()
        samples.append((time.perf_counter() - start) / per_round * 1e6)
    return statistics.median(samples)


def main() -> None:
    print(f"data path: {accel.path()}")
    print(f"handshakes per second (device to device, full exchange): {handshakes_per_second():.0f}")
    print(f"seal+open per 1400-byte packet (median of 5 rounds): {seal_open_microseconds():.1f} us")
    size = len(tso_super_packet()[0])
    micros = super_packet_microseconds()
    print(
        f"both data paths per {size}-byte TSO super-packet (median of 5 rounds): {micros:.0f} us, "
        f"a ceiling of {size * 8 / micros / 1e3:.2f} Gbit/s for the Python work alone"
    )


if __name__ == "__main__":
    main()
