"""Keypairs: one session's transport keys, counters and replay window, and a peer's three slots.

The slots follow the kernel's noise.c: `current` sends; `previous` still receives for a while after
a rekey; `next` is the responder's new keypair, which it may send on only once the initiator has
used it, because until then the responder cannot know the initiator has the keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy.core.constants import (
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_ON_RECEIVE_TIME,
)
from wgpy.core.noise import TransportKeys
from wgpy.core.replay import ReplayFilter


@dataclass(eq=False, slots=True)
class Keypair:
    local_index: int
    remote_index: int
    is_initiator: bool
    created: float
    sender: ChaCha20Poly1305
    receiver: ChaCha20Poly1305
    send_counter: int = 0
    replay: ReplayFilter = field(default_factory=ReplayFilter)
    # The raw keys, for a BatchCipher (transport.py) that seals and opens without `sender` and
    # `receiver`; empty when the keypair was built from those alone.
    send_key: bytes = field(default=b"", repr=False)
    receive_key: bytes = field(default=b"", repr=False)

    @classmethod
    def from_keys(
        cls,
        keys: TransportKeys,
        local_index: int,
        remote_index: int,
        is_initiator: bool,
        now: float,
    ) -> Keypair:
        return cls(
            local_index,
            remote_index,
            is_initiator,
            now,
            ChaCha20Poly1305(keys.send),
            ChaCha20Poly1305(keys.receive),
            send_key=keys.send,
            receive_key=keys.receive,
        )

    def can_send(self, now: float, count: int = 1) -> bool:
        """Whether `count` more messages may go out under this keypair: it is younger than
        REJECT_AFTER_TIME, and their counters stay below REJECT_AFTER_MESSAGES."""
        return (
            now - self.created < REJECT_AFTER_TIME
            and self.send_counter + count <= REJECT_AFTER_MESSAGES
        )

    def can_receive(self, now: float) -> bool:
        return now - self.created < REJECT_AFTER_TIME

    def needs_rekey_on_send(self, now: float) -> bool:
        """Whether sending on this keypair calls for a new handshake: after REKEY_AFTER_MESSAGES
        messages, or REKEY_AFTER_TIME into the session for its initiator (the kernel's
        keep_key_fresh in send.c)."""
        return self.send_counter > REKEY_AFTER_MESSAGES or (
            self.is_initiator and now - self.created >= REKEY_AFTER_TIME
        )

    def needs_rekey_on_receive(self, now: float) -> bool:
        """Whether receiving on it does: REKEY_ON_RECEIVE_TIME into the session, for its initiator
        only (keep_key_fresh in receive.c), so that a responder sending on it, which does not
        rekey by time, never runs into REJECT_AFTER_TIME."""
        return self.is_initiator and now - self.created >= REKEY_ON_RECEIVE_TIME

    def __repr__(self) -> str:
        role = "initiator" if self.is_initiator else "responder"
        return f"Keypair(local={self.local_index:#x}, remote={self.remote_index:#x}, {role})"


@dataclass(slots=True)
class Keypairs:
    current: Keypair | None = None
    previous: Keypair | None = None
    next: Keypair | None = None

    def add(self, new: Keypair) -> list[Keypair]:
        """Slot in a freshly derived keypair; returns the keypairs it retires."""
        retired: list[Keypair] = []
        if new.is_initiator:
            if self.next is not None:
                # A pending responder keypair is demoted rather than lost (as the kernel does).
                retired += [k for k in (self.previous, self.current) if k is not None]
                self.previous, self.next = self.next, None
            else:
                retired += [self.previous] if self.previous is not None else []
                self.previous = self.current
            self.current = new
        else:
            retired += [k for k in (self.previous, self.next) if k is not None]
            self.previous, self.next = None, new
        return retired

    def promote_next(self) -> Keypair | None:
        """The initiator has used our `next` keypair: it becomes current. Returns what retires."""
        retired = self.previous
        self.previous, self.current, self.next = self.current, self.next, None
        return retired

    def clear(self) -> list[Keypair]:
        retired = [k for k in (self.current, self.previous, self.next) if k is not None]
        self.current = self.previous = self.next = None
        return retired
