"""The probe's I/O edge: the handshake attempts of `wgpy.core.probe` over one connected UDP
socket, on the system's clocks. No TUN and no privileges."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from collections.abc import Callable

from wgpy.core.echo import Echo
from wgpy.core.endpoint import Endpoint
from wgpy.core.probe import AttemptResult, HandshakeAttempt, Outcome, Pacer, Ping, ProbeKeys, Rng

MAX_DATAGRAM = 65535
# What a connected UDP socket reports when ICMP (or a failed ARP) says the server cannot be reached.
_UNREACHABLE_ERRNOS = frozenset(
    (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN)
)
# Linux reports only "hard" ICMP errors to a UDP socket (port unreachable, administratively
# prohibited) unless IP_RECVERR is on; with it, host unreachable too (ip(7)). Python does not
# name the options: these are their values in <linux/in.h> and <linux/in6.h>.
_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, 11), socket.AF_INET6: (socket.IPPROTO_IPV6, 25)}

# The reasons for the outcomes only the socket sees, in words for an operator.
REFUSED = (
    "the server's host refused the datagram (ICMP port unreachable): nothing listens on that "
    "port, or a firewall rejects it"
)
UNREACHABLE = "the network reports the server unreachable"


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
