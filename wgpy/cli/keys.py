"""`wgpy genkey`, `wgpy genpsk` and `wgpy pubkey`: the behaviour of `wg`'s key commands.

Modelled on wireguard-tools' src/genkey.c, src/pubkey.c and src/encoding.c: keys are printed as
base64, one per line; `pubkey` reads exactly 44 characters from stdin, and after them accepts only
whitespace or NULs. Randomness comes from os.urandom here, at the edge: wgpy.core.keys takes it
as an argument.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable

from wgpy.core.keys import (
    Rng,
    from_base64,
    generate_preshared_key,
    generate_private_key,
    public_key,
    to_base64,
)
from wgpy.errors import InvalidKeyError

PROG = "wgpy"
KEY_BASE64_LEN = 44
# What `wg pubkey` skips after the key: NUL, and char_is_space (src/ctype.h): \t\n\v\f\r and space.
_IGNORED_AFTER_KEY = frozenset("\0\t\n\v\f\r ")


def genkey(rng: Rng = os.urandom) -> int:
    """Print a new private key: 32 random bytes, clamped for Curve25519."""
    return _print_new_key(generate_private_key(rng))


def genpsk(rng: Rng = os.urandom) -> int:
    """Print a new preshared key: 32 random bytes, unclamped."""
    return _print_new_key(generate_preshared_key(rng))


def pubkey() -> int:
    """Read a base64 private key from stdin and print its public key."""
    try:
        private_key = parse_private_key_input(_read_stdin())
    except InvalidKeyError as error:
        print(f"{PROG} pubkey: invalid private key on stdin: {error}", file=sys.stderr)
        return 1
    print(to_base64(public_key(private_key)))
    return 0


def parse_private_key_input(text: str) -> bytes:
    """A private key as `wg pubkey` reads it: 44 characters, then only whitespace or NULs."""
    key_text, rest = text[:KEY_BASE64_LEN], text[KEY_BASE64_LEN:]
    if len(key_text) < KEY_BASE64_LEN:
        raise InvalidKeyError(f"expected 44 characters of base64, got {len(text.rstrip())}")
    if not set(rest) <= _IGNORED_AFTER_KEY:
        raise InvalidKeyError("trailing characters found after the key")
    return from_base64(key_text)


_COMMANDS: dict[str, Callable[[], int]] = {"genkey": genkey, "genpsk": genpsk, "pubkey": pubkey}


def run(command: str, argv: list[str]) -> int:
    """Run `wgpy COMMAND ARGV...` for "genkey", "genpsk" or "pubkey"; return the exit status.

    `argv` holds the arguments after the command; like wg, these commands take none.
    """
    action = _COMMANDS.get(command)
    if action is None:
        raise ValueError(f"not a key command: {command!r}")
    if argv:
        print(f"Usage: {PROG} {command}", file=sys.stderr)
        return 1
    return action()


def _print_new_key(key: bytes) -> int:
    _warn_if_world_accessible()
    print(to_base64(key))
    return 0


def _warn_if_world_accessible() -> None:
    """genkey.c's warning when stdout is a regular file that others may access."""
    try:
        mode = os.fstat(sys.stdout.fileno()).st_mode
    except (OSError, ValueError):  # no file descriptor behind stdout (io.UnsupportedOperation)
        return
    if stat.S_ISREG(mode) and mode & stat.S_IRWXO:
        print(
            "Warning: writing to world accessible file.\n"
            "Consider setting the umask to 077 and trying again.",
            file=sys.stderr,
        )


def _read_stdin() -> str:
    """All of stdin, one character per byte, so stray bytes fail as base64 rather than as UTF-8."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin.read()
    data: bytes = buffer.read()
    return data.decode("latin-1")
