"""The whitepaper's primitives (section 5.4): HASH, MAC, HMAC, KDF1/2/3, AEAD and XAEAD.

BLAKE2s comes from hashlib; ChaCha20-Poly1305 and X25519 from pyca/cryptography. pyca has no
XChaCha20-Poly1305, so HChaCha20 is computed from one ChaCha20 keystream block (the block function's
output minus its input state, words 0-3 and 12-15).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy.core.constants import AEAD_TAG_SIZE

_ZERO_NONCE_PREFIX = b"\x00\x00\x00\x00"
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
_ZERO_BLOCK = bytes(64)


def hash_(data: bytes) -> bytes:
    """HASH(input): BLAKE2s with a 32-byte digest."""
    return hashlib.blake2s(data).digest()


def mac(key: bytes, data: bytes) -> bytes:
    """MAC(key, input): keyed BLAKE2s with a 16-byte digest."""
    return hashlib.blake2s(data, digest_size=16, key=key).digest()


def hmac_(key: bytes, data: bytes) -> bytes:
    """HMAC(key, input): HMAC over BLAKE2s, 32 bytes."""
    return hmac.digest(key, data, hashlib.blake2s)


def kdf(n: int, key: bytes, data: bytes) -> tuple[bytes, ...]:
    """KDFn(key, input): HKDF over HMAC-BLAKE2s, returning n 32-byte outputs."""
    prk = hmac_(key, data)
    outputs: list[bytes] = []
    previous = b""
    for i in range(1, n + 1):
        previous = hmac_(prk, previous + bytes([i]))
        outputs.append(previous)
    return tuple(outputs)


def kdf1(key: bytes, data: bytes) -> bytes:
    return kdf(1, key, data)[0]


def kdf2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    a, b = kdf(2, key, data)
    return a, b


def kdf3(key: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    a, b, c = kdf(3, key, data)
    return a, b, c


def aead_nonce(counter: int) -> bytes:
    """The 96-bit ChaCha20-Poly1305 nonce: 32 zero bits, then the 64-bit counter little-endian."""
    return _ZERO_NONCE_PREFIX + counter.to_bytes(8, "little")


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, auth_data: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(aead_nonce(counter), plaintext, auth_data)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, auth_data: bytes) -> bytes:
    """Raises cryptography's InvalidTag when authentication fails."""
    return ChaCha20Poly1305(key).decrypt(aead_nonce(counter), ciphertext, auth_data)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha, section 2.2) from one pyca ChaCha20 block."""
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(_ZERO_BLOCK)
    words = struct.unpack("<16I", block)
    inputs = struct.unpack("<4I", nonce16)
    head = [(words[i] - _SIGMA[i]) & 0xFFFFFFFF for i in range(4)]
    tail = [(words[12 + i] - inputs[i]) & 0xFFFFFFFF for i in range(4)]
    return struct.pack("<8I", *head, *tail)


def xaead_encrypt(key: bytes, nonce24: bytes, plaintext: bytes, auth_data: bytes) -> bytes:
    subkey = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(subkey).encrypt(_ZERO_NONCE_PREFIX + nonce24[16:], plaintext, auth_data)


def xaead_decrypt(key: bytes, nonce24: bytes, ciphertext: bytes, auth_data: bytes) -> bytes:
    """Raises cryptography's InvalidTag when authentication fails."""
    subkey = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(subkey).decrypt(
        _ZERO_NONCE_PREFIX + nonce24[16:], ciphertext, auth_data
    )


def dh(private_key: bytes, public_key: bytes) -> bytes:
    """DH(private, public): X25519. Raises ValueError for a low-order point (all-zero result)."""
    return X25519PrivateKey.from_private_bytes(private_key).exchange(
        X25519PublicKey.from_public_bytes(public_key)
    )


def dh_pubkey(private_key: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()


__all__ = [
    "AEAD_TAG_SIZE",
    "aead_decrypt",
    "aead_encrypt",
    "aead_nonce",
    "dh",
    "dh_pubkey",
    "hash_",
    "hchacha20",
    "hmac_",
    "kdf",
    "kdf1",
    "kdf2",
    "kdf3",
    "mac",
    "xaead_decrypt",
    "xaead_encrypt",
]
