"""The bench the flood and faults areas share: daemons in namespaces, a routed topology, traffic.

A `Daemon` is a userspace WireGuard (wgpy or wireguard-go, by wireguard-go's command-line
contract) serving one interface in one namespace, configured with wg(8) and restartable with the
same configuration. `routed()` builds A <-> M <-> B: two hosts that reach each other only
through a router namespace M, where a fault can be imposed on what passes. `Probe` measures when
packets flow again after an event; `Sampler` watches a process's CPU and memory. (Checked
transfers are wgpy.lab.netns.transfer.)

Addresses: the underlay is 198.18.1.0/24 (A-M) and 198.18.2.0/24 (M-B); tunnels carry
192.0.2.0/24.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from wgpy import client
from wgpy.core.drops import DropReason
from wgpy.io.uapi_server import is_live
from wgpy.lab.netns import (
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    Namespace,
    WgKeys,
    configure,
    ip,
    ip_up,
    namespace,
    one_peer_config,
    unique_ifname,
    wait_until,
    wg_genkey,
)
from wgpy.uapi import DeviceStats

ROOT = Path(__file__).resolve().parents[2]
WGPY = (sys.executable, "-m", "wgpy.cli.wgpy")
WIREGUARD_GO = ("wireguard-go",)
# Tunnel addresses of side A and side B.
INNER = ("192.0.2.1", "192.0.2.2")
INNER_PREFIX = 24
LINK = "veth0"
UPLINK = "veth1"  # the router's second link, towards B


def python_env() -> dict[str, str]:
    """The environment for Python subprocesses: this checkout first on the path."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "LOG_LEVEL": "error"}


# -- daemons ---------------------------------------------------------------------------------


