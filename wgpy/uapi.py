"""The cross-platform configuration protocol, as wireguard-go serves it. Pure: no sockets.

https://www.wireguard.com/xplatform/#configuration-protocol. The facts come from wireguard-go
device/uapi.go (IpcHandle, IpcSetOperation, IpcGetOperation), conn/bind_std.go (ParseEndpoint),
ipc/uapi_unix.go (the errno values) and from wireguard-tools src/ipc-uapi.h (what `wg` sends and
expects). One connection carries any number of requests, one after another:

    get=1\\n\\n                      ->  key=value lines of the state, then errno=0\\n\\n
    set=1\\nkey=value\\n ... \\n\\n    ->  errno=0\\n\\n, or errno=-22\\n\\n (a negated errno)

Keys are 64 hex digits. The server reads the stream with a `RequestReader`, which parses each
`set` line as it arrives (`SetParser`), and answers with `format_get` and `format_errno`; a client
(what `wg` does) uses `format_set` and `parse_get`. wgpy's own operations, `stats` and `capture`,
come at the end, each with its pair.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from wgpy.core.constants import KEY_LEN
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import clamp
from wgpy.errors import UapiError
from wgpy.values import InvalidAddress, network, pack_ip, parse_number

Operation = Literal["get", "set", "stats", "capture"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AllowedIP = ipaddress.IPv4Network | ipaddress.IPv6Network

# An all-zero private or preshared key in a `set` means "remove it" (wireguard-go IsZero).
ZERO_KEY: Final = bytes(KEY_LEN)
# The first 12 of the 16 bytes of an IPv4-mapped IPv6 address (RFC 4291 section 2.5.5.2).
_IPV4_MAPPED: Final = bytes(10) + b"\xff\xff"

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_ERRNO = re.compile(r"-?[0-9]{1,10}")
# Key names are short words. Anything else in a key's place may be key material that lost its
# '=' (a key pasted on its own line), so errors do not echo it.
_KEY_NAME = re.compile(r"[A-Za-z_]{1,32}")
# Go's netip.ParsePrefix: decimal bits without a sign or a leading zero.
_PREFIX_BITS = re.compile(r"0|[1-9][0-9]{0,2}")
# What Linux takes as an interface name (net/core/dev.c dev_valid_name: under IFNAMSIZ, no '/',
# no ':', no whitespace), which also covers an index.
_ZONE = re.compile(r"[^\s/:\x00]{1,15}")


@dataclass(slots=True)
class PeerUpdate:
    """One `public_key=` block of a `set` request: what to change on that peer.

    `None` leaves a setting as it is. After `remove`, the other fields stay at their defaults:
    wireguard-go checks the later lines of the block but applies none of them. The device applies
    the allowed IPs as `replace_allowed_ips`, then `removed_allowed_ips`, then `allowed_ips`, which
    is the request's order with each prefix reduced to its last mention.
    """

    public_key: bytes
    remove: bool = False
    update_only: bool = False
    preshared_key: bytes | None = field(default=None, repr=False)  # ZERO_KEY removes it
    endpoint: Endpoint | None = None
    persistent_keepalive_interval: int | None = None  # 0 turns it off
    replace_allowed_ips: bool = False
    allowed_ips: list[AllowedIP] = field(default_factory=list)
    removed_allowed_ips: list[AllowedIP] = field(default_factory=list)
    protocol_version: int | None = None

    def change_allowed_ip(self, prefix: AllowedIP, *, remove: bool) -> None:
        """Add or remove one prefix; the device applies removals before additions, so only a
        prefix's last mention counts."""
        target, other = (
            (self.removed_allowed_ips, self.allowed_ips)
            if remove
            else (self.allowed_ips, self.removed_allowed_ips)
        )
        if prefix in other:
            other.remove(prefix)
        if prefix not in target:
            target.append(prefix)


@dataclass(slots=True)
class DeviceUpdate:
    """A whole `set` request, parsed and checked before the device applies any of it.

    `private_key` is clamped as wireguard-go and the kernel store it; ZERO_KEY removes the key.
    A public key may appear in several blocks: the device applies them in order.
    """

    private_key: bytes | None = field(default=None, repr=False)
    listen_port: int | None = None
    fwmark: int | None = None  # 0 turns it off
    replace_peers: bool = False
    peers: list[PeerUpdate] = field(default_factory=list)


