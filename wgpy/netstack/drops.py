"""Why the stack dropped a packet from the tunnel. It counts every drop by reason; none raises."""

from enum import Enum


class Drop(Enum):
    # IP
    TRUNCATED_IP = "IP header truncated or lengths inconsistent"
    BAD_IP_VERSION = "IP version neither 4 nor 6"
    BAD_IP_CHECKSUM = "IPv4 header checksum wrong"
    FRAGMENT = "IP fragment (the stack does not reassemble)"
    NOT_OUR_ADDRESS = "destination is not a tunnel address of the stack"
    UNKNOWN_PROTOCOL = "upper-layer protocol neither TCP, UDP nor ICMP"
    # UDP
    TRUNCATED_UDP = "UDP header truncated or length inconsistent"
    BAD_UDP_CHECKSUM = "UDP checksum wrong"
    UDP_PORT_CLOSED = "UDP to a closed port (answered with port unreachable)"
    UDP_QUEUE_FULL = "UDP socket's receive queue full"
    # ICMP
    TRUNCATED_ICMP = "ICMP message truncated"
    BAD_ICMP_CHECKSUM = "ICMP checksum wrong"
    ICMP_IGNORED = "ICMP type the stack does not act on"
    ICMP_ERROR_UNMATCHED = "ICMP error quoting no socket of ours"
    ICMP_RATE_LIMITED = "ICMP error not sent: over the rate limit"
    # TCP
    BAD_TCP_SEGMENT = "TCP segment malformed or its checksum wrong"
    TCP_NO_LISTENER = "TCP segment for no connection or listener (answered with RST)"
    SYN_BACKLOG_FULL = "SYN dropped: the listener's half-open connections are at their bound"
    ACCEPT_QUEUE_FULL = "connection reset: the listener's accept queue is full"
