"""Traffic through a tunnel and what `wg` says about it.

Pings run on each side with that side's own `ping`. A TCP transfer is checked end to end by
SHA-256: the wgpy side is a Python socket opened inside namespace W, the peer side is busybox's
`nc -l -e`, which hands the connection to `sha256sum` (data to the peer) or `cat` (data from it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from interop._harness import Namespace
from interop.errors import ScenarioFailure
from interop.links import Interface
from interop.shell import Shell

TRANSFER_BYTES = 2 << 20
TRANSFER_TIMEOUT = 60.0
STALL_SECONDS = 3
_tcp_ports = itertools.count(5001)


def ping(shell: Shell, target: str, source: str = "", timeout: float = 15.0) -> float:
    """Ping until `target` answers, once, within `timeout`; return the seconds that took."""
    started = time.monotonic()
    while True:
        result = shell.run(f"ping -c 1 -W 2 {_from(source)}{target}", timeout=10)
        if result.status == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            where = f" from {source}" if source else ""
            raise ScenarioFailure(f"{target} does not answer pings{where} within {timeout:.0f} s")


def ping_fails(shell: Shell, target: str, source: str = "") -> bool:
    """Whether two pings to `target` both go unanswered."""
    return shell.run(f"ping -c 2 -W 2 {_from(source)}{target}", timeout=10).status != 0


def _from(source: str) -> str:
    # -I with an address binds the source, which picks the interface by the routing rules.
    return f"-I {source} " if source else ""


def ping_both_ways(local: Interface, remote: Interface, timeout: float = 15.0) -> None:
    """`remote` answers wgpy, and wgpy answers `remote`, over IPv4 and IPv6 inside."""
    for address in remote.inner:
        ping(local.host.shell, address, timeout=timeout)
    for source, target in zip(remote.inner, local.inner, strict=True):
        ping(remote.host.shell, target, source=source, timeout=timeout)


def transfer_both_ways(w: Namespace, remote: Interface, size: int = TRANSFER_BYTES) -> None:
    """`size` random bytes to the peer over IPv4 and from it over IPv6, each checked by hash."""
    send_to_peer(w, remote, remote.inner[0], size)
    receive_from_peer(w, remote, remote.inner[1], size)


def send_to_peer(w: Namespace, remote: Interface, address: str, size: int) -> None:
    port = next(_tcp_ports)
    data = os.urandom(size)
    job = remote.host.shell.start(f"busybox nc -l -p {port} -e sha256sum")
    try:
        with _connect(w, address, port) as conn:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
            answer = _read_all(conn).decode(errors="replace")
    finally:
        job.stop()
    expected = hashlib.sha256(data).hexdigest()
    if answer.split()[:1] != [expected]:
        raise ScenarioFailure(
            f"{size} bytes sent to [{address}]:{port}: the peer's SHA-256 is {answer.strip()!r},"
            f" ours {expected}"
        )


def receive_from_peer(w: Namespace, remote: Interface, address: str, size: int) -> None:
    port = next(_tcp_ports)
    path = f"/tmp/wgpy-interop-{port}"
    prepared = remote.host.shell.run(
        f"head -c {size} /dev/urandom > {path} && sha256sum {path}"
    ).check("making the data to send")
    expected = prepared.split()[0]
    job = remote.host.shell.start(f"busybox nc -l -p {port} -e cat {path}; rm -f {path}")
    try:
        with _connect(w, address, port) as conn:
            data = _read_all(conn)
    finally:
        job.stop()
        remote.host.shell.run(f"rm -f {path}")
    if len(data) != size or hashlib.sha256(data).hexdigest() != expected:
        raise ScenarioFailure(
            f"{size} bytes from [{address}]:{port}: got {len(data)} bytes with SHA-256"
            f" {hashlib.sha256(data).hexdigest()}, the peer sent {expected}"
        )


def _connect(w: Namespace, address: str, port: int, timeout: float = 20.0) -> socket.socket:
    """A TCP connection from inside W, retried while the peer's listener is not up yet."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    deadline = time.monotonic() + timeout
    while True:
        with w.entered():
            conn = socket.socket(family, socket.SOCK_STREAM)
        conn.settimeout(TRANSFER_TIMEOUT)
        try:
            conn.connect((address, port))
            return conn
        except OSError as error:
            conn.close()
            if time.monotonic() > deadline:
                raise ScenarioFailure(f"cannot connect to [{address}]:{port}: {error}") from None
            time.sleep(0.3)


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := conn.recv(1 << 16):
            chunks.append(chunk)
    except TimeoutError:
        raise ScenarioFailure(f"the transfer stalled for {TRANSFER_TIMEOUT} s") from None
    return b"".join(chunks)


