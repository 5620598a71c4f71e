"""An HTTP/1.1 proxy's client side, sans-IO, on h11: CONNECT tunnels (RFC 9110 section 9.3.6)
and requests in absolute form (RFC 9112 section 3.2.2) forwarded to their origin.

`HttpProxyConnection.receive` takes the client's bytes and returns what the listener must do:
- `Tunnel(host, port)`: connect, then send `established()` (or `failed(...)`) and relay, starting
  with `trailing_data()`;
- `Forward(host, port, head)`: connect and send `head` (the request in origin form, hop-by-hop
  headers dropped, `Connection: close`), then each `Body`'s bytes as they come, and relay the
  origin's response back until it closes. One request per connection: the proxy closes after it;
- `Rejected(reason)`: send `data_to_send()` (an error response) and close.
Nothing the client sends raises: a malformed, oversized or unsupported request is Rejected with
the status h11 or this module chooses (400, 405, 431, ...).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import h11

MAX_HEAD: Final = 16 * 1024  # request line and headers, as many servers bound them
# Hop-by-hop headers (RFC 9110 section 7.6.1) and the proxy ones clients send. Transfer-Encoding
# stays: the request's body is forwarded in the framing it came in.
HOP_BY_HOP: Final = frozenset(
    b"connection keep-alive proxy-connection proxy-authenticate proxy-authorization te trailer "
    b"upgrade".split()
)


@dataclass(frozen=True, slots=True)
class Tunnel:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Forward:
    host: str
    port: int
    head: bytes  # the request line and headers for the origin
    target: str  # the absolute URI, for the log


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes  # framed for the origin (chunked or not, as the request's own framing says)
    end: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    status: int
    reason: str


Event = Tunnel | Forward | Body | Rejected


class Phase(enum.Enum):
    REQUEST = "request"
    CONNECTING = "connecting"  # Tunnel or Forward returned, the listener is connecting
    FORWARDING = "forwarding"  # Forward's body comes as Body events
    RELAYING = "relaying"  # a tunnel: bytes both ways, no HTTP any more
    CLOSED = "closed"


class HttpProxyConnection:
    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self._client = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self._origin = h11.Connection(h11.CLIENT)  # frames the forwarded request
        self._outgoing = bytearray()
        self.phase = Phase.REQUEST

    def receive(self, data: bytes) -> list[Event]:
        if self.phase in (Phase.RELAYING, Phase.CLOSED):
            return []
        self._client.receive_data(data)
        events: list[Event] = []
        while self.phase in (Phase.REQUEST, Phase.CONNECTING, Phase.FORWARDING):
            try:
                event = self._client.next_event()
            except h11.RemoteProtocolError as error:
                events.append(self._reject(error.error_status_hint, str(error)))
                break
            if not isinstance(event, h11.Event):  # NEED_DATA or PAUSED, h11's sentinel classes
                break
            translated = self._translate(event)
            if translated is not None:
                events.append(translated)
        return events

    def data_to_send(self) -> bytes:
        outgoing = bytes(self._outgoing)
        self._outgoing.clear()
        return outgoing

    def established(self) -> bytes:
        """The answer to a Tunnel whose connection stands: 200, then the relay."""
        self._outgoing += (
            self._client.send(
                h11.Response(status_code=200, headers=[], reason=b"Connection established")
            )
            or b""
        )
        self.phase = Phase.RELAYING
        return self.data_to_send()

    def failed(self, status: int, reason: str) -> bytes:
        """The answer to a Tunnel or Forward whose connection failed (502, 504...)."""
        self._reject(status, reason)
        return self.data_to_send()

    def trailing_data(self) -> bytes:
        """After a tunnel's 200: what the client sent after its CONNECT request."""
        data, _closed = self._client.trailing_data
        return bytes(data)

    def _translate(self, event: h11.Event) -> Event | None:
        if isinstance(event, h11.Request):
            return self._request(event)
        if isinstance(event, h11.Data) and self.phase != Phase.REQUEST:
            return Body(self._origin.send(h11.Data(data=bytes(event.data))) or b"", end=False)
        if isinstance(event, h11.EndOfMessage):
            if self._origin.our_state is h11.SEND_BODY:
                return Body(self._origin.send(h11.EndOfMessage()) or b"", end=True)
            return None  # a CONNECT's empty body
        if isinstance(event, h11.ConnectionClosed):
            self.phase = Phase.CLOSED
            return Rejected(400, "the client closed mid-request")
        return None

    def _request(self, request: h11.Request) -> Event:
        target = request.target.decode("ascii", errors="replace")
        if request.method == b"CONNECT":
            authority = _authority(target, default_port=None)
            if authority is None:
                return self._reject(400, f"CONNECT to {target!r}: no host:port")
            self.phase = Phase.CONNECTING
            return Tunnel(*authority)
        parts = urlsplit(target)
        if parts.scheme.lower() != "http" or not parts.netloc:
            return self._reject(400, f"{target!r}: not an absolute http:// URI")
        authority = _authority(parts.netloc, default_port=80)
        if authority is None or "@" in parts.netloc:
            return self._reject(400, f"{target!r}: no valid host")
        path = parts.path or "/"
        origin_form = f"{path}?{parts.query}" if parts.query else path
        headers = [(name, value) for name, value in request.headers if name not in HOP_BY_HOP]
        headers.append((b"connection", b"close"))
        try:
            head = self._origin.send(
                h11.Request(method=request.method, target=origin_form, headers=headers)
            )
        except h11.LocalProtocolError as error:
            return self._reject(400, f"{target!r}: {error}")
        self.phase = Phase.FORWARDING
        return Forward(*authority, head=head or b"", target=target)

    def _reject(self, status: int, reason: str) -> Rejected:
        if self._client.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = f"{status} {reason}\n".encode("ascii", errors="replace")
            self._outgoing += (
                self._client.send(
                    h11.Response(
                        status_code=status,
                        headers=[
                            ("Connection", "close"),
                            ("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body))),
                        ],
                    )
                )
                or b""
            )
            self._outgoing += self._client.send(h11.Data(data=body)) or b""
            self._outgoing += self._client.send(h11.EndOfMessage()) or b""
        self.phase = Phase.CLOSED
        return Rejected(status, reason)


def _authority(text: str, default_port: int | None) -> tuple[str, int] | None:
    """host and port of "host:port", "[v6]:port" or (with a default port) "host"."""
    try:
        parts = urlsplit(f"//{text}")
        port = parts.port if parts.port is not None else default_port
    except ValueError:
        return None
    host = parts.hostname
    if not host or port is None or not 0 < port < 65536 or not host.isprintable():
        return None
    return host, port