@dataclass
class Daemon:
    """A WireGuard daemon serving `ifname` in `ns`, with the tunnel address `inner`."""

    ns: Namespace
    command: tuple[str, ...]
    inner: str
    keys: WgKeys = field(default_factory=wg_genkey)
    ifname: str = field(default_factory=unique_ifname)
    config: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict)  # for the daemon, beside python_env()

    @property
    def uapi_socket(self) -> Path:
        return client.socket_path(self.ifname)

    @property
    def is_wgpy(self) -> bool:
        return self.command == WGPY

    def peer_with(self, other: Daemon, endpoint: str, keepalive: int = 0) -> None:
        """Make `other` this daemon's one peer, reached at `endpoint` ("" for none)."""
        self.config = one_peer_config(
            self.keys.private, other.keys.public, f"{other.inner}/32", endpoint, keepalive=keepalive
        )

    def start(self) -> None:
        """Start the daemon, configure it and bring its tunnel address up."""
        self.process = self.ns.popen(
            *self.command, "-f", self.ifname,
            cwd=ROOT, env={**python_env(), **self.env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # A killed predecessor leaves its socket file behind: wait for one that answers.
        if not wait_until(lambda: is_live(self.uapi_socket), STARTUP_TIMEOUT):
            raise RuntimeError(f"{self.command[-1]} did not start on {self.ifname}")
        configure(self.ns, self.ifname, self.config, f"{self.inner}/{INNER_PREFIX}")

    def kill(self) -> None:
        """End the daemon at once by pid, as a crash would: it cleans nothing up."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process is not None:
            self.ns.stop(self.process)
        self.uapi_socket.unlink(missing_ok=True)

    def stats(self) -> DeviceStats:
        return wgpy_stats(self.ifname)

    def endpoint(self) -> str:
        """Where this daemon sends to its one peer, as wg(8) shows it: "(none)" if nowhere."""
        shown = self.ns.run("wg", "show", self.ifname, "endpoints").stdout.split()
        return shown[1] if len(shown) == 2 else "(none)"


@contextmanager
def running(*daemons: Daemon) -> Iterator[None]:
    """Start the daemons in order; stop them all on exit."""
    try:
        for daemon in daemons:
            daemon.start()
        yield
    finally:
        for daemon in daemons:
            daemon.stop()


def wgpy_stats(ifname: str) -> DeviceStats:
    """wgpy's counters (`stats=1` over the configuration socket); a daemon without them, such as
    wireguard-go, fails the run rather than count nothing."""
    stats = client.get_stats(ifname)
    if stats is None:
        raise RuntimeError(f"the daemon serving {ifname} reports no statistics: is it wgpy?")
    return stats


def drops(stats: DeviceStats, reason: DropReason) -> int:
    """The device's drops for `reason`, its peers' included (wgpy/core/bookkeeping.py `drop`)."""
    # stats=1 names reasons as wgpy/configure.py device_stats does: the member name, lowercase.
    return stats.drops.get(reason.name.lower(), 0)


def rcvbuf_errors(ns: Namespace) -> int:
    """UDP datagrams the kernel in `ns` dropped because a receive buffer was full."""
    lines = [line.split() for line in ns.run("cat", "/proc/net/snmp").stdout.splitlines()]
    header, values = (line for line in lines if line[0] == "Udp:")
    return int(dict(zip(header, values, strict=True))["RcvbufErrors"])


# -- the routed topology ---------------------------------------------------------------------


class Routed(NamedTuple):
    a: Namespace
    middle: Namespace
    b: Namespace


@contextmanager
def routed() -> Iterator[Routed]:
    """A (198.18.1.1) <-> M (198.18.1.2 | 198.18.2.2) <-> B (198.18.2.1), M forwarding."""
    with ExitStack() as stack:
        a, middle, b = (stack.enter_context(namespace(f"wgpy-{role}")) for role in "amb")
        for host, subnet, far, router_link in ((a, 1, 2, LINK), (b, 2, 1, UPLINK)):
            ip("-n", host.name, "link", "add", LINK, "type", "veth",
               "peer", "name", router_link, "netns", middle.name)  # fmt: skip
            host.ipv4 = f"198.18.{subnet}.1"
            # One datagram per packet on the wire, as a NIC would send them: else a UDP GSO
            # batch crosses the router whole, and a fault imposed there hits the whole batch.
            ip("-n", host.name, "link", "set", LINK, "gso_max_segs", "1")
            ip_up(host, LINK, f"{host.ipv4}/24")
            ip_up(middle, router_link, f"198.18.{subnet}.2/24")
            ip("-n", host.name, "route", "add", f"198.18.{far}.0/24", "via", f"198.18.{subnet}.2")
        middle.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        # Without promotion, deleting the first address of a subnet deletes the others with it.
        a.run("sysctl", "-qw", f"net.ipv4.conf.{LINK}.promote_secondaries=1")
        if not wait_until(lambda: _reaches(a, b.ipv4), STARTUP_TIMEOUT):
            raise RuntimeError(f"{a.name} does not reach {b.name} through {middle.name}")
        yield Routed(a, middle, b)


def _reaches(ns: Namespace, address: str) -> bool:
    return ns.run("ping", "-c", "1", "-W", "1", address, check=False).returncode == 0


def nft(ns: Namespace, ruleset: str) -> None:
    ns.run("nft", "-f", "-", input=ruleset)


def nft_counter_packets(ns: Namespace, table: str, counter: str, family: str = "inet") -> int:
    shown = ns.run("nft", "list", "counter", family, table, counter).stdout
    match = re.search(r"packets (\d+)", shown)
    if match is None:
        raise RuntimeError(f"nft shows no packet count for {family} {table} {counter}: {shown}")
    return int(match.group(1))


# -- traffic ---------------------------------------------------------------------------------

PROBE_PORT = 7777
PROBE_INTERVAL = 0.02
STAMP = struct.Struct("!d")  # a probe's payload: when it was sent


class Probe:
    """A datagram every PROBE_INTERVAL through a tunnel, both ways or one, each stamped with
    the time it was sent; the receiving end notes when it arrived.

    `recovery(since)` is how long after `since` a datagram sent after `since` got through every
    way probed: the measure of a session that recovers by itself, the probes being the
    only actors. (An arrival alone would not do: a datagram sent before an event may still be
    on its way after it.)
    """

    def __init__(self, a: Daemon, b: Daemon, *, both_ways: bool = True) -> None:
        """`both_ways=False`: only from `a` to `b`."""
        self._ways = [(a, b), (b, a)][: 2 if both_ways else 1]
        # Per way, at its receiving end: (sent, arrived), monotonic seconds of this process.
        self._arrivals: list[list[tuple[float, float]]] = [[] for _ in self._ways]
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Probe:
        for (source, target), arrivals in zip(self._ways, self._arrivals, strict=True):
            with source.ns.entered():
                sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with target.ns.entered():
                receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            receiver.bind(("", PROBE_PORT))
            receiver.settimeout(0.1)
            self._spawn(self._receive, receiver, arrivals)
            self._spawn(self._send, sender, target.inner)
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _send(self, sender: socket.socket, address: str) -> None:
        with sender:
            while not self._stopped.wait(PROBE_INTERVAL):
                # The tunnel's interface vanishes while its daemon restarts.
                with suppress(OSError):
                    sender.sendto(STAMP.pack(time.monotonic()), (address, PROBE_PORT))

    def _receive(self, receiver: socket.socket, arrivals: list[tuple[float, float]]) -> None:
        with receiver:
            while not self._stopped.is_set():
                with suppress(TimeoutError):
                    data = receiver.recv(64)
                    if len(data) == STAMP.size:
                        arrivals.append((STAMP.unpack(data)[0], time.monotonic()))

    def _through_since(self, since: float) -> bool:
        # Probes arrive in the order sent: the last arrival is the newest one sent.
        return all(arrivals and arrivals[-1][0] > since for arrivals in self._arrivals)

    def recovery(self, since: float, timeout: float) -> float | None:
        """Seconds from `since` until a datagram sent after it got through every way probed, or
        None if that did not happen within `timeout` seconds."""
        if not wait_until(lambda: self._through_since(since), timeout):
            return None
        firsts = [
            min(arrived for sent, arrived in arrivals if sent > since)
            for arrivals in self._arrivals
        ]
        return max(firsts) - since


# -- watching a process ----------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Sampler:
    """CPU and resident memory of process `pid`, sampled every `interval` seconds in a thread."""

    pid: int
    interval: float = 0.5
    rss_mib: list[float] = field(default_factory=list)
    cpu_percent: list[float] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        assert self._thread is not None
        self._thread.join()

    def _run(self) -> None:
        last = (time.monotonic(), cpu_seconds(self.pid))
        while not self._stopped.wait(self.interval):
            now = (time.monotonic(), cpu_seconds(self.pid))
            self.cpu_percent.append(100 * (now[1] - last[1]) / (now[0] - last[0]))
            self.rss_mib.append(rss_mib(self.pid))
            last = now

    @property
    def peak_rss_mib(self) -> float:
        return max(self.rss_mib, default=float("nan"))

    @property
    def peak_cpu_percent(self) -> float:
        return max(self.cpu_percent, default=float("nan"))

    @property
    def mean_cpu_percent(self) -> float:
        samples = self.cpu_percent
        return sum(samples) / len(samples) if samples else float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system time of `pid` so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def module_command(module: str, *args: str) -> Sequence[str]:
    """The command that runs `module` of this checkout with `args`."""
    return (sys.executable, "-m", module, *args)