# Through `wgpy proxy`: a file served by the peer's Linux, fetched by curl in W.


@dataclass(frozen=True)
class Served:
    """A file of random bytes on the peer's HTTP server."""

    port: int
    path: str  # the URL's path
    size: int
    sha256: str


@contextmanager
def http_service(remote: Interface, size: int) -> Iterator[Served]:
    """busybox httpd on `remote`'s host, on every address (its tunnel addresses among them),
    serving `size` random bytes: Linux's TCP answers, in the guest or in namespace P."""
    port = next(_tcp_ports)
    home = f"/tmp/wgpy-interop-www-{port}"
    shell = remote.host.shell
    prepared = shell.run(
        f"mkdir -p {home} && head -c {size} /dev/urandom > {home}/data && sha256sum {home}/data"
    ).check("making the file to serve")
    job = shell.start(f"busybox httpd -f -p {port} -h {home}")
    try:
        _wait_listening(shell, port, "busybox httpd on the peer")
        yield Served(port, "/data", size, prepared.split()[0])
    finally:
        job.stop()
        shell.run(f"rm -rf {home}")


def fetch(w_shell: Shell, proxy: str, url: str, served: Served, download: Path) -> float:
    """curl in W fetches `url` with the proxy options `proxy`, into `download`; fails unless
    it has `served`'s bytes. Returns the seconds the fetch took."""
    result = w_shell.run(
        f"curl --silent --show-error --fail --max-time {TRANSFER_TIMEOUT:.0f} {proxy}"
        f" --output {download} --write-out '%{{time_total}}' {url}",
        timeout=TRANSFER_TIMEOUT + 10,
    ).check(f"curl {proxy} {url}")
    try:
        data = download.read_bytes()
    finally:
        download.unlink(missing_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != served.size or digest != served.sha256:
        raise ScenarioFailure(
            f"curl {proxy} {url}: got {len(data)} bytes with SHA-256 {digest},"
            f" the peer served {served.size} with {served.sha256}"
        )
    return float(result.strip())


def pull_through_forward(
    w_shell: Shell, remote: Interface, forward: str, port: int, size: int, data: Path
) -> float:
    """The peer reads `size` random bytes from `forward` (ADDR PORT, a forward of the proxy's
    to `port` in W, where busybox nc serves them from the file `data`) and hashes them; fails
    unless its SHA-256 is ours. Returns the seconds that took, the peer's shell included."""
    content = os.urandom(size)
    data.write_bytes(content)
    job = w_shell.start(f"busybox nc -l -p {port} -e cat {data}")
    try:
        _wait_listening(w_shell, port, "busybox nc in W")
        started = time.monotonic()
        answer = remote.host.shell.run(
            f"busybox nc {forward} </dev/null | sha256sum", timeout=TRANSFER_TIMEOUT
        ).check(f"busybox nc {forward} on the peer")
        seconds = time.monotonic() - started
    finally:
        job.stop()
        data.unlink(missing_ok=True)
    expected = hashlib.sha256(content).hexdigest()
    if answer.split()[:1] != [expected]:
        raise ScenarioFailure(
            f"{size} bytes through {forward}: the peer's SHA-256 is {answer.strip()!r},"
            f" ours {expected}"
        )
    return seconds


# What `wg show IFNAME dump` says.


@dataclass(frozen=True)
class PeerState:
    public_key: str
    preshared_key: str
    endpoint: str
    allowed_ips: tuple[str, ...]
    latest_handshake: int
    rx: int
    tx: int
    keepalive: str


@dataclass(frozen=True)
class Dump:
    private_key: str
    public_key: str
    listen_port: int
    fwmark: str
    peers: dict[str, PeerState]


def wg_dump(interface: Interface) -> Dump:
    """`wg show IFNAME dump` on the interface's host, parsed (see wg(8), "dump")."""
    output = interface.host.shell.run(f"wg show {interface.ifname} dump").check(
        f"wg show {interface.ifname} dump ({interface.host.implementation})"
    )
    lines = [line.split("\t") for line in output.splitlines() if line]
    private, public, port, fwmark = lines[0]
    peers = {}
    for fields in lines[1:]:
        key, psk, endpoint, allowed, handshake, rx, tx, keepalive = fields
        peers[key] = PeerState(
            key, psk, endpoint, tuple(allowed.split(",")) if allowed != "(none)" else (),
            int(handshake), int(rx), int(tx), keepalive,
        )  # fmt: skip
    return Dump(private, public, int(port), fwmark, peers)


def peer_state(viewer: Interface, peer: Interface) -> PeerState:
    state = wg_dump(viewer).peers.get(peer.keys.public)
    if state is None:
        raise ScenarioFailure(f"{viewer.ifname} does not list {peer.ifname} as a peer")
    return state


# iperf3: a transfer kept busy for a while, reported second by second.


@dataclass(frozen=True)
class Interval:
    start: float
    sent: int  # bytes wgpy sent in the interval
    received: int  # bytes wgpy received (the reverse stream of --bidir)


def iperf3(w_shell: Shell, remote: Interface, seconds: int) -> list[Interval]:
    """A --bidir iperf3 run of `seconds` from wgpy's side to `remote`; its intervals."""
    port = next(_tcp_ports)
    server = remote.host.shell.start(f"iperf3 -s -1 -p {port}")
    try:
        _wait_listening(remote.host.shell, port)
        client = w_shell.run(
            f"iperf3 -c {remote.inner[0]} -p {port} -t {seconds} -i 1 --bidir -J",
            timeout=seconds + 60,
        )
    finally:
        server.stop()
    try:
        report = json.loads(client.output)
    except json.JSONDecodeError:
        raise ScenarioFailure(f"iperf3 failed: {client.output.strip()[-800:]}") from None
    intervals = [
        Interval(i["sum"]["start"], i["sum"]["bytes"], i["sum_bidir_reverse"]["bytes"])
        for i in report.get("intervals", [])
    ]
    if "error" in report:
        flowing = [i.start for i in intervals if i.sent and i.received]
        last = f"{flowing[-1]:.0f} s" if flowing else "never"
        raise ScenarioFailure(
            f"iperf3: {report['error']}; data last flowed both ways at {last} of {seconds} s"
        )
    return intervals


def stalls(intervals: list[Interval], seconds: int = STALL_SECONDS) -> list[float]:
    """When (seconds from the start) a direction moved nothing for `seconds` seconds in a row.

    A lost segment can cost TCP a second under emulation; an interrupted session costs at least
    REKEY_TIMEOUT (5 s), the time before a lost handshake is retried.
    """
    found = []
    run = 0
    for interval in intervals:
        idle = interval.sent == 0 or interval.received == 0
        run = run + 1 if idle else 0
        if run == seconds:
            found.append(interval.start - (seconds - 1))
    return found


def quiet_seconds(intervals: list[Interval]) -> int:
    """How many one-second intervals moved nothing in some direction."""
    return sum(1 for i in intervals if i.sent == 0 or i.received == 0)


def _wait_listening(
    shell: Shell, port: int, what: str = "iperf3 on the peer", timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while shell.run(f"netstat -ltn | grep -q ':{port} '").status != 0:
        if time.monotonic() > deadline:
            raise ScenarioFailure(f"{what} did not listen on port {port}")
        time.sleep(0.2)


class MemorySampler:
    """A process's resident set (VmRSS), sampled every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 5.0) -> None:
        self._status = Path(f"/proc/{pid}/status")
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.samples: list[tuple[float, int]] = []  # (seconds since start, KiB)

    def __enter__(self) -> MemorySampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            try:
                status = self._status.read_text()
            except OSError:
                return  # the process is gone
            kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
            self.samples.append((time.monotonic() - self._started, kib))
            if self._stop.wait(self._interval):
                return

    def after(self, seconds: float) -> int:
        """The first sample taken `seconds` or more after the start (the last one if none)."""
        return next((kib for at, kib in self.samples if at >= seconds), self.samples[-1][1])
