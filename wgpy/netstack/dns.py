"""A DNS stub resolver (RFC 1035 over UDP, A and AAAA), sans-IO: datagrams in and out, `now` in,
one next deadline out. dnspython builds and parses the messages.

A lookup asks for A and AAAA at once. Each question goes to the first server, then, after a
timeout that doubles every round, to the next one, round after round over all servers, as
glibc's resolver does with resolv.conf's `timeout` and `attempts`. An answer counts only when it
comes from a server that question was sent to, with the question's ID and the question itself
(RFC 5452 section 9.1); anything else is dropped and counted in `drops`. A lookup ends with
`Resolved` once both questions are answered (an empty list when neither name exists), or with
`Failed` when every attempt timed out or every server refused.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

Server = tuple[str, int]  # (textual IP, port)

DNS_PORT: Final = 53
FIRST_TIMEOUT: Final = 1.0  # seconds before the first retransmission
ROUNDS: Final = 3  # times each server is asked, at most
MAX_MESSAGE: Final = 4096  # a UDP answer larger than this is no answer to our questions
QUERY_TYPES: Final = (dns.rdatatype.A, dns.rdatatype.AAAA)


class DropReason(enum.Enum):
    MALFORMED = "malformed"
    UNEXPECTED = "unexpected"  # no question in flight with that ID, server and question


@dataclass(frozen=True, slots=True)
class Resolved:
    lookup: int
    name: str
    addresses: list[str]  # IPv4 first, then IPv6, as the answers listed them


@dataclass(frozen=True, slots=True)
class Failed:
    lookup: int
    name: str
    reason: str


Event = Resolved | Failed


@dataclass(slots=True)
class _Question:
    lookup: int
    rdtype: dns.rdatatype.RdataType
    message: dns.message.QueryMessage
    wire: bytes
    attempt: int = 0  # index into the schedule of (round, server)
    deadline: float = 0.0
    sent_to: set[Server] = field(default_factory=set)
    answer: list[str] | None = None
    error: str | None = None


@dataclass(slots=True)
class _Lookup:
    name: str
    questions: list[_Question]


class StubResolver:
    """Lookups of A and AAAA records through `servers`; see the module's docstring."""

    def __init__(
        self,
        servers: list[str] | list[Server],
        rng: random.Random,
        *,
        first_timeout: float = FIRST_TIMEOUT,
        rounds: int = ROUNDS,
    ) -> None:
        if not servers:
            raise ValueError("a stub resolver needs at least one server")
        self.servers: list[Server] = [
            server if isinstance(server, tuple) else (server, DNS_PORT) for server in servers
        ]
        self.rng = rng
        self.first_timeout = first_timeout
        self.rounds = rounds
        self.drops: Counter[DropReason] = Counter()
        self._lookups: dict[int, _Lookup] = {}
        self._in_flight: dict[int, _Question] = {}  # by DNS message ID
        self._outgoing: list[tuple[bytes, Server]] = []
        self._events: list[Event] = []
        self._next_lookup = 0

    def query(self, name: str, now: float) -> int:
        """Starts a lookup of `name`'s A and AAAA records; returns its number, which its
        Resolved or Failed event carries. Raises ValueError for a name DNS cannot carry."""
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as error:
            raise ValueError(f"{name!r} is no DNS name: {error}") from None
        lookup = self._next_lookup
        self._next_lookup += 1
        questions = [self._question(lookup, qname, rdtype) for rdtype in QUERY_TYPES]
        self._lookups[lookup] = _Lookup(name, questions)
        for question in questions:
            self._send(question, now)
        return lookup

    def datagrams_to_send(self) -> list[tuple[bytes, Server]]:
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        return min((question.deadline for question in self._in_flight.values()), default=None)

    def handle_timer(self, now: float) -> None:
        for question in [q for q in self._in_flight.values() if q.deadline <= now]:
            question.attempt += 1
            if question.attempt < self.rounds * len(self.servers):
                self._send(question, now)
            else:
                self._settle(question, error="no answer from any server")

    def receive(self, data: bytes, server: Server, now: float) -> None:
        """A datagram that came from `server`."""
        response = self._parse(data)
        if response is None:
            return
        question = self._in_flight.get(response.id)
        if (
            question is None
            or server not in question.sent_to
            or not self._answers(question, response)
        ):
            self.drops[DropReason.UNEXPECTED] += 1
            return
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            self._settle(question, answer=[])
        elif rcode == dns.rcode.NOERROR:
            self._settle(question, answer=_addresses(response, question.rdtype))
        else:  # SERVFAIL, REFUSED...: the next server may know better
            question.error = f"{server[0]} answered {dns.rcode.to_text(rcode)}"
            question.deadline = now  # handle_timer moves on to the next server

    def _question(
        self, lookup: int, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> _Question:
        message = dns.message.make_query(qname, rdtype)
        message.id = self._free_id()
        question = _Question(lookup, rdtype, message, message.to_wire())
        self._in_flight[message.id] = question
        return question

    def _free_id(self) -> int:
        while True:
            identifier = self.rng.getrandbits(16)
            if identifier not in self._in_flight:
                return identifier

    def _send(self, question: _Question, now: float) -> None:
        round_, index = divmod(question.attempt, len(self.servers))
        server = self.servers[index]
        question.sent_to.add(server)
        question.deadline = now + self.first_timeout * 2**round_
        self._outgoing.append((question.wire, server))

    def _parse(self, data: bytes) -> dns.message.Message | None:
        if len(data) > MAX_MESSAGE:
            self.drops[DropReason.MALFORMED] += 1
            return None
        try:
            message = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            self.drops[DropReason.MALFORMED] += 1
            return None
        return message

    @staticmethod
    def _answers(question: _Question, response: dns.message.Message) -> bool:
        return bool(response.flags & dns.flags.QR) and question.message.is_response(response)

    def _settle(
        self, question: _Question, *, answer: list[str] | None = None, error: str | None = None
    ) -> None:
        del self._in_flight[question.message.id]
        question.answer = answer
        if error is not None and question.error is None:
            question.error = error
        lookup = self._lookups[question.lookup]
        if any(q.message.id in self._in_flight for q in lookup.questions):
            return
        del self._lookups[question.lookup]
        answers = [q.answer for q in lookup.questions if q.answer is not None]
        if answers:
            addresses = [address for answer in answers for address in answer]
            self._events.append(Resolved(question.lookup, lookup.name, addresses))
        else:
            reasons = "; ".join(sorted({q.error or "" for q in lookup.questions}))
            self._events.append(Failed(question.lookup, lookup.name, reasons))


def _addresses(response: dns.message.Message, rdtype: dns.rdatatype.RdataType) -> list[str]:
    """The addresses of the question's type at the end of the answer's CNAME chain."""
    if not isinstance(response, dns.message.QueryMessage):
        return []
    try:
        rrset = response.resolve_chaining().answer
    except dns.exception.DNSException:
        return []
    if rrset is None or rrset.rdtype != rdtype:
        return []
    return [str(ipaddress.ip_address(rdata.address)) for rdata in rrset]
