"""Userspace WireGuard peers in network namespaces, for the tests in tests/netns.

An `Implementation` is a daemon with wireguard-go's command line: `COMMAND [-f] IFNAME` creates
the TUN interface IFNAME and its configuration socket (wgpy.client.socket_path); without -f it
returns 0 once both exist and a background process serves them. wgpy and wireguard-go are
interchangeable by that contract, so every scenario runs on a pair of them.

Set WGPY_STAND_IN=wireguard-go to have wireguard-go play wgpy's part: the way to check the tests
themselves against the reference implementation.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import pytest

from wgpy.client import socket_path
from wgpy.io.uapi_server import is_live
from wgpy.io.udp import SO_RCVBUFFORCE
from wgpy.lab.netns import (
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    VETH,
    Namespace,
    WgKeys,
    ip_up,
    unique_ifname,
    wait_until,
    wg_genkey,
    wg_setconf,
)

WG_PORT = 51820
# The tunnel addresses of the two peers: (IPv4, IPv6), on a /24 and a /64.
INNER = (("192.0.2.1", "fd00:2::1"), ("192.0.2.2", "fd00:2::2"))
INNER_PREFIXES = (24, 64)

STAND_IN_VARIABLE = "WGPY_STAND_IN"
WGPY_MODULE = (sys.executable, "-m", "wgpy.cli.wgpy")

Family = Literal["ipv4", "ipv6"]


@dataclass(frozen=True)
class Implementation:
    """A userspace WireGuard daemon started as `command [-f] IFNAME`."""

    name: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # added to the environment it runs in

    def argv(self, ifname: str, *, foreground: bool = True) -> list[str]:
        return [*self.command, *(["-f"] if foreground else []), ifname]

    def executable(self, directory: Path) -> Path:
        """A one-word command for the daemon, as WG_QUICK_USERSPACE_IMPLEMENTATION must be."""
        path = directory / f"{self.name.split()[0]}-daemon"
        command = shlex.join(
            ["env", *(f"{name}={value}" for name, value in self.env), *self.command]
        )
        path.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        path.chmod(0o755)
        return path


def _wgpy() -> Implementation:
    stand_in = os.environ.get(STAND_IN_VARIABLE)
    if stand_in:
        return Implementation(f"wgpy (played by {stand_in})", (stand_in,))
    return Implementation("wgpy", WGPY_MODULE)


WIREGUARD_GO = Implementation("wireguard-go", ("wireguard-go",))
WGPY = _wgpy()
STANDING_IN = WGPY.command != WGPY_MODULE
# wgpy on its pure-Python data path, the reference the compiled accelerator is held to.
WGPY_PURE = Implementation("wgpy-pure", WGPY.command, (("WGPY_PURE", "1"),))
# wgpy with a writer thread for the TUN and one for the sockets (wgpy/io/writers.py), which by
# default only machines of four CPUs or more run.
WGPY_WRITERS = Implementation("wgpy-writers", WGPY.command, (("WGPY_WRITERS", "tun,udp"),))


PAIRS = [
    pytest.param((WGPY, WGPY), id="wgpy-wgpy"),
    pytest.param((WGPY, WIREGUARD_GO), id="wgpy-wireguard-go"),
]
# The pairs again with one end on the pure path, facing the accelerated end and wireguard-go:
# for the data-path tests, which CI runs both ways (issue 19); and one end with writer threads.
DATA_PATH_PAIRS = [
    *PAIRS,
    pytest.param((WGPY_PURE, WGPY), id="wgpy_pure-wgpy"),
    pytest.param((WGPY_PURE, WIREGUARD_GO), id="wgpy_pure-wireguard-go"),
    pytest.param((WGPY_WRITERS, WIREGUARD_GO), id="wgpy_writers-wireguard-go"),
]


def unless_standing_in(reason: str, *, strict: bool = True) -> pytest.MarkDecorator:
    """Expect a failure where wireguard-go plays wgpy and wgpy's contract is stricter."""
    return pytest.mark.xfail(STANDING_IN, reason=f"wireguard-go {reason}", strict=strict)


# Peers.


class PeerDump(NamedTuple):
    """One peer line of `wg show IFNAME dump`."""

    public_key: str
    preshared_key: str  # "(none)" when unset
    endpoint: str  # "(none)" when unset
    allowed_ips: frozenset[str]
    latest_handshake: int  # seconds since the epoch, 0 for never
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: str  # "off" or seconds


class InterfaceDump(NamedTuple):
    """The interface line of `wg show IFNAME dump`, and its peers by public key."""

    private_key: str
    public_key: str
    listen_port: int
    fwmark: str  # "off" or hexadecimal
    peers: dict[str, PeerDump]


