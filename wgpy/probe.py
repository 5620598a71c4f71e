"""Probe a WireGuard server: handshake with it over a plain UDP socket, as one of its peers.

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

`Pacer` spaces attempts so that the server consumes every one, and `probe` is the I/O edge: one
connected UDP socket, no TUN and no privileges.

A probe speaks for a peer of the server, with that peer's key: the server answers it like the
peer, and sends the peer's traffic to the probe's address until the peer next reaches it. Without
--ping the session is never confirmed, so the server keeps sending on the peer's old session.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto

from wgpy.core import ippacket, noise, tai64n
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
Endpoint = tuple[str, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Ping = tuple[IPAddress, IPAddress]  # our inner address, and the address to echo

# wireguard-go drops an initiation that comes within HandshakeInitationRate (20 ms) of the last one
# it consumed from the peer (device/noise-protocol.go, ConsumeMessageInitiation: `flood :=
# time.Since(handshake.lastInitiationConsumption) <= HandshakeInitationRate`). The server measures
# between arrivals, so a few milliseconds on top absorb the network's jitter.
INITIATION_SPACING = MIN_INITIATION_INTERVAL + 0.005
MAX_DATAGRAM = 65535
# What a connected UDP socket reports when ICMP (or a failed ARP) says the server cannot be reached.
_UNREACHABLE_ERRNOS = frozenset(
    (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN)
)
# Linux reports only "hard" ICMP errors to a UDP socket (port unreachable, administratively
# prohibited) unless IP_RECVERR is on; with it, host unreachable too (ip(7)). Python does not
# name the options: these are their values in <linux/in.h> and <linux/in6.h>.
_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, 11), socket.AF_INET6: (socket.IPPROTO_IPV6, 25)}


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
REFUSED = (
    "the server's host refused the datagram (ICMP port unreachable): nothing listens on that "
    "port, or a firewall rejects it"
)
UNREACHABLE = "the network reports the server unreachable"


# -- the ICMP echo sent through the session ----------------------------------------------------

_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_PROTOCOL = {4: 1, 6: 58}  # ICMP, ICMPv6
_ECHO_REQUEST = {4: 8, 6: 128}
_ECHO_REPLY = {4: 0, 6: 129}


@dataclass(frozen=True, slots=True)
class Echo:
    """An ICMP (or ICMPv6) echo request from our inner address `source` to `destination`."""

    source: IPAddress
    destination: IPAddress
    identifier: int
    sequence: int
    payload: bytes = b"wgpy probe"

    def __post_init__(self) -> None:
        if self.source.version != self.destination.version:
            raise ValueError("the echo's source and destination differ in IP version")

    def request(self) -> bytes:
        return self._packet(_ECHO_REQUEST, self.source, self.destination)

    def answered_by(self, packet: bytes) -> bool:
        """Whether `packet` (padding and all) is the echo reply `destination` owes us."""
        length = ippacket.inner_length(packet)
        if length is None or ippacket.version(packet) != self.source.version:
            return False
        packet = packet[:length]
        if self.source.version == 4:
            protocol, header_length = packet[9], (packet[0] & 0x0F) * 4
        else:  # Extension headers do not occur in an echo reply.
            protocol, header_length = packet[6], ippacket.IPV6_HEADER_LEN
        expected = self._message(_ECHO_REPLY, self.destination, self.source)
        return (
            protocol == _PROTOCOL[self.source.version]
            and ippacket.source(packet) == self.destination.packed
            and ippacket.destination(packet) == self.source.packed
            and packet[header_length:] == expected
        )

    def _packet(self, kinds: dict[int, int], source: IPAddress, destination: IPAddress) -> bytes:
        message = self._message(kinds, source, destination)
        build = ippacket.ipv4_packet if source.version == 4 else ippacket.ipv6_packet
        return build(str(source), str(destination), message, _PROTOCOL[source.version])

    def _message(self, kinds: dict[int, int], source: IPAddress, destination: IPAddress) -> bytes:
        """The ICMP message; ICMPv6 checksums a pseudo-header too (RFC 8200 section 8.1)."""
        message = _ECHO.pack(kinds[source.version], 0, 0, self.identifier, self.sequence)
        message += self.payload
        covered = message
        if source.version == 6:
            pseudo_header = struct.pack("!I3xB", len(message), _PROTOCOL[6])
            covered = source.packed + destination.packed + pseudo_header + message
        return _with_checksum(message, 2, ippacket.internet_checksum(covered))


def _with_checksum(data: bytes, offset: int, checksum: int) -> bytes:
    return data[:offset] + checksum.to_bytes(2, "big") + data[offset + 2 :]


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


# -- the I/O edge ------------------------------------------------------------------------------


def probe(
    endpoint: Endpoint,
    keys: ProbeKeys,
    *,
    count: int = 1,
    timeout: float = 5.0,
    interval: float = 1.0,
    ping: Ping | None = None,
    rng: Rng = os.urandom,
    report: Callable[[AttemptResult], None] | None = None,
    pacer: Pacer | None = None,
) -> list[AttemptResult]:
    """`count` attempts against `endpoint`, `interval` seconds apart at least, each with an echo
    when `ping` is given. `report` hears of each attempt as it ends. Calls that probe one server
    with one key in quick succession share a `pacer`. Raises OSError when this host cannot send
    to `endpoint` at all (no route, no such address family)."""
    family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
    pacer = Pacer() if pacer is None else pacer
    results: list[AttemptResult] = []
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # Connected: only the server's datagrams arrive, and ICMP errors surface as OSError.
        if sys.platform == "linux":
            sock.setsockopt(*_RECVERR[family], 1)
        sock.connect(endpoint)
        for number in range(1, count + 1):
            if number > 1:
                time.sleep(interval)
            echo = None
            if ping is not None:
                identifier = int.from_bytes(rng(2), "big")
                echo = Echo(ping[0], ping[1], identifier, number)
            attempt = HandshakeAttempt(keys, rng, timeout=timeout, echo=echo)
            result = _run(sock, attempt, pacer)
            results.append(result)
            if report is not None:
                report(result)
    return results


def _run(sock: socket.socket, attempt: HandshakeAttempt, pacer: Pacer) -> AttemptResult:
    while (pause := pacer.delay(time.monotonic(), time.time())) > 0:
        time.sleep(pause)
    wall = time.time()
    try:
        sock.send(attempt.start(time.monotonic(), wall))
        pacer.initiated(wall)
        return _exchange(sock, attempt)
    except ConnectionRefusedError:
        return AttemptResult(Outcome.REFUSED, REFUSED)
    except OSError as error:
        if error.errno not in _UNREACHABLE_ERRNOS:
            raise
        return AttemptResult(Outcome.UNREACHABLE, f"{UNREACHABLE} ({error.strerror})")
    finally:
        pacer.ended(time.monotonic())


def _exchange(sock: socket.socket, attempt: HandshakeAttempt) -> AttemptResult:
    """Carry datagrams between the server and `attempt` until it ends."""
    while attempt.result is None:
        deadline = attempt.next_timer()
        assert deadline is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            attempt.handle_timer(time.monotonic())
            continue
        sock.settimeout(remaining)
        try:
            data = sock.recv(MAX_DATAGRAM)
        except TimeoutError:
            continue
        for datagram in attempt.handle_datagram(data, time.monotonic()):
            sock.send(datagram)
    return attempt.result
