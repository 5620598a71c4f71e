"""Endpoint host names to addresses, as wg(8) resolves them (wireguard-tools src/config.c
parse_endpoint and parse_dns_retries), for `wgpy set`, `wgpy setconf` and wgpy-quick alike.

The answer is getaddrinfo's first for UDP. A transient failure is announced on stderr and tried
again, after a pause of 1 s that grows by a fifth each time up to 20 s, as often as
WG_ENDPOINT_RESOLUTION_RETRIES says: 15 times unless set, and "infinity" never gives up.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Final

from wgpy.errors import WgpyError
from wgpy.values import InvalidValue, parse_number

RETRIES_VARIABLE: Final = "WG_ENDPOINT_RESOLUTION_RETRIES"
DEFAULT_RETRIES: Final = 15
FIRST_PAUSE_US: Final = 1_000_000  # wg counts in microseconds, in integers
MAX_PAUSE_US: Final = 20_000_000

# The failures glibc calls permanent (https://sourceware.org/glibc/wiki/NameResolver): no retry.
_PERMANENT: Final = frozenset(
    code
    for code in (socket.EAI_NONAME, socket.EAI_FAIL, getattr(socket, "EAI_NODATA", None))
    if code is not None
)


class ResolutionError(WgpyError, ValueError):
    """An endpoint that does not resolve; the message is wg's."""


def resolve(host: str, port: int | str, *, shown_as: str | None = None) -> tuple[str, int]:
    """The first address and port getaddrinfo finds for UDP. Raises ResolutionError, whose
    message names the endpoint as `shown_as` (host:port unless given, IPv6 in brackets)."""
    shown_as = shown_as or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    retries = _retries()
    pause = FIRST_PAUSE_US
    while True:
        try:
            found = socket.getaddrinfo(
                host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM, socket.IPPROTO_UDP
            )
            break
        except socket.gaierror as error:
            failure = f"{error.strerror}: `{shown_as}'"
            if error.errno in _PERMANENT or retries == 0:
                raise ResolutionError(failure) from None
        except (UnicodeError, ValueError):  # no IDNA name, or a NUL: no name getaddrinfo knows
            raise ResolutionError(f"Name or service not known: `{shown_as}'") from None
        retries -= 1
        print(f"{failure}. Trying again in {pause / 1e6:.2f} seconds...", file=sys.stderr)
        time.sleep(pause / 1e6)
        pause = min(MAX_PAUSE_US, pause * 6 // 5)
    family, _, _, _, address = found[0]
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise ResolutionError(f"Neither IPv4 nor IPv6 address found: `{shown_as}'")
    return str(address[0]), int(address[1])


def _retries() -> int:
    """How often to try again; -1 for "infinity"."""
    value = os.environ.get(RETRIES_VARIABLE)
    if value is None:
        return DEFAULT_RETRIES
    if value == "infinity":
        return -1
    try:
        return parse_number(value, 0x7FFFFFFF)
    except InvalidValue:
        raise ResolutionError(f"Unable to parse {RETRIES_VARIABLE}: `{value}'") from None