@dataclass
class Peer:
    """One end of a tunnel: a daemon serving `ifname` in `ns`, configured by `wg setconf`."""

    ns: Namespace
    implementation: Implementation
    ifname: str
    keys: WgKeys
    inner: tuple[str, str]
    config: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict)  # for the daemon, beside this process's

    @property
    def uapi_socket(self) -> Path:
        return socket_path(self.ifname)

    def start(self) -> None:
        """Start the daemon in the foreground, configure it and bring its inner addresses up."""
        self.process = start_serving(self.ns, self.implementation, self.ifname, env=self.env)
        wg_setconf(self.ns, self.ifname, self.config)
        ip_up(self.ns, self.ifname, *self._inner_interfaces())

    def quick_config(self) -> str:
        """The configuration with wg-quick's Address line for the inner addresses."""
        addresses = ", ".join(self._inner_interfaces())
        return self.config.replace("[Interface]\n", f"[Interface]\nAddress = {addresses}\n", 1)

    def _inner_interfaces(self) -> list[str]:
        return [f"{a}/{bits}" for a, bits in zip(self.inner, INNER_PREFIXES, strict=True)]

    def kill(self) -> None:
        """End the daemon at once (SIGKILL, by pid), as a crash would: it cleans nothing up."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def dump(self) -> InterfaceDump:
        return parse_dump(self.ns.run("wg", "show", self.ifname, "dump").stdout)

    def showconf(self) -> str:
        return self.ns.run("wg", "showconf", self.ifname).stdout


def make_peers(
    implementations: tuple[Implementation, Implementation],
    a: Namespace,
    b: Namespace,
    *,
    outer: Family = "ipv4",
    preshared_key: bool = False,
) -> tuple[Peer, Peer]:
    """Two peers, in `a` and `b`, each the other's only peer, reached over the `outer` family."""
    keys = (wg_genkey(), wg_genkey())
    psk = f"PresharedKey = {wg_genpsk()}\n" if preshared_key else ""
    peers = tuple(
        Peer(ns, implementation, unique_ifname(), own, inner)
        for ns, implementation, own, inner in zip((a, b), implementations, keys, INNER, strict=True)
    )
    for peer, other in ((peers[0], peers[1]), (peers[1], peers[0])):
        peer.config = (
            f"[Interface]\nPrivateKey = {peer.keys.private}\nListenPort = {WG_PORT}\n\n"
            f"[Peer]\nPublicKey = {other.keys.public}\n{psk}"
            f"Endpoint = {endpoint(other.ns, outer)}\n"
            f"AllowedIPs = {other.inner[0]}/32, {other.inner[1]}/128\n"
        )
    return peers[0], peers[1]


@contextmanager
def cleaned_up(*peers: Peer) -> Iterator[None]:
    """On exit, end every process in the peers' namespaces (by pid) and remove their sockets."""
    try:
        yield
    finally:
        for peer in peers:
            if peer.process is not None:
                peer.ns.stop(peer.process)
            end_processes(peer.ns)
            peer.uapi_socket.unlink(missing_ok=True)


@contextmanager
def running(peers: tuple[Peer, Peer]) -> Iterator[tuple[Peer, Peer]]:
    """The two peers `make_peers` made, started, then ended and cleaned up on exit."""
    with cleaned_up(*peers):
        for peer in peers:
            peer.start()
        yield peers


def endpoint(ns: Namespace, family: Family) -> str:
    """`ns`'s WireGuard endpoint on its underlay address of `family`."""
    return f"{ns.ipv4}:{WG_PORT}" if family == "ipv4" else f"[{ns.ipv6}]:{WG_PORT}"


def wg_genpsk() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def hex_key(key: str) -> str:
    """A base64 key as the configuration protocol spells it: 64 hex digits."""
    return base64.b64decode(key).hex()


def parse_dump(text: str) -> InterfaceDump:
    """Parse `wg show IFNAME dump` (wireguard-tools src/show.c dump_print): tab-separated."""
    interface, *peer_lines = (line.split("\t") for line in text.splitlines())
    private_key, public_key, port, fwmark = interface
    peers = [
        PeerDump(key, psk, ep, frozenset(ips.split(",")) - {"(none)"}, int(hs), int(rx),
                 int(tx), keepalive)
        for key, psk, ep, ips, hs, rx, tx, keepalive in peer_lines
    ]  # fmt: skip
    return InterfaceDump(
        private_key, public_key, int(port), fwmark, {p.public_key: p for p in peers}
    )


# Daemons.