@dataclass(slots=True)
class PeerState:
    public_key: bytes
    preshared_key: bytes | None = field(default=None, repr=False)
    protocol_version: int = 1
    endpoint: Endpoint | None = None
    last_handshake_time: tuple[int, int] = (0, 0)  # (seconds, nanoseconds) since the epoch
    tx_bytes: int = 0
    rx_bytes: int = 0
    persistent_keepalive_interval: int = 0
    allowed_ips: list[AllowedIP] = field(default_factory=list)


@dataclass(slots=True)
class DeviceState:
    """What a `get` reports. Peers and their allowed IPs are written in list order."""

    private_key: bytes | None = field(default=None, repr=False)
    listen_port: int = 0
    fwmark: int = 0
    peers: list[PeerState] = field(default_factory=list)


# Framing ------------------------------------------------------------------------------------------

# The longest line a request may hold, newline aside: bufio.Scanner's MaxScanTokenSize, which bounds
# the lines wireguard-go reads. A longer one gets EINVAL and ends the connection.
MAX_LINE_BYTES: Final = 64 * 1024

_OPERATIONS: Final[dict[bytes, Operation]] = {
    b"get=1": "get",
    b"set=1": "set",
    b"stats=1": "stats",
    b"capture=1": "capture",
}


@dataclass(frozen=True, slots=True)
class Request:
    """A request cut from the stream, its body parsed as it arrived: a `set` carries its
    `update`, a `capture` its `capture`. If the body was malformed or cut short, `error` says
    how, and there is nothing to apply."""

    operation: Operation
    update: DeviceUpdate | None = None
    capture: CaptureRequest | None = None
    error: UapiError | None = None


class _BodyParser(Protocol):
    def line(self, line: str) -> None: ...


class RequestReader:
    """Cuts requests from one connection's byte stream, parsing each body line as it arrives: a
    `set` of any size is held only in its parsed form, never as text, and a line only up to
    MAX_LINE_BYTES.

    A body line that fails ends the parsing of its request, not the reading: the rest of the body
    is skipped to its empty line, and the request comes out with the first `error`, so that the
    connection goes on with the next request. Body lines lose one carriage return before the
    newline, as bufio.ScanLines drops it; operation lines and the empty line after get=1 are
    taken byte for byte, as wireguard-go reads them.
    """

    def __init__(self) -> None:
        # The start of a line whose newline has not come yet; a bytearray, so that a line sent
        # a byte at a time costs a copy of each byte, not of the whole line each time.
        self._partial = bytearray()
        self._operation: Operation | None = None  # of the request being read
        self._body: SetParser | CaptureParser | None = None
        self._error: UapiError | None = None

    def feed(self, data: bytes) -> Iterator[Request]:
        """Yield the requests that `data` completes; b"" is the end of the stream.

        Raises UapiError when the stream cannot go on: an operation other than get=1, set=1,
        stats=1 and capture=1 (EPROTO), a byte other than the empty line after get=1 (EINVAL),
        a line longer than MAX_LINE_BYTES (EINVAL). The server then replies with the errno and
        closes. At the end of the stream, a body without its empty line comes out with an
        EPROTO error, so that nothing of it is applied; an unfinished get gets no reply, as
        wireguard-go hangs up then.
        """
        if not data:
            if self._body is not None:
                cut = UapiError(errno.EPROTO, "the stream ended inside the request")
                yield self._finish(cut)
            return
        end = data.rfind(b"\n")
        if end >= 0:
            lines = (bytes(self._partial) + data[:end]).split(b"\n")
            self._partial = bytearray(data[end + 1 :])
            for line in lines:
                request = self._take(line)
                if request is not None:
                    yield request
        else:
            self._partial += data
        if len(self._partial) > MAX_LINE_BYTES:
            raise _line_too_long()
        if self._partial and self._operation is not None and self._body is None:
            # Not the empty line that ends a get: refused without waiting for the line's end.
            raise _trailing(self._operation, bytes(self._partial))

    def _take(self, line: bytes) -> Request | None:
        """One line, without its newline; the request it completes, if any."""
        if len(line) > MAX_LINE_BYTES:
            raise _line_too_long()
        operation = self._operation
        if operation is None:
            self._begin(line)
            return None
        if self._body is None:  # get or stats: an empty line ends it.
            if line:
                raise _trailing(operation, line)
            self._operation = None
            return Request(operation)
        line = line.removesuffix(b"\r")
        if not line:
            return self._finish(self._error)
        if self._error is None:
            try:
                self._body.line(line.decode("utf-8", errors="replace"))
            except UapiError as error:
                self._error = untraced(error)
        return None

    def _begin(self, line: bytes) -> None:
        operation = _OPERATIONS.get(line)
        if operation is None:
            raise UapiError(errno.EPROTO, f"invalid operation {line[:32]!r}")
        self._operation = operation
        if operation == "set":
            self._body = SetParser()
        elif operation == "capture":  # Framed as set=1: key=value lines, then an empty line.
            self._body = CaptureParser()

    def _finish(self, error: UapiError | None) -> Request:
        operation, body = self._operation, self._body
        assert operation is not None
        self._operation, self._body, self._error = None, None, None
        if error is not None:
            return Request(operation, error=error)
        if isinstance(body, SetParser):
            return Request(operation, update=body.update)
        assert isinstance(body, CaptureParser)
        return Request(operation, capture=body.request)


