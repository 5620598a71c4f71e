"""Fuzzing the configuration protocol (wgpy.uapi, wgpy.configure) with generated requests.

Each request is a valid `set` from random settings (`format_set` of a random DeviceUpdate), then
mutated a few times (benchmarks/hardening/mutate.py); some are `get`, `stats` or unknown operations
with stray bytes, some random bytes. The promises, checked request by request: nothing raises out
of the server; every reply ends in `errno=N` with N zero or a negated errno; and a rejected `set`
leaves the configuration as `get` read it before.

In process, the requests go through the server's framing (`uapi_server.Connection`) into a pure
device; against a live daemon, each goes over its own connection to the configuration socket.
"""

from __future__ import annotations

import contextlib
import errno
import random
import re
import socket
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.hardening.fuzz_daemon import WGPY, exchange, log_faults, start_daemon
from benchmarks.hardening.mutate import mutate_lines
from wgpy import uapi
from wgpy.client import socket_path
from wgpy.configure import apply_update, device_stats, get_reply
from wgpy.core.device import Device
from wgpy.core.endpoint import Endpoint
from wgpy.io import uapi_server
from wgpy.lab.netns import Namespace, ip_up, namespace, unique_ifname
from wgpy.uapi import DeviceUpdate, PeerUpdate

# A small pool of peers and prefixes, so that accepted requests keep the configuration small.
_PEER_KEYS = [bytes([number]) * 32 for number in range(1, 9)]
_PREFIXES = ["192.0.2.0/24", "192.0.2.7/32", "198.18.0.0/15", "fd00::/8", "fd00:2::1/128"]
# Unreachable from the daemon's namespace; some with zones no interface has, or no name can be.
_HOSTS = ["198.18.0.2", "198.19.0.7", "fd00:1::2", "fd00:1::2%lo", "fd00:1::2%\x00", "fd00::2%é"]
_REPLY_STATUS = re.compile(rb"errno=(-?[0-9]+)\n\n")
_COUNTER = re.compile(rb"(tx_bytes|rx_bytes|last_handshake_time_sec|last_handshake_time_nsec)=")


@dataclass
class UapiFuzzResult:
    requests: int = 0
    replies: int = 0  # one per request the server framed; a request may split into several
    rejected: int = 0  # replies with a nonzero errno
    rejected_sets: int = 0
    unchanged_after_rejected_set: int = 0
    crashes: list[str] = field(default_factory=list)
    daemon_alive: bool = True  # for a live daemon: still running at the end
    log_faults: int = 0  # for a live daemon: tracebacks and unexpected errors in its log

    def record_crash(self, request: bytes, what: str) -> None:
        if len(self.crashes) < 20:
            self.crashes.append(f"{what}\n--- request:\n{request[:2000]!r}")

    @property
    def held(self) -> bool:
        return (
            not self.crashes
            and self.unchanged_after_rejected_set == self.rejected_sets
            and self.daemon_alive
            and not self.log_faults
        )


# Generation ---------------------------------------------------------------------------------