def start_serving(
    ns: Namespace,
    implementation: Implementation,
    ifname: str,
    *,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`implementation` serving a new interface `ifname` in the foreground in `ns`, with `env`
    added to this process's environment.

    Ready once its socket accepts connections: a killed predecessor may have left the file.
    """
    uapi_socket = socket_path(ifname)
    added = {**dict(implementation.env), **(env or {})}
    environ = {**os.environ, **added} if added else None
    with tempfile.TemporaryFile() as log:
        process = ns.popen(*implementation.argv(ifname), stdout=log, stderr=log, env=environ)
        wait_until(lambda: is_live(uapi_socket) or process.poll() is not None, STARTUP_TIMEOUT)
        if not is_live(uapi_socket):
            ns.stop(process)
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"{implementation.name} did not start on {ifname}: {output}")
    return process


# wg-quick's add_if (linux.bash) tries the kernel's WireGuard first, and takes it where it loads.
USERSPACE_ADD_IF = (
    'add_if() { cmd "${WG_QUICK_USERSPACE_IMPLEMENTATION:-wireguard-go}" "$INTERFACE"; }\n'
)
OVERRIDE_POINT = "# ~~ function override insertion point ~~\n"


def userspace_wg_quick(path: Path) -> Path:
    """Write to `path` a copy of wg-quick whose add_if always starts the userspace daemon
    (WG_QUICK_USERSPACE_IMPLEMENTATION, wireguard-go if unset), module or not."""
    wg_quick = Path(shutil.which("wg-quick") or "wg-quick").read_text()
    assert OVERRIDE_POINT in wg_quick, "wg-quick has no function override point"
    path.write_text(wg_quick.replace(OVERRIDE_POINT, OVERRIDE_POINT + USERSPACE_ADD_IF))
    path.chmod(0o755)
    return path


def end_processes(ns: Namespace) -> None:
    """End every process left in `ns` (daemons that detached), by pid: SIGTERM, then SIGKILL."""
    ns.end_processes()


def processes_in(ns: Namespace) -> list[int]:
    """The pids of the processes in `ns`, this one excepted."""
    return ns.pids()


def drop_count(ns: Namespace, ifname: str) -> int:
    """How many datagrams wgpy serving `ifname` has dropped, by `wgpy show IFNAME --json`.

    Always asks the real wgpy, even when another implementation plays its daemon; one that counts
    no drops fails the calling test, as does a `wgpy show` that fails or shows none.
    """
    shown = json.loads(ns.run(*WGPY_MODULE, "show", ifname, "--json").stdout)
    assert "drops" in shown, f"`wgpy show {ifname} --json` shows no drops: {shown}"
    return sum(shown["drops"].values())


def udp_receive_buffer_errors(ns: Namespace) -> int:
    """Datagrams the kernel in `ns` dropped because a socket's receive buffer was full."""
    lines = [line.split() for line in ns.run("cat", "/proc/net/snmp").stdout.splitlines()]
    header, values = (line for line in lines if line[0] == "Udp:")
    return int(dict(zip(header, values, strict=True))["RcvbufErrors"])


# Traffic.

# Capture.

ETH_P_ALL = 0x0003  # the kernel shows outgoing packets only to sockets for every protocol
ETH_P_IP = 0x0800
IPPROTO_UDP = 17
TRANSPORT_HEADER = b"\x04\x00\x00\x00"  # type 4, reserved zero


CAPTURE_BUFFER = 64 * 1024 * 1024  # root only (SO_RCVBUFFORCE), as the namespace tests run


class TransportCapture:
    """Transport-data messages leaving a namespace for `destination`:`port` over IPv4.

    Opened before the traffic starts: the packet socket queues what passes until `take`, in a
    buffer large enough for all of it. (With the default one, about three UDP_SEGMENT sends of
    64 KiB fit: when those held fewer messages than `take` asked for and the sender had nothing
    more in flight, as it waits in a progress hook that calls `take`, no more came.)
    """

    def __init__(self, ns: Namespace, destination: str, port: int = WG_PORT) -> None:
        with ns.entered():
            self._socket = socket.socket(
                socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL)
            )
        self._socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CAPTURE_BUFFER)
        self._socket.bind((VETH, ETH_P_ALL))
        self._destination = socket.inet_aton(destination)
        self._port = port.to_bytes(2, "big")

    def take(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """The next `count` transport messages seen on the way out."""
        messages: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(messages) < count:
            self._socket.settimeout(max(deadline - time.monotonic(), 0.001))
            packet, (_, protocol, *_) = self._socket.recvfrom(65535)
            header = (packet[0] & 0x0F) * 4
            udp, payload = packet[header : header + 8], packet[header + 8 :]
            if (
                protocol == ETH_P_IP
                and packet[9] == IPPROTO_UDP
                and packet[16:20] == self._destination
                and udp[2:4] == self._port
                and payload[:4] == TRANSPORT_HEADER
            ):
                messages.extend(_segments(payload))
        return messages[:count]

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> TransportCapture:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _segments(payload: bytes) -> list[bytes]:
    """The transport messages in one captured payload: a sender using UDP_SEGMENT hands the
    packet socket a whole batch, every message but the last of one size.

    The next message starts where its header and the same receiver index recur, at a multiple
    of 16 bytes (messages are padded to 16); by chance inside ciphertext with odds of 2**-64.
    """
    start = TRANSPORT_HEADER + payload[4:8]
    size = next(
        (offset for offset in range(32, len(payload), 16) if payload.startswith(start, offset)),
        len(payload),
    )
    return [payload[offset : offset + size] for offset in range(0, len(payload), size)]


def once_past(share: float, action: Callable[[], None]) -> Callable[[float], None]:
    """A `transfer` progress hook that runs `action` once the `share` of bytes is sent."""
    pending = [action]

    def hook(sent: float) -> None:
        if sent >= share and pending:
            pending.pop()()

    return hook


def udp_socket(ns: Namespace) -> socket.socket:
    """An IPv4 UDP socket of `ns`, to send from."""
    with ns.entered():
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
