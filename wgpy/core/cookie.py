"""mac1, mac2 and cookie replies (whitepaper section 5.4.4 and 5.4.7).

`CookieChecker` is the receiving side of a device: it checks mac1 always and mac2 under load, and
makes cookie replies. `CookieGenerator` is the sending side, one per peer: it writes the MACs of our
handshake messages to that peer and takes the cookie replies it sends us.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, auto

from cryptography.exceptions import InvalidTag

from wgpy.core.constants import COOKIE_REFRESH_TIME, LABEL_COOKIE, LABEL_MAC1
from wgpy.core.crypto import hash_, mac, xaead_decrypt, xaead_encrypt
from wgpy.core.messages import CookieReply

Rng = Callable[[int], bytes]
_ZERO_MAC = bytes(16)


def mac1_key(static_public: bytes) -> bytes:
    return hash_(LABEL_MAC1 + static_public)


def cookie_key(static_public: bytes) -> bytes:
    return hash_(LABEL_COOKIE + static_public)


class MacState(Enum):
    INVALID_MAC = auto()
    VALID_MAC_BUT_NO_COOKIE = auto()
    VALID_MAC_WITH_COOKIE = auto()


class CookieChecker:
    """Our side of mac1/mac2, keyed by our own static public key."""

    def __init__(self, static_public: bytes, rng: Rng) -> None:
        self._mac1_key = mac1_key(static_public)
        self._cookie_key = cookie_key(static_public)
        self._rng = rng
        self._secret = b""
        self._secret_born = float("-inf")

    def check(self, message: bytes, source: bytes, now: float, check_cookie: bool) -> MacState:
        """Classify a handshake message; `source` is the sender's address bytes and port."""
        body, mac1_, mac2_ = message[:-32], message[-32:-16], message[-16:]
        if mac(self._mac1_key, body) != mac1_:
            return MacState.INVALID_MAC
        if not check_cookie:
            return MacState.VALID_MAC_BUT_NO_COOKIE
        if mac(self._cookie(source, now), message[:-16]) != mac2_:
            return MacState.VALID_MAC_BUT_NO_COOKIE
        return MacState.VALID_MAC_WITH_COOKIE

    def make_reply(self, message: bytes, receiver: int, source: bytes, now: float) -> CookieReply:
        """The cookie reply to a handshake `message` whose sender index is `receiver`."""
        nonce = self._rng(24)
        encrypted = xaead_encrypt(
            self._cookie_key, nonce, self._cookie(source, now), message[-32:-16]
        )
        return CookieReply(receiver, nonce, encrypted)

    def _cookie(self, source: bytes, now: float) -> bytes:
        # The secret R_m changes every two minutes, so a cookie is good for at most that long.
        if now - self._secret_born >= COOKIE_REFRESH_TIME:
            self._secret = self._rng(32)
            self._secret_born = now
        return mac(self._secret, source)


class CookieGenerator:
    """Our side of a peer's mac1/mac2: keyed by the peer's static public key."""

    def __init__(self, remote_static: bytes) -> None:
        self._mac1_key = mac1_key(remote_static)
        self._cookie_key = cookie_key(remote_static)
        self._cookie = b""
        self._cookie_time = float("-inf")
        self._last_mac1 = b""

    def add_macs(self, message: bytes, now: float) -> bytes:
        """`message` with its last 32 bytes replaced by mac1 and mac2."""
        body = message[:-32]
        mac1_ = mac(self._mac1_key, body)
        self._last_mac1 = mac1_
        if now - self._cookie_time < COOKIE_REFRESH_TIME:
            mac2_ = mac(self._cookie, body + mac1_)
        else:
            mac2_ = _ZERO_MAC
        return body + mac1_ + mac2_

    def consume_reply(self, reply: CookieReply, now: float) -> bool:
        """Take the cookie from a reply to our last handshake message; False if it is not one."""
        if not self._last_mac1:
            return False
        try:
            cookie = xaead_decrypt(
                self._cookie_key, reply.nonce, reply.encrypted_cookie, self._last_mac1
            )
        except InvalidTag:
            return False
        self._cookie, self._cookie_time = cookie, now
        return True