def generate_request(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.05:
        return rng.randbytes(rng.randint(0, 200))
    if roll < 0.15:
        operation = rng.choice(["get=1", "stats=1", "set=2", "get=0", "GET=1", "get", "", "set=1 "])
        junk = rng.choice(["", "", "x", "\n", "private_key=00", "\r", "\x00"])
        return f"{operation}\n{junk}\n".encode("utf-8", errors="surrogatepass")
    lines = format_set_lines(random_update(rng))
    lines = mutate_lines(lines, rng, rng.randint(0, 3))
    ending = rng.choice(["\n\n", "\n\n", "\n\n", "\n", "", "\n\nget=1\n\n"])
    return ("set=1\n" + "\n".join(lines) + ending).encode("utf-8", errors="surrogatepass")


def format_set_lines(update: DeviceUpdate) -> list[str]:
    """The body of `update`'s set request, one line per setting."""
    return uapi.format_set(update).removeprefix("set=1\n").removesuffix("\n\n").split("\n")


def random_update(rng: random.Random) -> DeviceUpdate:
    return DeviceUpdate(
        private_key=rng.randbytes(32) if rng.random() < 0.2 else None,
        listen_port=rng.choice([0, rng.randint(20000, 60000)]) if rng.random() < 0.1 else None,
        fwmark=rng.getrandbits(32) if rng.random() < 0.1 else None,
        replace_peers=rng.random() < 0.15,
        peers=[_random_peer_update(rng) for _ in range(rng.randint(0, 3))],
    )


def _random_peer_update(rng: random.Random) -> PeerUpdate:
    peer = PeerUpdate(public_key=rng.choice(_PEER_KEYS))
    if rng.random() < 0.05:
        peer.remove = True
        return peer
    peer.update_only = rng.random() < 0.1
    peer.preshared_key = rng.randbytes(32) if rng.random() < 0.3 else None
    if rng.random() < 0.5:
        peer.endpoint = Endpoint(rng.choice(_HOSTS), rng.randint(1, 65535))
    if rng.random() < 0.4:
        peer.persistent_keepalive_interval = rng.choice([0, 1, 25])
    peer.replace_allowed_ips = rng.random() < 0.3
    for prefix in rng.sample(_PREFIXES, rng.randint(0, 3)):
        peer.change_allowed_ip(uapi.parse_allowed_ip(prefix), remove=rng.random() < 0.2)
    return peer


# In process ---------------------------------------------------------------------------------


class _PureDaemon:
    """The configuration side of `wgpy.io.interface.Interface` over a pure device, checking that
    every rejected `set` leaves `get` as it was. The port and fwmark are plain numbers here."""

    def __init__(self, result: UapiFuzzResult) -> None:
        self.device = Device(random.Random(1).randbytes, random.Random(2).randbytes(32))
        self.listen_port = 51820
        self.fwmark = 0
        self.now = 1000.0
        self.result = result
        self.applied = self.get()  # what `get` read after the last set applied

    def get(self) -> str:
        return get_reply(self.device, self.listen_port, self.fwmark)

    def handle_request(self, request: uapi.Request) -> list[str]:
        if request.operation == "get":
            return [self.get()]
        if request.operation == "stats":
            return [uapi.format_stats(device_stats(self.device, self.now))]
        if request.error is not None:
            self.result.rejected_sets += 1
            self.result.unchanged_after_rejected_set += self.get() == self.applied
            return [uapi.format_errno(request.error.errno)]
        update = request.update
        assert update is not None
        self.now += 1.0
        apply_update(self.device, update, self.now)
        if update.listen_port is not None:
            self.listen_port = update.listen_port
        if update.fwmark is not None:
            self.fwmark = update.fwmark
        self.applied = self.get()
        return [uapi.format_errno(0)]


def fuzz_in_process(count: int, seed: int) -> UapiFuzzResult:
    rng = random.Random(seed)
    result = UapiFuzzResult()
    daemon = _PureDaemon(result)
    client, server = socket.socketpair()  # Connection wants a socket; this one is never used
    with client, server:
        for _ in range(count):
            request = generate_request(rng)
            result.requests += 1
            connection = uapi_server.Connection(server, daemon.handle_request)
            try:
                reply = b"".join(connection.feed(request))
                if not connection.closing:
                    reply += b"".join(connection.feed(b""))  # the client hangs up
                check_replies(result, request, reply)
                uapi.parse_get(daemon.get())
            except Exception:
                result.record_crash(request, traceback.format_exc())
    return result


def check_replies(result: UapiFuzzResult, request: bytes, reply: bytes) -> None:
    """Every reply ends in its status; what follows the last status is nothing."""
    end = 0
    for status in _REPLY_STATUS.finditer(reply):
        code = -int(status[1])
        result.replies += 1
        if code:
            result.rejected += 1
            if code not in errno.errorcode:
                result.record_crash(request, f"errno={-code} is no errno")
        end = status.end()
    if reply[end:]:
        result.record_crash(request, f"reply not ended by its errno: {reply!r}")


# Against a live daemon ----------------------------------------------------------------------


def _configuration(socket_path: Path) -> bytes:
    """What `get` reads, but for the counters that traffic moves."""
    reply = exchange(socket_path, b"get=1\n\n")
    return b"".join(line for line in reply.splitlines(keepends=True) if not _COUNTER.match(line))


# The daemon's starting point: a key, a port and a peer. Its namespace has no way out.
_LONE_SETUP = (
    f"set=1\nprivate_key={'11' * 32}\nlisten_port=51820\npublic_key={_PEER_KEYS[0].hex()}\n"
    "endpoint=198.18.0.2:51820\npersistent_keepalive_interval=1\nallowed_ip=192.0.2.2/32\n\n"
)


_LONE_ADDRESSES = ("192.0.2.1/24", "fd00:2::1/64")
# Inside prefixes the requests give peers: each packet to them makes the daemon send a handshake
# initiation to whatever endpoint the requests left that peer with.
_TRAFFIC_TARGETS = (("192.0.2.7", 9), ("fd00:2::9", 9))


class _Traffic:
    """A datagram into the tunnel towards each of _TRAFFIC_TARGETS, after every request."""

    def __init__(self, ns: Namespace) -> None:
        with ns.entered():
            self.sockets = [
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                socket.socket(socket.AF_INET6, socket.SOCK_DGRAM),
            ]
        for sock in self.sockets:
            sock.setblocking(False)

    def send(self) -> None:
        for sock, target in zip(self.sockets, _TRAFFIC_TARGETS, strict=True):
            with contextlib.suppress(OSError):  # a full buffer or no route: no matter
                sock.sendto(b"fuzz", target)

    def __enter__(self) -> _Traffic:
        return self

    def __exit__(self, *_: object) -> None:
        for sock in self.sockets:
            sock.close()


def fuzz_lone_daemon(count: int, seed: int) -> UapiFuzzResult:
    """`fuzz_live_socket` against a wgpy daemon of its own, in a namespace of its own."""
    with namespace("wgpyfuzz") as ns, tempfile.TemporaryFile() as log:
        ifname = unique_ifname("fu")
        uapi_socket = socket_path(ifname)
        try:
            daemon = start_daemon(ns, WGPY, ifname, log, {"LOG_LEVEL": "debug"})
            assert exchange(uapi_socket, _LONE_SETUP.encode()) == b"errno=0\n\n"
            ip_up(ns, ifname, *_LONE_ADDRESSES)
            with _Traffic(ns) as traffic:
                result = fuzz_live_socket(uapi_socket, count, seed, traffic.send)
            result.daemon_alive = daemon.poll() is None
        finally:
            uapi_socket.unlink(missing_ok=True)
        log.seek(0)
        text = log.read().decode(errors="replace")
    result.log_faults = log_faults(text)
    if result.log_faults:
        result.crashes.append(f"daemon log:\n{text[-3000:]}")
    return result


def fuzz_live_socket(
    socket_path: Path, count: int, seed: int, after_each: Callable[[], None] = lambda: None
) -> UapiFuzzResult:
    """Each request on a connection of its own; `get` before and after on connections of theirs.
    A reply without errno=0 rejected everything it answered, so `get` must read as before."""
    rng = random.Random(seed)
    result = UapiFuzzResult()
    before = _configuration(socket_path)
    for _ in range(count):
        request = generate_request(rng)
        result.requests += 1
        try:
            reply = exchange(socket_path, request)
            check_replies(result, request, reply)
            after_each()
            after = _configuration(socket_path)
        except OSError:
            result.record_crash(request, f"daemon unreachable:\n{traceback.format_exc()}")
            break
        if b"errno=0\n" not in reply and request.startswith(b"set=1\n"):
            result.rejected_sets += 1
            result.unchanged_after_rejected_set += after == before
            if after != before:
                result.record_crash(request, f"rejected, yet changed:\n{before!r}\n{after!r}")
        before = after
    return result
