"""What `wgpy proxy`'s options say, read and checked: listeners (`[ADDR:]PORT`), forwards
(`-L tcp|udp:[ADDR:]PORT:HOST:PORT`, `-R tcp|udp:PORT:HOST:PORT`) and the `--socks5-auth` file
(`user:password` lines). Pure: the caller reads the file and checks its mode.

An IPv6 ADDR or HOST is written in brackets: `[::1]:1080`, `tcp:8080:[fd00::7]:80`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from wgpy.errors import ConfigError, WgpyError

LOOPBACK = "127.0.0.1"
Transport = Literal["tcp", "udp"]
# A host: a bracketed IPv6 address or anything without a colon; then a port.
_HOST = r"(?:\[[^\]]+\]|[^:\[\]]+)"
_LISTEN = re.compile(rf"(?:(?P<host>{_HOST}):)?(?P<port>[^:]+)")
_LOCAL = re.compile(rf"(?P<transport>[^:]+):{_LISTEN.pattern}:(?P<to_host>{_HOST}):(?P<to>[^:]+)")
_REMOTE = re.compile(rf"(?P<transport>[^:]+):(?P<port>[^:]+):(?P<to_host>{_HOST}):(?P<to>[^:]+)")


class SpecError(ValueError, WgpyError):
    """An option's value that does not read; the message names the option and the value."""


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


@dataclass(frozen=True, slots=True)
class Forward:
    """-L: `listen` on this machine to `host`:`port` in the tunnel; -R: `listen` on the tunnel
    address (its host unused) to `host`:`port` from this machine."""

    transport: Transport
    listen: Listen
    host: str
    port: int


def parse_listen(option: str, value: str) -> Listen:
    match = _LISTEN.fullmatch(value)
    if match is None:
        raise SpecError(f"{option} {value!r}: not [ADDR:]PORT")
    host = _unbracket(match["host"]) if match["host"] else LOOPBACK
    return Listen(host, _port(option, value, match["port"], allow_zero=True))


def parse_local_forward(value: str) -> Forward:
    match = _LOCAL.fullmatch(value)
    if match is None:
        raise SpecError(f"-L {value!r}: not tcp|udp:[ADDR:]PORT:HOST:PORT")
    host = _unbracket(match["host"]) if match["host"] else LOOPBACK
    listen = Listen(host, _port("-L", value, match["port"]))
    return _forward("-L", value, match, listen)


def parse_remote_forward(value: str) -> Forward:
    match = _REMOTE.fullmatch(value)
    if match is None:
        raise SpecError(f"-R {value!r}: not tcp|udp:PORT:HOST:PORT")
    listen = Listen("0.0.0.0", _port("-R", value, match["port"]))
    return _forward("-R", value, match, listen)


def _forward(option: str, value: str, match: re.Match[str], listen: Listen) -> Forward:
    transport = match["transport"].lower()
    if transport not in ("tcp", "udp"):
        raise SpecError(f"{option} {value!r}: {match['transport']!r} is neither tcp nor udp")
    to_port = _port(option, value, match["to"])
    return Forward(transport, listen, _unbracket(match["to_host"]), to_port)  # type: ignore[arg-type]


def _port(option: str, value: str, text: str, allow_zero: bool = False) -> int:
    if not (text.isascii() and text.isdigit()) or not (0 if allow_zero else 1) <= int(text) < 65536:
        raise SpecError(f"{option} {value!r}: {text!r} is not a port")
    return int(text)


def _unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def parse_credentials(text: str, file: str) -> dict[str, str]:
    """`user:password` lines (the password may hold colons); blank lines and # comments skipped."""
    credentials: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, colon, password = line.partition(":")
        if not colon or not user or not password:
            raise ConfigError("not user:password", file=file, line=number)
        if len(user.encode()) > 255 or len(password.encode()) > 255:
            raise ConfigError("RFC 1929 allows 255 bytes at most", file=file, line=number)
        credentials[user] = password
    if not credentials:
        raise ConfigError("no user:password line", file=file)
    return credentials


def exposure_refusal(listens: list[Listen], authenticated: bool) -> str | None:
    """Why these listeners must not start, or None: a listener on a non-loopback address
    without --socks5-auth would open the tunnel to whoever reaches that address."""
    if authenticated:
        return None
    exposed = [listen for listen in listens if not listen.loopback]
    if not exposed:
        return None
    where = ", ".join(f"{listen.host}:{listen.port}" for listen in exposed)
    return (
        f"refusing to listen on {where} without --socks5-auth: "
        "an open proxy into the tunnel is a hole (bind 127.0.0.1, or give --socks5-auth FILE)"
    )
