"""Transport-data messages: encrypt and decrypt packets (whitepaper section 5.4.6).

The replay window is the caller's to consult, after decryption has authenticated the counter.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag

from wgpy.core.constants import MESSAGE_TRANSPORT, PADDING_MULTIPLE, REJECT_AFTER_MESSAGES
from wgpy.core.keypair import Keypair
from wgpy.core.messages import TRANSPORT_HEADER

_NONCE = struct.Struct("<4xQ")  # 32 zero bits, then the counter little-endian
_ZEROS = bytes(PADDING_MULTIPLE)


def padded_length(length: int, mtu: int) -> int:
    """Pad to a multiple of 16, but never beyond the MTU (as the kernel's calculate_skb_padding)."""
    padded = -(-length // PADDING_MULTIPLE) * PADDING_MULTIPLE
    return max(length, min(padded, mtu))


def encrypt_packet(keypair: Keypair, packet: bytes, mtu: int) -> bytes:
    """The transport message carrying one inner packet (empty for a keepalive), under the
    keypair's next counter."""
    counter = keypair.send_counter
    keypair.send_counter = counter + 1
    padding = padded_length(len(packet), mtu) - len(packet)
    plaintext = packet + bytes(padding) if padding else packet
    header = TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, keypair.remote_index, counter)
    return header + keypair.sender.encrypt(_NONCE.pack(counter), plaintext, None)


def encrypt_packets(keypair: Keypair, packets: Sequence[bytes], mtu: int) -> list[bytes]:
    """The messages for `packets`, under consecutive counters: as `encrypt_packet` on each in
    turn, in one loop for a batch."""
    counter = keypair.send_counter
    keypair.send_counter = counter + len(packets)
    seal = keypair.sender.encrypt
    header = TRANSPORT_HEADER.pack
    nonce = _NONCE.pack
    remote = keypair.remote_index
    messages = []
    for packet in packets:
        length = len(packet)
        padding = -length % PADDING_MULTIPLE  # padded_length, inlined: this runs per packet
        if padding and length + padding > mtu:
            padding = max(0, mtu - length)
        plaintext = packet + _ZEROS[:padding] if padding else packet
        messages.append(
            header(MESSAGE_TRANSPORT, remote, counter) + seal(nonce(counter), plaintext, None)
        )
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
