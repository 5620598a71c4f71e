"""Probing a WireGuard server, sans IO: a handshake with it as one of its peers, and the pacing.

`HandshakeAttempt` is one attempt, sans IO and shaped like the device: `start` returns the
initiation to send, `handle_datagram` takes what the server sends back and returns what to send
next, and `handle_timer` ends the attempt once `next_timer()` has passed. An attempt answers:

- Did the server answer? Silence means a wrong server key (the server drops an initiation whose
  mac1 is not keyed by its public key), a key the server does not know, a blocked port, or a
  server that is down.
- Was the answer a valid response? One that fails to authenticate means the preshared keys differ.
- Under load the server first sends a cookie reply; the attempt resends the initiation with mac2.
- Optionally: does the server forward? One ICMP echo goes through the session, and the attempt
  waits for the reply.

`Pacer` spaces attempts so that the server consumes every one. Nothing here opens a socket or
reads a clock: `wgpy.io.probe` is the edge that drives attempts over one connected UDP socket.

A probe speaks for a peer of the server, with that peer's key: the server answers it like the
peer, and sends the peer's traffic to the probe's address until the peer next reaches it. Without
--ping the session is never confirmed, so the server keeps sending on the peer's old session.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto

from wgpy.core import noise, tai64n
from wgpy.core.constants import (
    DEFAULT_MTU,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    MIN_INITIATION_INTERVAL,
    TRANSPORT_HEADER_SIZE,
)
from wgpy.core.cookie import CookieGenerator, mac1_key
from wgpy.core.crypto import mac
from wgpy.core.echo import Echo, IPAddress
from wgpy.core.handshake import Handshake
from wgpy.core.keypair import Keypair
from wgpy.core.keys import generate_private_key, public_key, redact, to_base64
from wgpy.core.messages import (
    RESPONSE_MAC1_OFFSET,
    CookieReply,
    Response,
    TransportHeader,
    message_type,
)
from wgpy.core.transport import decrypt_packet, encrypt_packet
from wgpy.errors import ProtocolError

Rng = Callable[[int], bytes]
Ping = tuple[IPAddress, IPAddress]  # our inner address, and the address to echo

# wireguard-go drops an initiation that comes within HandshakeInitationRate (20 ms) of the last one
# it consumed from the peer (device/noise-protocol.go, ConsumeMessageInitiation: `flood :=
# time.Since(handshake.lastInitiationConsumption) <= HandshakeInitationRate`). The server measures
# between arrivals, so a few milliseconds on top absorb the network's jitter.
INITIATION_SPACING = MIN_INITIATION_INTERVAL + 0.005


# -- what is probed, and what came of it -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeKeys:
    """The probe's identity (one of the server's peers) and the server's key, as --peer-key."""

    private_key: bytes
    peer_public_key: bytes
    preshared_key: bytes | None = None

    def __repr__(self) -> str:
        return (
            f"ProbeKeys(private_key={redact(self.private_key)}, "
            f"peer_public_key={to_base64(self.peer_public_key)}, "
            f"preshared_key={redact(self.preshared_key)})"
        )


class Outcome(Enum):
    ANSWERED = "answered"
    INVALID_RESPONSE = "invalid-response"
    SILENCE = "silence"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"


class PingOutcome(Enum):
    REPLIED = "replied"
    NO_REPLY = "no-reply"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    reason: str
    # Seconds from the initiation that was answered to its response.
    rtt: float | None = None
    # The server was under load: it sent a cookie reply, and the initiation went again with mac2.
    cookie_reply: bool = False
    ping: PingOutcome | None = None
    ping_rtt: float | None = None

    @property
    def ok(self) -> bool:
        """A valid response, and the echo reply when one was asked for."""
        return self.outcome is Outcome.ANSWERED and self.ping in (None, PingOutcome.REPLIED)


# The reasons, in words for an operator.
ANSWERED = "the server answered with a valid handshake response"
SILENCE = (
    "the server's public key is not --peer-key, the server does not know our key or has seen a "
    "later timestamp from it, the port is blocked, or the server is down"
)
UNAUTHENTIC_RESPONSE = (
    "the server answered, but its response failed to authenticate: "
    "the preshared key does not match the server's"
)
BAD_MAC1 = "the server answered, but its response's mac1 is not keyed by our public key"


