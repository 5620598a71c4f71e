"""Transport-data messages: encrypt and decrypt one packet (whitepaper section 5.4.6).

The replay window is the caller's to consult, after decryption has authenticated the counter.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from wgpy.constants import MESSAGE_TRANSPORT, PADDING_MULTIPLE, REJECT_AFTER_MESSAGES
from wgpy.keypair import Keypair
from wgpy.messages import TRANSPORT_HEADER

_NONCE_PREFIX = b"\x00\x00\x00\x00"


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
    nonce = _NONCE_PREFIX + counter.to_bytes(8, "little")
    header = TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, keypair.remote_index, counter)
    return header + keypair.sender.encrypt(nonce, plaintext, None)


def decrypt_packet(keypair: Keypair, counter: int, ciphertext: bytes) -> bytes | None:
    """The padded inner packet, or None when the message fails to authenticate."""
    if counter >= REJECT_AFTER_MESSAGES:
        return None
    nonce = _NONCE_PREFIX + counter.to_bytes(8, "little")
    try:
        return keypair.receiver.decrypt(nonce, ciphertext, None)
    except InvalidTag:
        return None
