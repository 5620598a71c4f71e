"""A peer's handshake state (whitepaper section 5.4.2-5.4.5, the kernel's noise.c state machine).

The Noise computation itself is in noise.py; this module owns what WireGuard adds around it: the
state, the sender index, the responder's rules on timestamps and initiation rate, and the
initiator's rule that a response must answer the initiation in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from wgpy.core import noise, tai64n
from wgpy.core.constants import MIN_INITIATION_INTERVAL, REKEY_TIMEOUT
from wgpy.core.drops import DropReason
from wgpy.core.messages import Initiation, Response
from wgpy.errors import ProtocolError


class HandshakeState(Enum):
    ZEROED = auto()
    CREATED_INITIATION = auto()


@dataclass(slots=True)
class Handshake:
    state: HandshakeState = HandshakeState.ZEROED
    initiator: noise.Initiator | None = None
    local_index: int | None = None
    # The responder's replay and flood protection.
    latest_timestamp: bytes = bytes(12)
    last_initiation_consumption: float = float("-inf")
    # The sender's own rate limit: one initiation per REKEY_TIMEOUT.
    last_sent: float = float("-inf")

    def may_initiate(self, now: float) -> bool:
        return now - self.last_sent >= REKEY_TIMEOUT

    def create_initiation(
        self, initiator: noise.Initiator, local_index: int, wall: float, now: float
    ) -> Initiation:
        """Begin a handshake as initiator; the caller adds the MACs."""
        body = initiator.write_initiation(tai64n.timestamp(wall))
        self.state, self.initiator, self.local_index = (
            HandshakeState.CREATED_INITIATION,
            initiator,
            local_index,
        )
        self.last_sent = now
        return Initiation(local_index, body[:32], body[32:80], body[80:])

    def answers(self, response: Response) -> bool:
        """Whether `response` is addressed to the initiation we have in flight."""
        return (
            self.state is HandshakeState.CREATED_INITIATION
            and self.local_index == response.receiver
        )

    def consume_response(self, response: Response) -> noise.TransportKeys:
        """The initiator's keys; raises ProtocolError and leaves the state as it was on failure."""
        assert self.initiator is not None
        payload, keys = self.initiator.read_response(response.noise_body)
        if payload:  # cannot be, at the response's fixed size; WireGuard's rule all the same
            raise ProtocolError("response carries a payload")
        self.clear()
        return keys

    def check_initiation(self, timestamp: bytes, now: float) -> DropReason | None:
        """The responder's rules: the timestamp must grow (replay), and a peer's initiations are
        taken at most every 20 ms (flood). On success both are recorded."""
        if len(timestamp) != tai64n.TIMESTAMP_LEN:  # as for the response: the size's rule
            return DropReason.HANDSHAKE_INVALID
        if not tai64n.is_after(timestamp, self.latest_timestamp):
            return DropReason.REPLAYED_TIMESTAMP
        if now - self.last_initiation_consumption < MIN_INITIATION_INTERVAL:
            return DropReason.INITIATION_FLOOD
        self.latest_timestamp = timestamp
        self.last_initiation_consumption = now
        return None

    def clear(self) -> None:
        """Forget the handshake in flight (its index is the caller's to release)."""
        self.state, self.initiator, self.local_index = HandshakeState.ZEROED, None, None