# -- one attempt, sans IO ----------------------------------------------------------------------


class Stage(Enum):
    """Where an attempt is: each waiting stage has its deadline."""

    NEW = auto()
    AWAIT_RESPONSE = auto()
    AWAIT_ECHO_REPLY = auto()
    DONE = auto()


class HandshakeAttempt:
    """One handshake with the server, and optionally one echo through the session.

    Time is the caller's: `now` is monotonic seconds, `wall` Unix seconds for the TAI64N
    timestamp. Datagrams that answer nothing of ours are ignored, as the device drops them.
    """

    def __init__(
        self, keys: ProbeKeys, rng: Rng, *, timeout: float, echo: Echo | None = None
    ) -> None:
        self._keys = keys
        self._rng = rng
        self._timeout = timeout
        self._echo = echo
        self._handshake = Handshake()
        self._cookie = CookieGenerator(keys.peer_public_key)
        self._mac1_key = mac1_key(public_key(keys.private_key))
        self._local_index = int.from_bytes(rng(4), "little")
        self._initiation = b""
        self._keypair: Keypair | None = None
        self._sent_at = 0.0
        self._deadline = 0.0
        self._rtt: float | None = None
        self._cookie_reply = False
        self.stage = Stage.NEW
        self.result: AttemptResult | None = None

    def start(self, now: float, wall: float) -> bytes:
        """The initiation to send."""
        assert self.stage is Stage.NEW, "an attempt starts once"
        initiator = noise.Initiator(
            self._keys.private_key,
            self._keys.peer_public_key,
            self._keys.preshared_key,
            generate_private_key(self._rng),
        )
        message = self._handshake.create_initiation(initiator, self._local_index, wall, now)
        self._initiation = message.serialize()
        self.stage = Stage.AWAIT_RESPONSE
        return self._await(now, self._cookie.add_macs(self._initiation, now))

    def next_timer(self) -> float | None:
        """When the stage in progress gives up waiting."""
        waiting = self.stage in (Stage.AWAIT_RESPONSE, Stage.AWAIT_ECHO_REPLY)
        return self._deadline if waiting else None

    def handle_timer(self, now: float) -> None:
        deadline = self.next_timer()
        if deadline is None or now < deadline:
            return
        if self.stage is Stage.AWAIT_RESPONSE:
            self._finish(Outcome.SILENCE, self._silence_reason())
        else:
            self._finish(Outcome.ANSWERED, self._no_echo_reason(), ping=PingOutcome.NO_REPLY)

    def handle_datagram(self, data: bytes, now: float) -> list[bytes]:
        """Take a datagram from the server; returns the datagrams to send in turn."""
        kind = message_type(data)
        if self.stage is Stage.AWAIT_RESPONSE:
            if kind == MESSAGE_COOKIE_REPLY:
                return self._receive_cookie_reply(data, now)
            if kind == MESSAGE_RESPONSE:
                return self._receive_response(data, now)
        elif self.stage is Stage.AWAIT_ECHO_REPLY and kind == MESSAGE_TRANSPORT:
            self._receive_transport(data, now)
        return []

    # -- receiving ---------------------------------------------------------------------------

    def _receive_cookie_reply(self, data: bytes, now: float) -> list[bytes]:
        try:
            reply = CookieReply.parse(data)
        except ProtocolError:
            return []
        if self._cookie_reply or reply.receiver != self._local_index:
            return []
        if not self._cookie.consume_reply(reply, now):
            return []
        # The server sent the cookie instead of consuming the initiation (wireguard-go
        # device/receive.go, RoutineHandshake: SendHandshakeCookie, then skip), so the same
        # initiation, timestamp and all, goes again with mac2.
        self._cookie_reply = True
        return [self._await(now, self._cookie.add_macs(self._initiation, now))]

    def _receive_response(self, data: bytes, now: float) -> list[bytes]:
        try:
            response = Response.parse(data)
        except ProtocolError:
            return []
        if not self._handshake.answers(response):
            return []
        if mac(self._mac1_key, data[:RESPONSE_MAC1_OFFSET]) != response.mac1:
            self._finish(Outcome.INVALID_RESPONSE, BAD_MAC1)
            return []
        try:
            transport_keys = self._handshake.consume_response(response)
        except ProtocolError:
            self._finish(Outcome.INVALID_RESPONSE, UNAUTHENTIC_RESPONSE)
            return []
        self._rtt = now - self._sent_at
        if self._echo is None:
            self._finish(Outcome.ANSWERED, ANSWERED)
            return []
        self._keypair = Keypair.from_keys(
            transport_keys, self._local_index, response.sender, True, now
        )
        self.stage = Stage.AWAIT_ECHO_REPLY
        # The echo also confirms the session, so the server may send on it.
        echo_request = encrypt_packet(self._keypair, self._echo.request(), DEFAULT_MTU)
        return [self._await(now, echo_request)]

    def _receive_transport(self, data: bytes, now: float) -> None:
        assert self._keypair is not None and self._echo is not None
        try:
            header = TransportHeader.parse(data)
        except ProtocolError:
            return
        if header.receiver != self._local_index:
            return
        packet = decrypt_packet(self._keypair, header.counter, data[TRANSPORT_HEADER_SIZE:])
        if packet is None or not self._echo.answered_by(packet):
            return  # A forgery, a keepalive, or other traffic for our inner address.
        self._finish(
            Outcome.ANSWERED,
            f"{ANSWERED}, and {self._echo.destination} answered the echo through the tunnel",
            ping=PingOutcome.REPLIED,
            ping_rtt=now - self._sent_at,
        )

    # -- bookkeeping -------------------------------------------------------------------------

    def _await(self, now: float, datagram: bytes) -> bytes:
        """`datagram`, the time it goes out, and how long its answer may take."""
        self._sent_at, self._deadline = now, now + self._timeout
        return datagram

    def _finish(
        self,
        outcome: Outcome,
        reason: str,
        *,
        ping: PingOutcome | None = None,
        ping_rtt: float | None = None,
    ) -> None:
        self.stage = Stage.DONE
        self._keypair = None
        self.result = AttemptResult(outcome, reason, self._rtt, self._cookie_reply, ping, ping_rtt)

    def _silence_reason(self) -> str:
        if self._cookie_reply:
            return (
                f"the server is under load: it sent a cookie reply, but the initiation with mac2 "
                f"got no answer within {self._timeout:g} s"
            )
        return f"no answer within {self._timeout:g} s: {SILENCE}"

    def _no_echo_reason(self) -> str:
        assert self._echo is not None
        return (
            f"{ANSWERED}, but no echo reply from {self._echo.destination} came through the "
            f"tunnel within {self._timeout:g} s: is {self._echo.source} in the server's "
            f"AllowedIPs for this peer, and does the server route {self._echo.destination}?"
        )


