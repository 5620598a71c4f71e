"""The server side of SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), sans-IO.

A `Socks5Connection` takes the client's bytes (`receive`) and says what the listener must do:
`Request` (connect to, or associate UDP for, an address), or `Rejected` (send `data_to_send()`,
then close). The listener answers a Request with `reply(...)`, and from then on the connection is
a relay: `trailing_data()` holds whatever the client sent after its request. Every malformed,
truncated or unsupported message ends the connection with the RFC's reply where it has one;
nothing the client sends raises.

UDP ASSOCIATE's datagrams carry the request header of RFC 1928 section 7: `parse_udp_datagram`
and `udp_datagram` read and write it. Fragments (FRAG other than 0) are not supported: they are
dropped, as the RFC allows.
"""

from __future__ import annotations

import enum
import functools
import hmac
import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

VERSION: Final = 5
AUTH_VERSION: Final = 1  # RFC 1929's sub-negotiation version


class Method(enum.IntEnum):
    """Authentication methods (RFC 1928 section 3)."""

    NO_AUTHENTICATION_REQUIRED = 0x00
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE_METHODS = 0xFF


class Command(enum.IntEnum):
    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03


class AddressType(enum.IntEnum):
    IPV4 = 0x01
    DOMAINNAME = 0x03
    IPV6 = 0x04