def untraced(error: UapiError) -> UapiError:
    """`error` without the frames it was raised through (nor the error it was raised from, and
    its frames): a frame refers to its caller's, which holds whatever keeps the error, a cycle
    that only a full collection would free (see tests/unit/test_cycles.py)."""
    error.__context__ = None
    return error.with_traceback(None)


def _line_too_long() -> UapiError:
    return UapiError(errno.EINVAL, f"a line longer than {MAX_LINE_BYTES} bytes")


def _trailing(operation: Operation, line: bytes) -> UapiError:
    return UapiError(errno.EINVAL, f"trailing character after {operation}=1: {line[:1]!r}")


def _parse_lines(parser: _BodyParser, lines: Iterable[str]) -> None:
    for line in lines:
        parser.line(line)


def format_errno(error: int) -> str:
    """The status that ends every reply; `error` is a positive errno, or 0 for success."""
    return f"errno={-error}\n\n"


def parse_errno(reply: str) -> int:
    """The errno a reply ends with, as `wg` reads a `set` reply (ipc-uapi.h): the value of its
    first errno= line, as a positive errno (0 for success). EPROTO if it has none, as when the
    device hung up early."""
    for line in reply.split("\n"):
        key, _, value = line.partition("=")
        if key == "errno":
            return _errno(value)
    return errno.EPROTO


def _errno(value: str) -> int:
    # The reply negates the errno; wg reads it with strtoll.
    return abs(int(value)) if _ERRNO.fullmatch(value) else errno.EPROTO


# set ----------------------------------------------------------------------------------------------


def parse_set(lines: Iterable[str]) -> DeviceUpdate:
    """Parse the body of a `set=1` request; see SetParser."""
    parser = SetParser()
    _parse_lines(parser, lines)
    return parser.update


class SetParser:
    """Parses the body of a `set=1` request a line at a time into `update`; raises UapiError at
    the first bad line. Line N counts from the first line after set=1.

    Lines before the first public_key= are device keys, the rest belong to the peer named last;
    a device key after a public_key= is an unknown peer key, as in wireguard-go.
    """

    def __init__(self) -> None:
        self.update = DeviceUpdate()
        self._peer: PeerUpdate | None = None
        self._number = 0

    def line(self, line: str) -> None:
        self._number += 1
        key, sep, value = line.partition("=")
        if not sep:
            # Unlike wireguard-go, the line is not echoed: it may be a key whose '=' was lost.
            raise UapiError(errno.EPROTO, f"line {self._number}: failed to parse line: no '='")
        try:
            self._take(key, value)
        except ValueError as error:
            raise UapiError(
                errno.EINVAL, f"line {self._number}: {shown_key(key)}: {error}"
            ) from None

    def _take(self, key: str, value: str) -> None:
        peer = self._peer
        if key == "public_key":
            self._peer = PeerUpdate(public_key=_parse_hex_key(value))
            self.update.peers.append(self._peer)
        elif peer is None:
            _set_device_key(self.update, key, value)
        elif key == "remove":
            _parse_true(value)
            self.update.peers[-1] = PeerUpdate(peer.public_key, remove=True)
            # wireguard-go goes on with a dummy peer: later lines are checked, then dropped.
            self._peer = PeerUpdate(peer.public_key)
        else:
            _set_peer_key(peer, key, value)


def shown_key(key: str) -> str:
    """`key` as an error message may show it: itself if it looks like a key name."""
    return key if _KEY_NAME.fullmatch(key) else "(unrecognized key)"


