"""What a TCP connection says to those around it: the events the application hears, why it
dropped a segment, and the kinds of ICMP error the stack hands it."""

from __future__ import annotations

from enum import Enum


class TcpEvent(Enum):
    """What the application hears. Every connection ends with exactly one of CLOSED, RESET,
    REFUSED and TIMED_OUT, and is then in TcpState.CLOSED."""

    ESTABLISHED = "established"
    DATA_READABLE = "data readable"
    WRITABLE_AGAIN = "send buffer has room again"
    PEER_CLOSED = "peer sent FIN: no more data will arrive"
    CLOSED = "closed"
    RESET = "reset by the peer"
    REFUSED = "refused (RST or ICMP unreachable answered the SYN)"
    TIMED_OUT = "timed out"


class TcpDrop(Enum):
    """Why a segment that reached this connection was dropped."""

    CLOSED = "segment for a closed connection"
    OUT_OF_WINDOW = "sequence number outside the receive window (ACK sent)"
    RST_OUT_OF_WINDOW = "RST with a sequence number outside the window"
    RST_NOT_EXACT = "RST in the window but not at RCV.NXT (challenge ACK sent, RFC 5961 3.2)"
    SYN_SYNCHRONIZED = "SYN on a synchronized connection (challenge ACK sent, RFC 5961 4.2)"
    NO_ACK = "segment without ACK on a synchronized connection"
    ACK_UNSENT = "acknowledges data not yet sent (ACK sent, RFC 5961 5.2)"
    ACK_TOO_OLD = "acknowledgment below SND.UNA by more than the window (RFC 5961 5.2)"
    BAD_SYN_ACK = "SYN-ACK or RST that does not acknowledge our SYN"
    REASSEMBLY_FULL = "out-of-order segment beyond the bound on runs held"
    PAWS = "timestamp older than the last in-order one (RFC 7323 PAWS)"


class IcmpKind(Enum):
    """The ICMP and ICMPv6 errors the stack hands a connection (RFC 5927 section 2)."""

    PORT_UNREACHABLE = "port unreachable"
    PROTOCOL_UNREACHABLE = "protocol unreachable"
    HOST_UNREACHABLE = "host unreachable"
    NET_UNREACHABLE = "network unreachable"
    ADMIN_PROHIBITED = "administratively prohibited"
