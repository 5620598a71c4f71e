"""Keys as `wg` handles them: 32 bytes, written as 44 characters of base64."""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Callable

from wgpy.core.constants import KEY_LEN
from wgpy.errors import InvalidKeyError

Rng = Callable[[int], bytes]


def clamp(private_key: bytes) -> bytes:
    """Curve25519 clamping, as `wg genkey` applies it."""
    key = bytearray(private_key)
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def generate_private_key(rng: Rng) -> bytes:
    return clamp(rng(KEY_LEN))


def generate_preshared_key(rng: Rng) -> bytes:
    return rng(KEY_LEN)


def public_key(private_key: bytes) -> bytes:
    # Imported here: the cryptography package is ~15 ms that wgpy-quick, which reads keys
    # but derives none, need not load.
    from wgpy.core.crypto import dh_pubkey

    return dh_pubkey(private_key)


def to_base64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def short_form(key: bytes) -> str:
    """The key as logs name it, as wireguard-go's do: the first and last four characters of its
    base64 (the last before the padding)."""
    text = to_base64(key)
    return f"{text[:4]}…{text[39:43]}"


def from_base64(text: str) -> bytes:
    """Decode a key exactly as `wg` accepts it: 44 characters of base64 ending in '='."""
    text = text.strip()
    if len(text) != 44 or text[-1] != "=":
        raise InvalidKeyError("key is not 44 characters of base64 ending in '='")
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKeyError("key is not valid base64") from None
    if len(key) != KEY_LEN:
        raise InvalidKeyError("key does not decode to 32 bytes")
    if base64.b64encode(key).decode("ascii") != text:
        # As wg's key_from_base64: the 43rd character may not carry bits beyond the 32nd byte.
        raise InvalidKeyError("key is not canonical base64: its last character has unused bits set")
    return key


def from_hex(text: str) -> bytes:
    """Decode a key as the configuration socket writes it: 64 lowercase hex digits."""
    if len(text) != 2 * KEY_LEN or not all(c in string.hexdigits for c in text):
        raise InvalidKeyError("key is not 64 hex digits")
    return bytes.fromhex(text)


def redact(key: bytes | None) -> str:
    """How a secret appears in repr and logs."""
    return "(none)" if key is None else "(hidden)"