def _set_device_key(update: DeviceUpdate, key: str, value: str) -> None:
    if key == "private_key":
        private_key = _parse_hex_key(value)
        update.private_key = private_key if private_key == ZERO_KEY else clamp(private_key)
    elif key == "listen_port":
        update.listen_port = _parse_uint(value, 16)
    elif key == "fwmark":
        update.fwmark = _parse_uint(value, 32)
    elif key == "replace_peers":
        update.replace_peers = _parse_true(value)
    else:
        raise ValueError("invalid device key")


def _set_peer_key(peer: PeerUpdate, key: str, value: str) -> None:
    if key == "update_only":
        peer.update_only = _parse_true(value)
    elif key == "preshared_key":
        peer.preshared_key = _parse_hex_key(value)
    elif key == "endpoint":
        peer.endpoint = parse_endpoint(value)
    elif key == "persistent_keepalive_interval":
        peer.persistent_keepalive_interval = _parse_uint(value, 16)
    elif key == "replace_allowed_ips":
        peer.replace_allowed_ips = _parse_true(value)
        peer.allowed_ips.clear()
        peer.removed_allowed_ips.clear()
    elif key == "allowed_ip":
        _add_allowed_ip_change(peer, value)
    elif key == "protocol_version":
        if value != "1":
            raise ValueError(f"invalid protocol version {value!r}")
        peer.protocol_version = 1
    else:
        raise ValueError("invalid peer key")


def parse_peer_line(peer: PeerUpdate, line: str) -> None:
    """One `key=value` line of a peer's block into `peer`; raises ValueError."""
    key, sep, value = line.partition("=")
    if not sep:
        raise ValueError("no '='")
    _set_peer_key(peer, key, value)


def _add_allowed_ip_change(peer: PeerUpdate, value: str) -> None:
    # allowed_ip=-PREFIX removes a prefix from the peer (wireguard-go since 2025, wg's
    # WGALLOWEDIP_REMOVE_ME).
    removing = value.startswith("-")
    peer.change_allowed_ip(parse_allowed_ip(value.removeprefix("-")), remove=removing)


def format_set(update: DeviceUpdate) -> str:
    """The whole request, in the order `wg` writes it (ipc-uapi.h userspace_set_device)."""
    lines = ["set=1"]
    lines += _given(
        private_key=_hex(update.private_key),
        listen_port=update.listen_port,
        fwmark=update.fwmark,
        replace_peers=_true(update.replace_peers),
    )
    for peer in update.peers:
        lines += _peer_update_lines(peer)
    return "\n".join(lines) + "\n\n"


def _peer_update_lines(peer: PeerUpdate) -> list[str]:
    lines = [f"public_key={peer.public_key.hex()}"]
    if peer.remove:
        return [*lines, "remove=true"]
    lines += _given(
        protocol_version=peer.protocol_version,
        update_only=_true(peer.update_only),
        preshared_key=_hex(peer.preshared_key),
        endpoint=peer.endpoint,
        persistent_keepalive_interval=peer.persistent_keepalive_interval,
        replace_allowed_ips=_true(peer.replace_allowed_ips),
    )
    lines += [f"allowed_ip=-{format_prefix(prefix)}" for prefix in peer.removed_allowed_ips]
    lines += [f"allowed_ip={format_prefix(prefix)}" for prefix in peer.allowed_ips]
    return lines


def _given(**values: object) -> list[str]:
    """A `key=value` line for each value given (not None), in order."""
    return [f"{key}={value}" for key, value in values.items() if value is not None]


def _hex(key: bytes | None) -> str | None:
    return None if key is None else key.hex()


def _true(flag: bool) -> str | None:
    """A flag's value: `true` when it is set; when it is not, the key is left out."""
    return "true" if flag else None


# get ----------------------------------------------------------------------------------------------


def format_get(state: DeviceState) -> str:
    """The reply to `get=1`, byte for byte as wireguard-go's IpcGetOperation writes it."""
    peers = (
        format_peer_state(
            peer.public_key,
            preshared_key=peer.preshared_key,
            protocol_version=peer.protocol_version,
            endpoint=peer.endpoint,
            last_handshake_time=peer.last_handshake_time,
            tx_bytes=peer.tx_bytes,
            rx_bytes=peer.rx_bytes,
            persistent_keepalive_interval=peer.persistent_keepalive_interval,
            allowed_ips=map(format_prefix, peer.allowed_ips),
        )
        for peer in state.peers
    )
    head = format_device_state(state.private_key, state.listen_port, state.fwmark)
    return head + "".join(peers) + format_errno(0)