# -- spacing the attempts ----------------------------------------------------------------------


@dataclass(slots=True)
class Pacer:
    """Spaces attempts so that the server consumes every initiation.

    The flood rule: the server refuses an initiation that comes within 20 ms of the last one it
    consumed, and it consumes one when it gets to it, which can be well after it arrived
    (wireguard-go's first handshake may take tens of milliseconds). By the time an attempt ends
    the server has consumed its initiation, if it ever will, so INITIATION_SPACING counts from
    there. The replay rule: the next timestamp must be later, so the wall clock must pass into the
    next step of tai64n.WHITENING (about 16.8 ms) after the last one.
    """

    last_timestamp: bytes = bytes(12)
    last_ended: float = float("-inf")

    def delay(self, now: float, wall: float) -> float:
        """Seconds to wait before the next initiation."""
        flood = self.last_ended + INITIATION_SPACING - now
        replay = _first_wall_after(self.last_timestamp) - wall
        return max(0.0, flood, replay)

    def initiated(self, wall: float) -> None:
        """An initiation went, stamped with `wall`."""
        self.last_timestamp = tai64n.timestamp(wall)

    def ended(self, now: float) -> None:
        """The attempt ended at `now`: answered, or given up on."""
        self.last_ended = now


def _first_wall_after(timestamp: bytes) -> float:
    """About the earliest wall time whose TAI64N label is later than `timestamp` (a little after,
    so float rounding cannot land on the label itself)."""
    seconds: int
    nanoseconds: int
    seconds, nanoseconds = struct.unpack(">QI", timestamp)
    next_nanoseconds = min(nanoseconds + tai64n.WHITENING, 1_000_000_000)
    return seconds - tai64n.TAI64_BASE + next_nanoseconds / 1e9 + 1e-4
