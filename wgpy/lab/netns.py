"""Network namespaces for WireGuard topologies: the demo, the tests, the interop harness and the
benchmarks build their hosts with this.

Every user gets namespaces of its own (unique names), joined by a veth pair on test-only
addresses (198.18.0.0/15, fd00::/8). Every process started in them is tracked and ended by pid,
and the namespaces are deleted in a `finally`, so nothing done here reaches the host's own
network.

The template for a test against real WireGuard peers is
tests/netns/test_netns_harness.py::test_wireguard_go_peers_ping_each_other_through_the_tunnel.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import hashlib
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

from wgpy.client import socket_path
from wgpy.errors import WgpyError
from wgpy.io.uapi_server import is_live

NETNS_DIR = Path("/run/netns")

VETH = "veth0"
# The port a lab's WireGuard interfaces listen on: each interface has a namespace to itself.
WG_PORT = 51820
# The underlay: (IPv4, IPv6) of each end of the veth pair, on a /24 and a /64.
UNDERLAY = (("198.18.0.1", "fd00:1::1"), ("198.18.0.2", "fd00:1::2"))

COMMAND_TIMEOUT = 30.0
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


class CommandFailed(subprocess.CalledProcessError, WgpyError):
    """A command exited nonzero; unlike its base class, the message shows what it printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr or ''}{self.stdout or ''}".rstrip()


