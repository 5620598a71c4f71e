"""A TCP connection's states (RFC 9293 3.3.2) and the transitions the connection takes on a
FIN, on the acknowledgment of ours, and on close; the sets say what each state still does."""

from __future__ import annotations

from enum import Enum
from typing import Final


class TcpState(Enum):
    CLOSED = "CLOSED"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    # By identity, in C, as members compare: Enum's own __hash__ is a Python call (the hash of
    # the name), paid at every `state in SENDING` (13 a SOCKS5 connect through the proxy).
    __hash__ = object.__hash__


SYNCHRONIZED: Final = frozenset(TcpState) - {TcpState.CLOSED, TcpState.SYN_SENT}
# States whose queued data and FIN still go out (once the SYN is acknowledged).
SENDING: Final = frozenset(
    {TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT_1, TcpState.CLOSING,
     TcpState.LAST_ACK}
)  # fmt: skip
# States that still take data from the peer (its FIN not yet seen).
RECEIVING: Final = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2})
WRITABLE: Final = frozenset(
    {TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.CLOSE_WAIT}
)
ON_FIN: Final = {
    TcpState.ESTABLISHED: TcpState.CLOSE_WAIT,
    TcpState.FIN_WAIT_1: TcpState.CLOSING,
    TcpState.FIN_WAIT_2: TcpState.TIME_WAIT,
}
ON_FIN_ACKED: Final = {
    TcpState.FIN_WAIT_1: TcpState.FIN_WAIT_2,
    TcpState.CLOSING: TcpState.TIME_WAIT,
    TcpState.LAST_ACK: TcpState.CLOSED,
}
ON_CLOSE: Final = {
    TcpState.SYN_RECEIVED: TcpState.SYN_RECEIVED,  # the FIN waits for the handshake's end
    TcpState.ESTABLISHED: TcpState.FIN_WAIT_1,
    TcpState.CLOSE_WAIT: TcpState.LAST_ACK,
}