def format_device_state(private_key: bytes | None, listen_port: int, fwmark: int) -> str:
    """The lines of a `get` reply before the first peer's."""
    lines = []
    if private_key is not None and private_key != ZERO_KEY:
        lines.append(f"private_key={private_key.hex()}\n")
    if listen_port:
        lines.append(f"listen_port={listen_port}\n")
    if fwmark:
        lines.append(f"fwmark={fwmark}\n")
    return "".join(lines)


def format_peer_state(
    public_key: bytes,
    *,
    preshared_key: bytes | None,
    endpoint: Endpoint | None,
    last_handshake_time: tuple[int, int],
    tx_bytes: int,
    rx_bytes: int,
    persistent_keepalive_interval: int,
    allowed_ips: Iterable[str],
    protocol_version: int = 1,
) -> str:
    """One peer's lines of a `get` reply. `allowed_ips` come as `format_prefix` writes them: a
    server writes them from the prefixes it holds (format_packed_prefix), without making a
    network of each, which would take most of the time a reply of many peers takes."""
    seconds, nanoseconds = last_handshake_time
    endpoint_line = "" if endpoint is None else f"endpoint={endpoint}\n"
    return (
        f"public_key={public_key.hex()}\n"
        f"preshared_key={(preshared_key or ZERO_KEY).hex()}\n"
        f"protocol_version={protocol_version}\n"
        f"{endpoint_line}"
        f"last_handshake_time_sec={seconds}\n"
        f"last_handshake_time_nsec={nanoseconds}\n"
        f"tx_bytes={tx_bytes}\n"
        f"rx_bytes={rx_bytes}\n"
        f"persistent_keepalive_interval={persistent_keepalive_interval}\n"
    ) + "".join([f"allowed_ip={prefix}\n" for prefix in allowed_ips])


def parse_get(reply: str) -> DeviceState:
    """Read a `get` reply as `wg` does (ipc-uapi.h userspace_get_device); unknown keys are skipped.

    Raises UapiError with the reply's errno if it is not 0, and EPROTO if the reply is malformed.
    """
    state = DeviceState()
    peer: PeerState | None = None
    for number, line in enumerate(reply.split("\n"), start=1):
        key, sep, value = line.partition("=")
        if not sep:
            break
        try:
            if key == "errno":
                if status := _errno(value):
                    raise UapiError(status, "get failed")
                return state
            if key == "public_key":
                peer = PeerState(public_key=_parse_hex_key(value))
                state.peers.append(peer)
            elif peer is None:
                _get_device_key(state, key, value)
            else:
                _get_peer_key(peer, key, value)
        except ValueError as error:
            raise UapiError(errno.EPROTO, f"line {number}: {key}: {error}") from None
    raise UapiError(errno.EPROTO, "reply has no errno= line")


def _get_device_key(state: DeviceState, key: str, value: str) -> None:
    if key == "private_key":
        state.private_key = _parse_hex_key(value)
    elif key == "listen_port":
        state.listen_port = _parse_uint(value, 16)
    elif key == "fwmark":
        state.fwmark = _parse_uint(value, 32)


def _get_peer_key(peer: PeerState, key: str, value: str) -> None:
    if key == "preshared_key":
        preshared_key = _parse_hex_key(value)
        peer.preshared_key = None if preshared_key == ZERO_KEY else preshared_key
    elif key == "protocol_version":
        peer.protocol_version = _parse_uint(value, 32)
    elif key == "endpoint":
        peer.endpoint = parse_endpoint(value)
    elif key == "last_handshake_time_sec":
        peer.last_handshake_time = (_parse_uint(value, 63), peer.last_handshake_time[1])
    elif key == "last_handshake_time_nsec":
        peer.last_handshake_time = (peer.last_handshake_time[0], _parse_uint(value, 63))
    elif key == "tx_bytes":
        peer.tx_bytes = _parse_uint(value, 64)
    elif key == "rx_bytes":
        peer.rx_bytes = _parse_uint(value, 64)
    elif key == "persistent_keepalive_interval":
        peer.persistent_keepalive_interval = _parse_uint(value, 16)
    elif key == "allowed_ip":
        peer.allowed_ips.append(parse_allowed_ip(value))


