"""What the device tells a verbose log, worded as wireguard-go's (device/send.go, receive.go,
timers.go): handshakes sent, received and completed, keepalives, retries, roaming. The device
calls `Device.events`, when set, with the peer's public key and the event; the I/O edge words it
with the key in its short form, `peer(AbCd…WxYz)`."""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from wgpy.core.constants import MAX_TIMER_HANDSHAKES, NEW_HANDSHAKE_TIME, REKEY_TIMEOUT
from wgpy.core.keys import short_form


class Event(Enum):
    """Each value is the line's text; `{}` takes the event's detail."""

    INITIATION_SENT = "Sending handshake initiation"
    INITIATION_RECEIVED = "Received handshake initiation"
    RESPONSE_SENT = "Sending handshake response"
    RESPONSE_RECEIVED = "Received handshake response"
    HANDSHAKE_COMPLETED = "Handshake completed, session keys in use"  # wgpy's own
    KEEPALIVE_SENT = "Sending keepalive packet"
    KEEPALIVE_RECEIVED = "Receiving keepalive packet"
    HANDSHAKE_RETRY = (
        f"Handshake did not complete after {REKEY_TIMEOUT:.0f} seconds, retrying (try {{}})"
    )
    HANDSHAKE_GAVE_UP = (
        f"Handshake did not complete after {MAX_TIMER_HANDSHAKES + 2} attempts, giving up"
    )
    STOPPED_HEARING = (
        f"Retrying handshake because we stopped hearing back after {NEW_HANDSHAKE_TIME:.0f} seconds"
    )
    ROAMED = "Endpoint changed to {}"  # wgpy's own: wireguard-go roams silently

    def describe(self, detail: object = None) -> str:
        return self.value.format(detail) if detail is not None else self.value


class EventLog(Protocol):
    """Set as `Device.events` by the I/O edge at the verbose log level. Called under the
    device's lock: it must return at once."""

    def __call__(self, peer: bytes, event: Event, detail: object = None) -> None: ...


def short_peer(public_key: bytes) -> str:
    """A peer as wireguard-go's log names it: the first and last four characters of its key."""
    return f"peer({short_form(public_key)})"