class Reply(enum.IntEnum):
    """REP (RFC 1928 section 6)."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class Phase(enum.Enum):
    GREETING = "greeting"  # VER NMETHODS METHODS
    AUTHENTICATION = "authentication"  # RFC 1929's VER ULEN UNAME PLEN PASSWD
    REQUEST = "request"  # VER CMD RSV ATYP DST.ADDR DST.PORT
    AWAITING_REPLY = "awaiting reply"  # the listener is connecting
    RELAYING = "relaying"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Request:
    command: Command
    host: str  # an IP address in text or a domain name
    port: int
    username: str | None  # who authenticated, if anyone


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str  # for the log


Event = Request | Rejected


class Socks5Connection:
    """One client connection's SOCKS5 negotiation; see the module's docstring.

    `credentials` maps user names to passwords; with it, only RFC 1929 authentication is
    accepted, without it only "no authentication required"."""

    def __init__(self, credentials: Mapping[str, str] | None = None) -> None:
        self.credentials = credentials
        self.phase = Phase.GREETING
        self.username: str | None = None
        self._buffer = bytearray()
        self._outgoing = bytearray()

    def receive(self, data: bytes) -> list[Event]:
        """The client's next bytes; the events they complete (at most one, then the phase
        waits for the listener or the connection is closed)."""
        if self.phase == Phase.CLOSED:
            return []
        self._buffer += data
        if self.phase in (Phase.AWAITING_REPLY, Phase.RELAYING):
            return []  # the relay takes it from trailing_data()
        while True:
            before = self.phase
            event = self._step()
            if event is not None:
                return [event]
            if self.phase == before:
                return []

    def data_to_send(self) -> bytes:
        outgoing = bytes(self._outgoing)
        self._outgoing.clear()
        return outgoing

    def reply(self, reply: Reply, bound: tuple[str, int] = ("0.0.0.0", 0)) -> None:
        """The answer to the Request: SUCCEEDED with the address the listener bound (for UDP
        ASSOCIATE, where the client must send its datagrams), or why it failed."""
        if self.phase != Phase.AWAITING_REPLY:
            raise RuntimeError(f"no request awaits a reply in phase {self.phase.value}")
        self._outgoing += bytes([VERSION, reply, 0]) + encode_address(*bound)
        self.phase = Phase.RELAYING if reply == Reply.SUCCEEDED else Phase.CLOSED

    @property
    def trailing(self) -> int:
        """How many bytes trailing_data() holds so far."""
        return len(self._buffer)

    def trailing_data(self) -> bytes:
        """What the client sent after its request: the first bytes to relay."""
        trailing = bytes(self._buffer)
        self._buffer.clear()
        return trailing

    def _step(self) -> Event | None:
        if self.phase == Phase.GREETING:
            return self._greeting()
        if self.phase == Phase.AUTHENTICATION:
            return self._authentication()
        return self._request()

    def _greeting(self) -> Event | None:
        buffer = self._buffer
        if len(buffer) < 2 or len(buffer) < 2 + buffer[1]:
            return self._reject_version() if buffer and buffer[0] != VERSION else None
        if buffer[0] != VERSION:
            return self._reject_version()
        methods = set(buffer[2 : 2 + buffer[1]])
        del buffer[: 2 + buffer[1]]
        wanted = (
            Method.USERNAME_PASSWORD
            if self.credentials is not None
            else Method.NO_AUTHENTICATION_REQUIRED
        )
        if wanted not in methods:
            self._outgoing += bytes([VERSION, Method.NO_ACCEPTABLE_METHODS])
            return self._close(f"no acceptable method among {sorted(methods)}")
        self._outgoing += bytes([VERSION, wanted])
        self.phase = Phase.AUTHENTICATION if wanted == Method.USERNAME_PASSWORD else Phase.REQUEST
        return None

    def _authentication(self) -> Event | None:
        fields = _length_prefixed(self._buffer, start=1, count=2)
        if self._buffer and self._buffer[0] != AUTH_VERSION:
            self._outgoing += bytes([AUTH_VERSION, 1])
            return self._close(f"authentication version {self._buffer[0]}")
        if fields is None:
            return None
        (username, password), end = fields
        del self._buffer[:end]
        if not self._authenticated(username, password):
            self._outgoing += bytes([AUTH_VERSION, 1])
            return self._close("bad username or password")
        self.username = username.decode("utf-8", errors="replace")
        self._outgoing += bytes([AUTH_VERSION, 0])
        self.phase = Phase.REQUEST
        return None

    def _authenticated(self, username: bytes, password: bytes) -> bool:
        assert self.credentials is not None
        try:
            expected = self.credentials.get(username.decode("utf-8"))
        except UnicodeDecodeError:
            return False
        # Compared in constant time, and a missing user costs as much as a wrong password.
        given, wanted = password, (expected or "").encode("utf-8")
        return hmac.compare_digest(given, wanted) and expected is not None

    def _request(self) -> Event | None:
        buffer = self._buffer
        if buffer and buffer[0] != VERSION:
            return self._reject_version()
        if len(buffer) < 4:
            return None
        if buffer[2] != 0:
            return self._fail(Reply.GENERAL_FAILURE, f"reserved byte {buffer[2]}")
        parsed = _address(buffer, 3)
        if parsed is None:
            return None
        if isinstance(parsed, str):
            return self._fail(Reply.ADDRESS_TYPE_NOT_SUPPORTED, parsed)
        host, port, end = parsed
        command_byte = buffer[1]
        del buffer[:end]
        try:
            command = Command(command_byte)
        except ValueError:
            return self._fail(Reply.COMMAND_NOT_SUPPORTED, f"command {command_byte}")
        if command == Command.BIND:
            return self._fail(Reply.COMMAND_NOT_SUPPORTED, "BIND")
        self.phase = Phase.AWAITING_REPLY
        return Request(command, host, port, self.username)

    def _reject_version(self) -> Rejected:
        return self._close(f"version {self._buffer[0]}, not {VERSION}")

    def _fail(self, reply: Reply, reason: str) -> Rejected:
        self._outgoing += bytes([VERSION, reply, 0]) + encode_address("0.0.0.0", 0)
        return self._close(reason)

    def _close(self, reason: str) -> Rejected:
        self.phase = Phase.CLOSED
        self._buffer.clear()
        return Rejected(reason)


def encode_address(host: str, port: int) -> bytes:
    """ATYP, the address and the port, as a request, reply or UDP header carries them."""
    return _host_field(host) + struct.pack("!H", port)


@functools.lru_cache(maxsize=64)  # a reply's bound address is one of few: parsed once
def _host_field(host: str) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("ascii")  # as the client sent it; no IDNA here
        if not 0 < len(name) < 256:
            raise ValueError(f"{host!r}: a SOCKS5 domain name has 1 to 255 bytes") from None
        return bytes([AddressType.DOMAINNAME, len(name)]) + name
    kind = AddressType.IPV4 if address.version == 4 else AddressType.IPV6
    return bytes([kind]) + address.packed


def _address(data: bytes | bytearray, at: int) -> tuple[str, int, int] | str | None:
    """(host, port, end) of the ATYP-led address at `at`; None when incomplete, a reason when
    the address type is unknown or the name is not text."""
    if len(data) <= at:
        return None
    kind = data[at]
    if kind == AddressType.IPV4:
        size, start = 4, at + 1
    elif kind == AddressType.IPV6:
        size, start = 16, at + 1
    elif kind == AddressType.DOMAINNAME:
        if len(data) <= at + 1:
            return None
        size, start = data[at + 1], at + 2
    else:
        return f"address type {kind}"
    end = start + size + 2
    if len(data) < end:
        return None
    raw = bytes(data[start : start + size])
    (port,) = struct.unpack_from("!H", data, start + size)
    if kind != AddressType.DOMAINNAME:
        # (IPv4's dotted quad directly: ipaddress takes a dozen calls for it)
        host = "{}.{}.{}.{}".format(*raw) if size == 4 else str(ipaddress.ip_address(raw))
        return host, port, end
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        return "a domain name that is not ASCII"
    if not name or not name.isprintable():
        return "an empty or unprintable domain name"
    return name, port, end


def _length_prefixed(data: bytearray, start: int, count: int) -> tuple[list[bytes], int] | None:
    """`count` fields of a length byte and that many bytes, from `start`; None if incomplete."""
    fields, at = [], start
    for _ in range(count):
        if len(data) <= at or len(data) < at + 1 + data[at]:
            return None
        fields.append(bytes(data[at + 1 : at + 1 + data[at]]))
        at += 1 + data[at]
    return fields, at


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    host: str
    port: int
    payload: bytes


def parse_udp_datagram(data: bytes) -> UdpDatagram | None:
    """RSV FRAG ATYP DST.ADDR DST.PORT DATA; None for a fragment, a short or malformed header."""
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0:
        return None
    parsed = _address(data, 3)
    if parsed is None or isinstance(parsed, str):
        return None
    host, port, end = parsed
    return UdpDatagram(host, port, data[end:])


def udp_datagram(host: str, port: int, payload: bytes) -> bytes:
    return b"\x00\x00\x00" + encode_address(host, port) + payload
