"""The optional accelerator: transport messages sealed and opened a whole batch per call, in C
(wgpy/io/_accel.c) with ChaCha20-Poly1305 composed from OpenSSL's ChaCha20 and Poly1305 (RFC 8439
section 2.8; ~30% less per 1420-byte message than OpenSSL's own AEAD, whose per-message setup
is half its cost), TSO super-packets cut into segments, and segments merged when coalesced, with
the GIL released for the batch; the headers of a batch read in one
call, so that the device checks a batch at once; and, where it was built with libsodium's
headers, a lone message (a ping's) sealed and opened over libsodium, as OpenSSL's setup for
each call is most of what one packet costs it.

wgpy/core/transport.py, ippacket.py, wgpy/io/vnet/segment.py and coalesce.py are the
references, which this matches byte for byte (tests/unit/test_accel.py holds them to it); the
device takes the ciphers as its `batch_cipher` and `lone_cipher`, `segment` calls
`compiled_split`, `coalesce` `compiled_merge` and `compiled_follow_on`. The module is built by
`pip install .` where a C compiler and the headers of Python and OpenSSL are present; without
it, or with WGPY_PURE=1 in the environment, wgpy runs on the pure path.

It is a CPython extension rather than cffi: no dependency beyond the compiler (and libsodium,
where present), and the Py_buffer and bytes objects it fills are handled without a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from wgpy import compiled
from wgpy.core.constants import REJECT_AFTER_MESSAGES
from wgpy.core.keypair import Keypair
from wgpy.core.transport import (
    BatchCipher,
    LoneCipher,
    decrypt_packet,
    encrypt_packet,
    encrypt_packets,
)

PURE_VARIABLE: Final = compiled.PURE_VARIABLE
Buffer = bytes | bytearray | memoryview

try:
    from wgpy.io import _accel  # type: ignore[attr-defined]
except ImportError as error:  # not built: no compiler or headers where wgpy was installed
    _accel = None
    _not_built = f"accelerator not built ({error})"

available: Final = _accel is not None
# Why the accelerator is missing; empty when it is built.
reason: Final = "" if available else _not_built
# libsodium's version, where the accelerator was built with it (its headers were found), which
# seals and opens lone packets; None where not.
sodium: Final[str | None] = _accel.sodium if available else None


def in_use() -> bool:
    """Whether the data path runs on the accelerator: built, and not turned off."""
    return available and not compiled.pure_wanted()


def path() -> str:
    """Which path is in use and why, for `wgpy --version` and the log."""
    if in_use() and sodium is not None:
        return f"accelerated ({_accel.openssl}; libsodium {sodium} for lone packets)"
    if in_use():
        return f"accelerated ({_accel.openssl})"
    if available:
        return f"pure Python ({PURE_VARIABLE} is set)"
    return f"pure Python ({reason})"


# The accelerator's twin of segment._split, when in use: (packet, l4_start, header_len,
# gso_size, tcp, ipv4) -> segments.
compiled_split: Callable[[Buffer, int, int, int, bool, bool], list[bytes]] | None = (
    _accel.split if in_use() else None
)


# Its twin of coalesce._Run.build for a run of two or more: (segments, l4_start, header_len,
# tcp) -> the super-packet behind its virtio-net header (_headers, then the payloads).
compiled_merge: Callable[[list[bytes], int, int, bool], bytes] | None = (
    _accel.merge if in_use() else None
)


# Its twin of coalesce._Run.follows and append in turn: (packets, start, first, l4_start,
# header_len, tcp, length, next_sequence) -> how many of packets from start on follow the run.
compiled_follow_on: Callable[[list[bytes], int, bytes, int, int, bool, int, int], int] | None = (
    _accel.follow_on if in_use() else None
)


def batch_cipher() -> BatchCipher | None:
    """The device's batch cipher: the compiled one when in use, else None (the pure path)."""
    return CompiledCipher() if in_use() else None


def lone_cipher() -> LoneCipher | None:
    """The device's lone cipher: libsodium's when in use and built with it, else None."""
    return SodiumCipher() if in_use() and sodium is not None else None


class SodiumCipher:
    """A LoneCipher on the compiled module's libsodium functions. A keypair without its raw
    keys goes the pure way."""

    def seal(self, keypair: Keypair, packet: bytes, mtu: int) -> bytes:
        key = keypair.send_key
        if not key:
            return encrypt_packet(keypair, packet, mtu)
        counter = keypair.send_counter
        keypair.send_counter = counter + 1
        message: bytes = _accel.seal_lone(key, keypair.remote_index, counter, packet, mtu)
        return message

    def open(self, keypair: Keypair, message: bytes | memoryview) -> bytes | None:
        key = keypair.receive_key
        if not key:
            return decrypt_packet(keypair, _counter(message), message[16:])
        plaintext: bytes | None = _accel.open_lone(key, message, REJECT_AFTER_MESSAGES)
        return plaintext


class CompiledCipher:
    """A BatchCipher on the compiled module. A keypair without its raw keys (one built from
    cipher objects alone) goes the pure way."""

    def seal(self, keypair: Keypair, packets: Sequence[bytes], mtu: int) -> list[bytes]:
        if not keypair.send_key:
            return encrypt_packets(keypair, packets, mtu)
        counter = keypair.send_counter
        messages: list[bytes] = _accel.seal(
            keypair.send_key, keypair.remote_index, counter, packets, mtu
        )
        keypair.send_counter = counter + len(packets)
        return messages

    def open(
        self, keypairs: Sequence[Keypair | None], datagrams: Sequence[bytes | memoryview]
    ) -> list[bytes | None]:
        keys = [None if keypair is None else keypair.receive_key for keypair in keypairs]
        if b"" in keys:
            return [
                None if keypair is None else decrypt_packet(keypair, _counter(data), data[16:])
                for keypair, data in zip(keypairs, datagrams, strict=True)
            ]
        opened: list[bytes | None] = _accel.open(keys, datagrams, REJECT_AFTER_MESSAGES)
        return opened

    def open_all(
        self, keypair: Keypair, datagrams: Sequence[bytes | memoryview]
    ) -> list[bytes | None]:
        if not keypair.receive_key:
            return self.open([keypair] * len(datagrams), datagrams)
        # The key itself, not a list of it: the C function takes one key for all.
        opened: list[bytes | None] = _accel.open(
            keypair.receive_key, datagrams, REJECT_AFTER_MESSAGES
        )
        return opened

    def transport_run(self, datagrams: Sequence[bytes | memoryview]) -> tuple[int, int, int]:
        run: tuple[int, int, int] = _accel.transport_run(datagrams)
        return run

    def inner_packets(
        self, plaintexts: Sequence[bytes | None]
    ) -> tuple[list[bytes], list[bytes]] | None:
        inner: tuple[list[bytes], list[bytes]] | None = _accel.inner_packets(plaintexts)
        return inner

    def common_destination(self, packets: Sequence[bytes]) -> bytes | None:
        destination: bytes | None = _accel.common_destination(packets)
        return destination


def _counter(data: bytes | memoryview) -> int:
    return int.from_bytes(data[8:16], "little")
