"""Transport-data messages: encrypt and decrypt packets (whitepaper section 5.4.6).

The replay window is the caller's to consult, after decryption has authenticated the counter.
These functions are the reference: a `BatchCipher` (the compiled one is wgpy/io/accel.py) does
the same a batch at a time, byte for byte, and a `LoneCipher` a message at a time.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag

from wgpy.core.constants import (
    MESSAGE_TRANSPORT,
    PADDING_MULTIPLE,
    REJECT_AFTER_MESSAGES,
    TRANSPORT_MIN_SIZE,
)
from wgpy.core.keypair import Keypair
from wgpy.core.messages import TRANSPORT_HEADER

_NONCE = struct.Struct("<4xQ")  # 32 zero bits, then the counter little-endian
_ZEROS = bytes(PADDING_MULTIPLE)


class BatchCipher(Protocol):
    """Seals and opens whole batches of transport messages, with the results of
    `encrypt_packets` and `decrypt_packet`, and reads a batch's headers, with the results of
    `transport_run`, ippacket.inner_packets and ippacket.common_destination; it holds no
    protocol state."""

    def transport_run(self, datagrams: Sequence[bytes | memoryview]) -> tuple[int, int, int]:
        """As `transport_run`."""
        ...

    def inner_packets(
        self, plaintexts: Sequence[bytes | None]
    ) -> tuple[list[bytes], list[bytes]] | None:
        """As ippacket.inner_packets."""
        ...

    def common_destination(self, packets: Sequence[bytes]) -> bytes | None:
        """As ippacket.common_destination."""
        ...

    def seal(self, keypair: Keypair, packets: Sequence[bytes], mtu: int) -> list[bytes]:
        """As `encrypt_packets`, the keypair's counter advanced alike."""
        ...

    def open(
        self, keypairs: Sequence[Keypair | None], datagrams: Sequence[bytes | memoryview]
    ) -> list[bytes | None]:
        """For each transport message of `datagrams` (each at least TRANSPORT_MIN_SIZE long),
        what `decrypt_packet` gives under the keypair at the same place; None where that is
        None (no keypair to open it)."""
        ...

    def open_all(
        self, keypair: Keypair, datagrams: Sequence[bytes | memoryview]
    ) -> list[bytes | None]:
        """`open` with `keypair` for every one of `datagrams`: a run under one keypair."""
        ...


class LoneCipher(Protocol):
    """Seals and opens one transport message at a time, with the results of `encrypt_packet`
    and `decrypt_packet`, for the packet that comes alone (a ping), whose cost is mostly the
    setup a BatchCipher's call shares among a batch. It holds no protocol state."""

    def seal(self, keypair: Keypair, packet: bytes, mtu: int) -> bytes:
        """As `encrypt_packet`, the keypair's counter advanced alike."""
        ...

    def open(self, keypair: Keypair, message: bytes | memoryview) -> bytes | None:
        """What `decrypt_packet` gives of the transport message `message` (at least
        TRANSPORT_MIN_SIZE long) under its own counter."""
        ...


def transport_run(datagrams: Sequence[bytes | memoryview]) -> tuple[int, int, int]:
    """(count, receiver, counter): how many of `datagrams`, from the first on, are transport
    messages (at least TRANSPORT_MIN_SIZE long) to one receiver index under consecutive
    counters, and the first one's receiver index and counter (0 and 0 when there is none). A
    UDP_GRO batch is usually one such run, which the receive path can take at once."""
    count = receiver = counter = 0
    for data in datagrams:
        if len(data) < TRANSPORT_MIN_SIZE:
            break
        kind, index, number = TRANSPORT_HEADER.unpack_from(data)
        if kind != MESSAGE_TRANSPORT:
            break
        if not count:
            receiver, counter = index, number
        elif index != receiver or number != counter + count:
            break
        count += 1
    return count, receiver, counter


def pad(packet: bytes, mtu: int) -> bytes:
    """The packet with zeros up to a multiple of 16 bytes, but never beyond the MTU (the kernel's
    calculate_skb_padding); a keepalive stays empty. A packet longer than the MTU, which the TUN
    does not hand over, goes unpadded: the kernel and wireguard-go pad its length modulo the MTU."""
    length = len(packet)
    padding = -length % PADDING_MULTIPLE
    if not padding:
        return packet
    if length + padding > mtu:
        padding = max(0, mtu - length)
    return packet + _ZEROS[:padding]


def encrypt_packet(keypair: Keypair, packet: bytes, mtu: int) -> bytes:
    """The transport message carrying one inner packet: `encrypt_packets` for a batch of one."""
    return encrypt_packets(keypair, (packet,), mtu)[0]


def encrypt_packets(keypair: Keypair, packets: Sequence[bytes], mtu: int) -> list[bytes]:
    """The transport messages carrying `packets` (an empty one is a keepalive), each padded,
    under the keypair's next counters in turn; the caller keeps them below
    REJECT_AFTER_MESSAGES."""
    counter = keypair.send_counter
    keypair.send_counter = counter + len(packets)
    seal = keypair.sender.encrypt
    header = TRANSPORT_HEADER.pack
    nonce = _NONCE.pack
    remote = keypair.remote_index
    messages = []
    for packet in packets:
        sealed = seal(nonce(counter), pad(packet, mtu), None)
        messages.append(header(MESSAGE_TRANSPORT, remote, counter) + sealed)
        counter += 1
    return messages


def decrypt_packet(keypair: Keypair, counter: int, ciphertext: bytes | memoryview) -> bytes | None:
    """The padded inner packet, or None when the message fails to authenticate."""
    if counter >= REJECT_AFTER_MESSAGES:
        return None
    try:
        return keypair.receiver.decrypt(_NONCE.pack(counter), ciphertext, None)
    except InvalidTag:
        return None