# Values -------------------------------------------------------------------------------------------


def parse_endpoint(value: str) -> Endpoint:
    """An IP address and port, as Go's netip.ParseAddrPort reads them: IPv6, and only IPv6, in
    [brackets], an optional %zone, no host names."""
    host, bracketed, port = split_endpoint(value)
    address, percent, zone = host.partition("%")
    packed = _pack_endpoint_ip(host, address, zone if percent else None)
    if bracketed != (len(packed) == 16):
        raise ValueError(f"IPv6 addresses, and only they, go in [brackets]: {value!r}")
    if percent and not _ZONE.fullmatch(zone):
        # Go takes any zone; here a NUL in one would make each send to the endpoint raise a
        # TypeError where the I/O edge expects an OSError.
        raise ValueError(f"a zone is an interface name or index: {value!r}")
    text = format_packed_ip(packed)
    return Endpoint(f"{text}%{zone}" if percent else text, _parse_uint(port, 16))


def split_endpoint(value: str) -> tuple[str, bool, str]:
    """The host of "host:port" or "[host]:port" (without its brackets), whether it had them,
    and the port."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port:
        raise ValueError(f"not an ip:port: {value!r}")
    bracketed = host.startswith("[")
    if bracketed:
        if len(host) < 2 or not host.endswith("]"):
            raise ValueError(f"missing ']': {value!r}")
        host = host[1:-1]
    return host, bracketed, port


def _pack_endpoint_ip(host: str, address: str, zone: str | None) -> bytes:
    """The bytes of `host`, an `address` and its `zone` if it has one, refused as the ipaddress
    module refuses them: a zone only on IPv6, not empty and without a second '%'."""
    try:
        if zone is not None and (":" not in address or not zone or "%" in zone):
            raise InvalidAddress(host)
        return pack_ip(address)
    except InvalidAddress:
        raise ValueError(f"{host!r} does not appear to be an IPv4 or IPv6 address") from None


def parse_allowed_ip(value: str) -> AllowedIP:
    """A prefix as Go's netip.ParsePrefix reads it, masked as the allowed-IPs trie stores it."""
    address_text, sep, bits = value.rpartition("/")
    if not sep:
        raise ValueError(f"no '/' in prefix {value!r}")
    packed = pack_ip(address_text)  # netip.ParsePrefix takes no zone either
    if not _PREFIX_BITS.fullmatch(bits) or int(bits) > len(packed) * 8:
        raise ValueError(f"bad bits after slash: {value!r}")
    return network(packed, int(bits))


def format_ip(address: IPAddress) -> str:
    """An address as Go's netip.Addr.String writes it (see format_packed_ip), with its zone."""
    zone = getattr(address, "scope_id", None)
    text = format_packed_ip(address.packed)
    return f"{text}%{zone}" if zone else text


def format_packed_ip(packed: bytes) -> str:
    """An address of 4 or 16 bytes as Go's netip.Addr.String writes it: IPv6 in RFC 5952's form,
    but IPv4-mapped IPv6 (::ffff:a.b.c.d) in dotted form. inet_ntop writes both so, and fast,
    except IPv4-compatible addresses (::a.b.c.d), which glibc writes dotted and Go in hex."""
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    text = socket.inet_ntop(socket.AF_INET6, packed)
    if "." in text and not packed.startswith(_IPV4_MAPPED):
        return str(ipaddress.IPv6Address(packed))
    return text


def format_prefix(prefix: AllowedIP) -> str:
    return format_packed_prefix(prefix.network_address.packed, prefix.prefixlen)


def format_packed_prefix(address: bytes, bits: int) -> str:
    """A prefix from its network address's 4 or 16 bytes and its length."""
    return f"{format_packed_ip(address)}/{bits}"


def _parse_hex_key(value: str) -> bytes:
    # Go's hex.DecodeString takes both cases; wireguard-tools' key_from_hex does too.
    if not _HEX_KEY.fullmatch(value):
        raise ValueError("key is not 64 hex digits")
    return bytes.fromhex(value)


def _parse_uint(value: str, bits: int) -> int:
    """strconv.ParseUint(value, 10, bits)."""
    return parse_number(value, (1 << bits) - 1)


def _parse_true(value: str) -> bool:
    if value != "true":
        raise ValueError(f"invalid value {value!r}, only 'true' is accepted")
    return True