class Namespace:
    """A network namespace made for one test; create it with `namespace()` or `veth_pair()`."""

    def __init__(self, name: str) -> None:
        self.name = name
        # This end's underlay addresses when made by `veth_pair`, empty otherwise.
        self.ipv4 = ""
        self.ipv6 = ""
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(
        self, *cmd: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside the namespace and wait for it; raise CommandFailed if `check`."""
        return _run(["ip", "netns", "exec", self.name, *cmd], check=check, input=input)

    def popen(self, *cmd: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start `cmd` inside the namespace; it is ended by pid when the namespace is deleted."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        process = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kwargs)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """End `process` by pid: SIGTERM, then SIGKILL if it lingers."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the calling thread inside the namespace for the block.

        Sockets and TUN devices opened in the block belong to the namespace and stay there.
        """
        with (
            open("/proc/thread-self/ns/net", "rb") as home,
            open(NETNS_DIR / self.name, "rb") as target,
        ):
            _setns(target.fileno())
            try:
                yield
            finally:
                _setns(home.fileno())

    def exists(self) -> bool:
        return (NETNS_DIR / self.name).exists()

    def delete(self) -> None:
        """End every process started here, and any other still inside (a daemon that went to
        the background), then delete the namespace and its interfaces."""
        for process in self.processes:
            self.stop(process)
        if self.exists():
            self.end_processes()
            ip("netns", "delete", self.name)

    def pids(self) -> list[int]:
        """The processes inside, this one excepted (a thread of it in `entered` is listed)."""
        if not self.exists():
            return []
        listed = _run(["ip", "netns", "pids", self.name]).stdout.split()
        return [int(pid) for pid in listed if int(pid) != os.getpid()]

    def end_processes(self) -> None:
        """End by pid every process inside, as only ours can be: SIGTERM, then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids():
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if wait_until(lambda: not self.pids(), STOP_TIMEOUT):
                return

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"


class WgKeys(NamedTuple):
    private: str
    public: str


def missing_requirements(tools: Sequence[str] = ()) -> str | None:
    """Why namespace tests needing `tools` cannot run on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "needs root"
    absent = [tool for tool in ("ip", *tools) if shutil.which(tool) is None]
    if absent:
        return f"needs {', '.join(absent)} (see scripts/install-deps)"
    return None


@contextmanager
def namespace(prefix: str = "wgpy") -> Iterator[Namespace]:
    """A fresh namespace with its loopback up, deleted (with its processes) on exit."""
    ns = Namespace(f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}")
    ip("netns", "add", ns.name)
    try:
        ip("-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        ns.delete()


@contextmanager
def veth_pair() -> Iterator[tuple[Namespace, Namespace]]:
    """Two fresh namespaces joined by a veth pair carrying the `UNDERLAY` addresses."""
    with namespace() as a, namespace() as b:
        join(a, b)
        yield a, b


def join(a: Namespace, b: Namespace) -> None:
    """Join `a` and `b` by a veth pair carrying the `UNDERLAY` addresses, once it is up."""
    link(a, VETH, b, VETH)
    for ns, (ipv4, ipv6) in zip((a, b), UNDERLAY, strict=True):
        ns.ipv4, ns.ipv6 = ipv4, ipv6
        # The link-local address without duplicate detection too, as the others: with it, the
        # kernel adds the address and its route a second after the link is up, and a test that
        # compares the namespace's routes before and after something raced that.
        ns.run("sysctl", "-qw", f"net.ipv6.conf.{VETH}.accept_dad=0")
        ip_up(ns, VETH, f"{ipv4}/24", f"{ipv6}/64")
    wait_operational([(a, VETH), (b, VETH)])


def link(a: Namespace, a_name: str, b: Namespace, b_name: str) -> None:
    """A veth pair: `a_name` in `a`, `b_name` in `b`."""
    ip("-n", a.name, "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b.name)


def wait_operational(links: Iterable[tuple[Namespace, str]]) -> None:
    """Wait until every (namespace, interface) is operational, its IPv6 link-local address in
    place and past duplicate detection: neighbour discovery sent before is lost and only retried
    a second later, and until then the link's addresses and routes still change."""
    links = list(links)
    if not wait_until(
        lambda: all(_operational(ns, ifname) for ns, ifname in links), STARTUP_TIMEOUT
    ):
        raise RuntimeError(f"not operational in {STARTUP_TIMEOUT} s: {links}")


def ip(*args: str) -> None:
    """Run iproute2's `ip` in the host's namespace (use `-n NAME` to act on a test's)."""
    _run(["ip", *args])


def ip_up(ns: Namespace, ifname: str, *addresses: str) -> None:
    """Give `ifname` in `ns` the CIDR `addresses` (IPv6 without duplicate detection), set it up."""
    for address in addresses:
        nodad = ["nodad"] if ":" in address else []
        ip("-n", ns.name, "address", "add", address, "dev", ifname, *nodad)
    ip("-n", ns.name, "link", "set", ifname, "up")


def can_ping(ns: Namespace, address: str, deadline: int = 5) -> bool:
    """Whether `address` answers an ICMP echo from `ns` within `deadline` seconds."""
    return ns.run("ping", "-c", "1", "-w", str(deadline), address, check=False).returncode == 0


def unique_ifname(prefix: str = "wg") -> str:
    """An interface name no other test on this host uses, within the kernel's 15 bytes: the
    configuration sockets (wgpy.client.socket_path) are in the file system, which every network
    namespace shares."""
    return f"{prefix}{secrets.token_hex(4)}"[:15]


def wg_genkey() -> WgKeys:
    private = _run(["wg", "genkey"]).stdout.strip()
    return WgKeys(private, _run(["wg", "pubkey"], input=private).stdout.strip())


def wg_setconf(ns: Namespace, ifname: str, config: str) -> None:
    """Configure `ifname` in `ns` from wg(8) configuration text."""
    ns.run("wg", "setconf", ifname, "/dev/stdin", input=config)


def configure(ns: Namespace, ifname: str, config: str, *addresses: str) -> None:
    """Give `ifname` in `ns` the wg(8) configuration text `config`, then bring it up with the CIDR
    `addresses`."""
    wg_setconf(ns, ifname, config)
    ip_up(ns, ifname, *addresses)


def one_peer_config(
    private_key: str,
    peer: str,
    allowed_ips: str,
    endpoint: str = "",
    *,
    preshared_key: str = "",
    keepalive: int = 0,
) -> str:
    """wg(8) configuration text for an interface listening on WG_PORT whose one peer has the
    public key `peer` and `allowed_ips` as wg lists them ("192.0.2.2/32, fd00:2::2/128"), and,
    where given, an `endpoint`, a `preshared_key` and a persistent `keepalive` in seconds. More
    peers may follow: `peer_section`s appended."""
    interface_lines = [f"PrivateKey = {private_key}", f"ListenPort = {WG_PORT}"]
    peer_text = peer_section(
        peer, allowed_ips, endpoint, preshared_key=preshared_key, keepalive=keepalive
    )
    return "\n".join(["[Interface]", *interface_lines, "", peer_text])


def peer_section(
    peer: str,
    allowed_ips: str,
    endpoint: str = "",
    *,
    preshared_key: str = "",
    keepalive: int = 0,
) -> str:
    """A wg(8) [Peer] section, as one_peer_config's arguments describe it."""
    peer_lines = [f"PublicKey = {peer}", f"AllowedIPs = {allowed_ips}"]
    if endpoint:
        peer_lines.append(f"Endpoint = {endpoint}")
    if preshared_key:
        peer_lines.append(f"PresharedKey = {preshared_key}")
    if keepalive:
        peer_lines.append(f"PersistentKeepalive = {keepalive}")
    return "\n".join(["[Peer]", *peer_lines, ""])


def start_wireguard_go(ns: Namespace, ifname: str) -> subprocess.Popen[bytes]:
    """wireguard-go serving a new interface `ifname` in `ns`, once it takes configuration."""
    return start_daemon(ns, ("wireguard-go",), ifname)


def start_daemon(ns: Namespace, command: Sequence[str], ifname: str) -> subprocess.Popen[bytes]:
    """A userspace WireGuard with wireguard-go's command line (`COMMAND --foreground IFNAME`),
    serving a new interface `ifname` in `ns`, once it takes configuration. (wireguard-go knows no
    WGPY_RUN_DIR: with it set, only wgpy can be waited for.)"""
    uapi_socket = socket_path(ifname)
    with tempfile.TemporaryFile() as log:
        process = ns.popen(*command, "--foreground", ifname, stdout=log, stderr=log)
        # The file is there a moment before the daemon listens on it: wait until it accepts.
        wait_until(lambda: is_live(uapi_socket) or process.poll() is not None, STARTUP_TIMEOUT)
        if not is_live(uapi_socket):
            ns.stop(process)
            log.seek(0)
            raise RuntimeError(f"{command[0]} did not start on {ifname}: {log.read().decode()}")
    return process


@contextmanager
def configured_daemon(
    ns: Namespace, command: Sequence[str], ifname: str, config: str, *addresses: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` serving `ifname` in `ns` (as `start_daemon`), configured from the wg(8) text
    `config` and up with the CIDR `addresses`; stopped, and its socket removed, on exit."""
    with restartable_daemon(ns, command, ifname, config, *addresses) as daemon:
        yield daemon.process


class Daemon:
    """A configured daemon (as `configured_daemon`) that can be restarted: a new process, with
    the same configuration and none of the old one's sessions."""

    def __init__(
        self, ns: Namespace, command: Sequence[str], ifname: str, config: str, *addresses: str
    ) -> None:
        self.ns, self.command, self.ifname = ns, command, ifname
        self.config, self.addresses = config, addresses
        self.process = start_daemon(ns, command, ifname)

    def restart(self) -> None:
        self.stop()
        gone = wait_until(
            lambda: self.ns.run("ip", "link", "show", self.ifname, check=False).returncode != 0,
            STARTUP_TIMEOUT,
        )
        if not gone:
            raise RuntimeError(f"{self.ifname} outlived its process")
        self.process = start_daemon(self.ns, self.command, self.ifname)
        configure(self.ns, self.ifname, self.config, *self.addresses)

    def stop(self) -> None:
        self.ns.stop(self.process)
        socket_path(self.ifname).unlink(missing_ok=True)


@contextmanager
def restartable_daemon(
    ns: Namespace, command: Sequence[str], ifname: str, config: str, *addresses: str
) -> Iterator[Daemon]:
    """`configured_daemon`, as a Daemon that the caller may restart; the last process is stopped
    on exit."""
    daemon = Daemon(ns, command, ifname, config, *addresses)
    try:
        configure(ns, ifname, config, *addresses)
        yield daemon
    finally:
        daemon.stop()


def drop_share(ns: Namespace, percent: int) -> None:
    """Drop `percent`% of the WireGuard datagrams `ns` sends and receives, at random."""
    ns.run(
        "nft",
        "add table inet lossy ; "
        "add chain inet lossy out { type filter hook output priority 0 ; } ; "
        "add chain inet lossy in { type filter hook input priority 0 ; } ; "
        f"add rule inet lossy out udp dport {WG_PORT} numgen random mod 100 < {percent} "
        "counter drop ; "
        f"add rule inet lossy in udp sport {WG_PORT} numgen random mod 100 < {percent} "
        "counter drop",
    )


def dropped(ns: Namespace) -> list[int]:
    """How many datagrams `drop_share`'s rules dropped, out and in."""
    listing = ns.run("nft", "list table inet lossy").stdout
    return [int(count) for count in re.findall(r"counter packets (\d+)", listing)]


# -- a checked transfer ------------------------------------------------------------------------

TRANSFER_PORT = 5201
TRANSFER_CHUNK = 64 * 1024
TRANSFER_TIMEOUT = 120.0
# The longest a live transfer waits on one socket call: a roaming peer stalls it for a few seconds.
TRANSFER_IDLE_TIMEOUT = 30.0


class Transfer(NamedTuple):
    sent_bytes: int
    received_bytes: int
    sent_sha256: str
    received_sha256: str
    seconds: float

    @property
    def intact(self) -> bool:
        return (self.received_bytes, self.received_sha256) == (self.sent_bytes, self.sent_sha256)


def transfer(
    sender: Namespace,
    receiver: Namespace,
    address: str,
    size: int,
    *,
    progress: Callable[[float], None] | None = None,
) -> Transfer:
    """Send `size` random bytes over TCP from `sender` to `address` in `receiver`; both ends
    hash what passes, so any byte lost or changed on the way shows.

    The sockets are opened inside the namespaces and driven by threads of this process. Before
    each chunk the sender calls `progress` (if any) with the share of bytes sent so far, and goes
    on when it returns: how a test acts at a given point of the transfer.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with receiver.entered():
        listener = socket.create_server(("", TRANSFER_PORT), family=family)
    with sender.entered():
        client = socket.socket(family, socket.SOCK_STREAM)
    # The pool is left last, so that its threads wait on closed sockets, not on idle ones.
    with concurrent.futures.ThreadPoolExecutor(2) as pool, listener, client:
        listener.settimeout(TRANSFER_IDLE_TIMEOUT)
        client.settimeout(TRANSFER_IDLE_TIMEOUT)
        started = time.monotonic()
        received = pool.submit(_receive_hashed, listener)
        client.connect((address, TRANSFER_PORT))
        sent = pool.submit(_send_hashed, client, size, progress or (lambda _: None))
        sent_sha256 = sent.result(TRANSFER_TIMEOUT)
        received_sha256, received_bytes = received.result(TRANSFER_TIMEOUT)
    seconds = time.monotonic() - started
    return Transfer(size, received_bytes, sent_sha256, received_sha256, seconds)


def _send_hashed(client: socket.socket, size: int, progress: Callable[[float], None]) -> str:
    rng = random.Random(size)
    digest = hashlib.sha256()
    sent = 0
    while sent < size:
        progress(sent / size)
        chunk = rng.randbytes(min(TRANSFER_CHUNK, size - sent))
        digest.update(chunk)
        client.sendall(chunk)
        sent += len(chunk)
    client.shutdown(socket.SHUT_WR)
    return digest.hexdigest()


def _receive_hashed(listener: socket.socket) -> tuple[str, int]:
    connection, _ = listener.accept()
    with connection:
        connection.settimeout(TRANSFER_IDLE_TIMEOUT)
        digest = hashlib.sha256()
        received = 0
        buffer = bytearray(TRANSFER_CHUNK)
        while count := connection.recv_into(buffer):
            digest.update(memoryview(buffer)[:count])
            received += count
    return digest.hexdigest(), received


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _run(
    cmd: list[str], *, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise CommandFailed(result.returncode, cmd, result.stdout, result.stderr)
    return result


def _operational(ns: Namespace, ifname: str) -> bool:
    if " state UP " not in _run(["ip", "-n", ns.name, "-o", "link", "show", ifname]).stdout:
        return False
    link_local = _run(["ip", "-n", ns.name, "-6", "-o", "address", "show", "dev", ifname,
                       "scope", "link"]).stdout  # fmt: skip
    return bool(link_local) and "tentative" not in link_local


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
