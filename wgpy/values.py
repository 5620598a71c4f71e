"""The values wg(8) reads, one parser each, with wireguard-tools' rules (src/config.c parse_key,
parse_port, parse_fwmark, parse_ip, parse_allowedips, parse_endpoint and
parse_persistent_keepalive). The configuration files (wgpy.config), `wgpy set` (wgpy.cli.wg) and
the numbers of the configuration protocol (wgpy.uapi) all read them here.

A value that does not parse raises InvalidValue, whose message says why, for a configuration
file's error. The failures wg words differently have a subclass of their own (InvalidAddress,
UnmatchedBrace), so the command line can print wg's messages instead.

Pure: no sockets, clocks or randomness. Two parsers ask the C library, as wg does: `parse_port`
(getaddrinfo with no host reads a service name from the services database) and `pack_ip`
(inet_pton, which reads no file).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final

from wgpy.core import keys
from wgpy.errors import InvalidKeyError, WgpyError

ASCII_SPACE: Final = " \t\n\v\f\r"  # wireguard-tools' char_is_space
KEY_BASE64_LEN: Final = 44

_HEXADECIMAL = re.compile(r"[0-9a-fA-F]+")
_UINT32_MAX: Final = 0xFFFFFFFF


class InvalidValue(WgpyError, ValueError):
    """A value that does not parse; the message says why."""


class InvalidAddress(InvalidValue):
    """An IP address inet_pton does not read; `text` is the address."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(f"not an IP address: {text!r}")


class UnmatchedBrace(InvalidValue):
    """An endpoint that opens a '[' and does not close it."""


def strip_spaces(text: str) -> str:
    """`text` without its ASCII whitespace, as wg reads a configuration line or `allowed-ips`."""
    return "".join(char for char in text if char not in ASCII_SPACE)


def parse_number(text: str, maximum: int, *, minimum: int = 0) -> int:
    """Decimal digits and nothing else (no sign, space or underscore), for a number from
    `minimum` to `maximum`: what wg's strtoul reads after it checks for a leading digit, and
    what Go's strconv.ParseUint reads."""
    number = _digits(text, 10)
    if number is None or not minimum <= number <= maximum:
        raise InvalidValue(f"not a number in {minimum}-{maximum}: {text!r}")
    return number


def _digits(text: str, base: int) -> int | None:
    """The number `text` spells in `base` if it is all digits, else None."""
    # ASCII isdigit() is [0-9]+, several times faster than the pattern (a port or keepalive of
    # every peer of a big `set` comes here).
    digits = text.isdigit() if base == 10 else _HEXADECIMAL.fullmatch(text) is not None
    significant = text.lstrip("0")
    if not (digits and text.isascii()) or len(significant) > 20:
        return None  # More than 20 digits is more than 64 bits, and int() refuses huge strings.
    return int(significant or "0", base)


def parse_key(text: str) -> bytes:
    """A key as wg's key_from_base64 reads it: exactly 44 characters of canonical base64."""
    if len(text) != KEY_BASE64_LEN:  # keys.from_base64 would forgive surrounding space
        raise InvalidValue(f"key is not {KEY_BASE64_LEN} characters of base64 ending in '='")
    try:
        return keys.from_base64(text)
    except InvalidKeyError as error:
        raise InvalidValue(str(error)) from None


def parse_port(text: str) -> int:
    """A UDP port number or service name, as getaddrinfo(AI_PASSIVE) reads it for wg: `https`
    is 443, and a number keeps its low 16 bits (70000 is 4464). The messages are wg's."""
    if not text:
        raise InvalidValue("Unable to parse empty port")
    try:
        found = socket.getaddrinfo(
            None,
            text.encode(errors="surrogateescape"),  # the bytes wg would pass, from any argv
            socket.AF_UNSPEC,
            socket.SOCK_DGRAM,
            socket.IPPROTO_UDP,
            socket.AI_PASSIVE,
        )
    except socket.gaierror as error:
        raise InvalidValue(f"{error.strerror}: `{text}'") from None
    return int(found[0][4][1])


def parse_fwmark(text: str) -> int:
    """`off` in any case, or 32 bits in decimal, or in hexadecimal after a lowercase 0x."""
    if text.lower() == "off":
        return 0
    hexadecimal = text.startswith("0x") and len(text) > 2
    fwmark = _digits(text[2:], 16) if hexadecimal else _digits(text, 10)
    if fwmark is None or fwmark > _UINT32_MAX:
        raise InvalidValue(f"neither off nor a number in 0-0x{_UINT32_MAX:x}: {text!r}")
    return fwmark


def parse_persistent_keepalive(text: str) -> int:
    """`off` in any case, or seconds up to 65535; 0 is off too."""
    return 0 if text.lower() == "off" else parse_number(text, 0xFFFF)


def pack_ip(text: str) -> bytes:
    """The 4 or 16 bytes of an address as inet_pton reads it: IPv6 if it has a colon, without a
    zone. Some twenty times faster than the ipaddress module's parser, which takes the same."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate
        raise InvalidAddress(text) from None


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as inet_pton reads it: IPv6 if it has a colon, without a zone."""
    return ipaddress.ip_address(pack_ip(text))


def parse_allowed_ip(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """One entry of an allowed-IPs list: an address, then optionally '/' and a prefix length
    (a host's without it). As written, host part and all: `.network` is what the device keeps."""
    address_text, slash, cidr = text.partition("/")
    packed = pack_ip(address_text)
    width = len(packed) * 8
    bits = parse_number(cidr, width) if slash else width
    interface = ipaddress.IPv4Interface if width == 32 else ipaddress.IPv6Interface
    return interface((int.from_bytes(packed, "big"), bits))


def network(packed: bytes, bits: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of the first `bits` of an address's 4 or 16 bytes (its host bits cleared)."""
    width = len(packed) * 8
    kind = ipaddress.IPv4Network if width == 32 else ipaddress.IPv6Network
    made = kind((int.from_bytes(packed, "big") >> (width - bits) << (width - bits), bits))
    if bits == width - 1:
        # ipaddress makes a /31's or /127's `hosts` its own bound __iter__: a reference cycle.
        # The same two addresses, without one:
        first = made.network_address
        made.hosts = lambda: iter((first, first + 1))  # type: ignore[method-assign,assignment]
    return made


def parse_endpoint(text: str) -> tuple[str, str]:
    """The host and port of "[host]:port" or "host:port" (cut at the last colon), as wg finds
    them before it resolves them: either may be a name, and the host may be empty."""
    if text.startswith("["):
        host, brace, rest = text[1:].partition("]")
        if not brace:
            raise UnmatchedBrace(f"no matching ']' in endpoint {text!r}")
        colon, port = rest[:1], rest[1:]
    else:
        host, colon, port = text.rpartition(":")
    if colon != ":" or not port:
        raise InvalidValue(f"endpoint is not host:port: {text!r}")
    return host, port