# stats: wgpy's own extension -------------------------------------------------------------------
#
#     stats=1\n\n  ->  drop=REASON:COUNT ... cookie_replies_sent=N, then per peer public_key=HEX,
#                      drop=..., handshake_attempts=N, cookie_replies_received=N, keypair_age=S;
#                      errno=0\n\n
#
# A separate operation, so `get` stays byte for byte wireguard-go's; wireguard-go closes the
# connection on it, which clients read as "no statistics".


@dataclass(slots=True)
class PeerStats:
    public_key: bytes
    drops: dict[str, int] = field(default_factory=dict)
    handshake_attempts: int = 0
    cookie_replies_received: int = 0
    keypair_age: float | None = None  # seconds since the current session was derived


@dataclass(slots=True)
class DeviceStats:
    drops: dict[str, int] = field(default_factory=dict)
    cookie_replies_sent: int = 0
    peers: list[PeerStats] = field(default_factory=list)


def format_stats(stats: DeviceStats) -> str:
    lines = [f"drop={reason}:{count}" for reason, count in stats.drops.items()]
    lines.append(f"cookie_replies_sent={stats.cookie_replies_sent}")
    for peer in stats.peers:
        lines.append(f"public_key={peer.public_key.hex()}")
        lines += [f"drop={reason}:{count}" for reason, count in peer.drops.items()]
        lines.append(f"handshake_attempts={peer.handshake_attempts}")
        lines.append(f"cookie_replies_received={peer.cookie_replies_received}")
        if peer.keypair_age is not None:
            lines.append(f"keypair_age={peer.keypair_age:.3f}")
    return "".join(f"{line}\n" for line in lines) + format_errno(0)


def parse_stats(reply: str) -> DeviceStats:
    """Read a `stats` reply; raises UapiError(EPROTO) if it is malformed."""
    stats = DeviceStats()
    peer: PeerStats | None = None
    for line in reply.split("\n"):
        if not line:
            continue
        key, _, value = line.partition("=")
        try:
            if key == "errno" and (status := _errno(value)):
                raise UapiError(status, "stats request failed")
            elif key == "public_key":
                peer = PeerStats(bytes.fromhex(value))
                stats.peers.append(peer)
            elif key == "drop":
                reason, _, count = value.rpartition(":")
                (peer or stats).drops[reason] = int(count)
            elif key == "cookie_replies_sent":
                stats.cookie_replies_sent = int(value)
            elif peer is not None and key in ("handshake_attempts", "cookie_replies_received"):
                setattr(peer, key, int(value))
            elif peer is not None and key == "keypair_age":
                peer.keypair_age = float(value)
        except ValueError:
            raise UapiError(errno.EPROTO, f"malformed stats line {line!r}") from None
    return stats


# capture: wgpy's own extension -----------------------------------------------------------------
#
#     capture=1\n[keylog=true\n]\n  ->  errno=0\n\n, then capture records (wgpy/capture.py) until
#                                        either side closes; or errno=-N\n\n and close
#
# A stream of the interface's inner (decrypted) packets, each with its peer and direction, for
# `wgpy capture`. keylog=true adds every new handshake's secrets (Wireshark's key log); the daemon
# grants it only to a client of its own user or root (SO_PEERCRED), else replies EPERM. The
# connection carries nothing else after the request. wireguard-go closes the connection on it.


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    keylog: bool = False


def format_capture(request: CaptureRequest) -> str:
    return "capture=1\n" + ("keylog=true\n" if request.keylog else "") + "\n"


def parse_capture(lines: Iterable[str]) -> CaptureRequest:
    """Read the body of a `capture=1` request; raises UapiError(EINVAL) on an unknown key."""
    parser = CaptureParser()
    _parse_lines(parser, lines)
    return parser.request


class CaptureParser:
    """Parses the body of a `capture=1` request a line at a time into `request`."""

    def __init__(self) -> None:
        self.request = CaptureRequest()
        self._number = 0

    def line(self, line: str) -> None:
        self._number += 1
        key, _, value = line.partition("=")
        if key != "keylog":
            raise UapiError(errno.EINVAL, f"line {self._number}: invalid capture key {key!r}")
        try:
            self.request = CaptureRequest(keylog=_parse_true(value))
        except ValueError as error:
            raise UapiError(errno.EINVAL, f"line {self._number}: keylog: {error}") from None
