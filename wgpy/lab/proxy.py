"""Namespaces for `wgpy proxy`: services on the loopback's extra addresses (echo, HTTP, a DNS
server), the proxy run as nobody with every capability dropped, and a small SOCKS5 client. The
proxy's tests, fuzzing and benchmarks share them. `proxy_lab()` runs the proxy beside the services
on this machine's own stack (`--stack kernel`); `rootless_lab()` puts them behind a WireGuard
server and runs the proxy on wgpy.tunnel in a namespace with no TUN (`--stack userspace`).

Addresses: SERVICE_V4 and SERVICE_V6 on the loopback (no dummy module needed); dnsmasq answers
SERVICE_NAME with both, and the namespace's resolv.conf (ip netns exec's /etc/netns/NAME/) points
at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import h11

from wgpy import config as wgconfig
from wgpy.core.constants import DEFAULT_MTU
from wgpy.errors import WgpyError
from wgpy.lab.netns import (
    STARTUP_TIMEOUT,
    WG_PORT,
    Daemon,
    Namespace,
    configured_daemon,
    ip,
    ip_up,
    join,
    namespace,
    one_peer_config,
    peer_section,
    restartable_daemon,
    unique_ifname,
    wait_until,
    wg_genkey,
)
from wgpy.proxy.relay import close_quietly
from wgpy.proxy.socks5 import encode_address

SERVICE_V4, SERVICE_V6 = "198.18.17.1", "fd00:17::1"
SERVICE_NAME = "svc.proxy.test"
# The rootless lab's tunnel addresses, server's and client's, each family; and those of TUN
# mode, a second peer of the server's beside the proxy.
SERVER_TUNNEL, CLIENT_TUNNEL = "192.0.2.1", "192.0.2.2"
SERVER_TUNNEL_V6, CLIENT_TUNNEL_V6 = "fd00:2::1", "fd00:2::2"
TUN_MODE_TUNNEL, TUN_MODE_TUNNEL_V6 = "192.0.2.3", "fd00:2::3"
TCP_ECHO, UDP_ECHO, HTTP_PORT = 7, 7, 8080
REFUSING_PORT, SILENT_PORT = 9, 19  # nothing listens; SYNs to the second are dropped
NOBODY = 65534
PROXY_WG_PORT, TUN_MODE_WG_PORT = 51821, 51822  # the rootless lab's clients' WireGuard ports
UNPRIVILEGED = (
    "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
    "--inh-caps=-all", "--bounding-set=-all",
)  # fmt: skip
TUN = Path("/dev/net/tun")
# A wg-quick file: the host stack uses none of it but the parsing.
CONFIG = """\
[Interface]
PrivateKey = oK56DE9Ue9zK76rAc8pBl6opph+1v36lm7cXXsQKrQM=
Address = 192.0.2.2/32
DNS = {dns}

[Peer]
PublicKey = GtL7fZc/bLnqZldpVofMCD6hDjrK28SsdLxevJ+qtKU=
AllowedIPs = 0.0.0.0/0
"""


class ProxyLab:
    """The services' namespace `ns`, and where the proxy and its clients run: `client`, which
    is `ns` itself on the kernel stack, and on the user-space stack a namespace of its own that
    reaches `ns` only through the tunnel. `tunnel_address` is where `ns` reaches -R's ports;
    `server` the WireGuard server in `ns` on the user-space stack."""

    def __init__(self, ns: Namespace, files: Path) -> None:
        self.ns = ns
        self.files = files  # readable by nobody
        self.config = files / "proxy.conf"
        self.config.write_text(CONFIG.format(dns=SERVICE_V4))
        self.tun_config = files / "tun.conf"  # TUN mode's, in the rootless lab
        self.client, self.stack, self.tunnel_address = ns, "host", "127.0.0.1"
        self.server: Daemon | None = None
        self.logs: dict[int, IO[bytes]] = {}  # by pid: what each proxy wrote

    def start_proxy(
        self, *options: str, environment: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`wgpy proxy` with `options` on the lab's stack in `client`, as nobody, once its
        listeners stand (the ports of its --socks5, --http and -L options)."""
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the lab)
        command = [*UNPRIVILEGED, sys.executable, "-m", "wgpy.cli.wgpy", "proxy",
                   str(self.config), "--stack", self.stack, *options]  # fmt: skip
        env = {**os.environ, **(environment or {})}
        process = self.client.popen(*command, stdout=log, stderr=log, env=env, cwd=self.files)
        self.logs[process.pid] = log
        ports = listened_ports(options)
        if (
            not wait_until(
                lambda: process.poll() is not None or listening(self.client, ports), STARTUP_TIMEOUT
            )
            or process.poll() is not None
        ):
            self.client.stop(process)
            raise RuntimeError(f"wgpy proxy did not start: {self.output(process)}")
        return process

    def output(self, process: subprocess.Popen[bytes]) -> str:
        log = self.logs[process.pid]
        log.seek(0)
        return log.read().decode(errors="replace")

    def close(self) -> None:
        for log in self.logs.values():
            log.close()

    def serve_file(self, name: str, size: int) -> Path:
        """A file of `size` random bytes, served at http://SERVICE_NAME:HTTP_PORT/name."""
        path = self.files / "www" / name
        path.parent.mkdir(exist_ok=True)
        with path.open("wb") as file:
            for _ in range(size // (1 << 20)):
                file.write(os.urandom(1 << 20))
            file.write(os.urandom(size % (1 << 20)))
        return path


@contextmanager
def proxy_lab() -> Iterator[ProxyLab]:
    """The namespace with its services up (see the module's docstring)."""
    with namespace("wgpyproxy17") as ns, tempfile.TemporaryDirectory() as directory:
        files = Path(directory)
        files.chmod(0o755)
        (files / "www").mkdir()
        ip_up(ns, "lo", f"{SERVICE_V4}/32", f"{SERVICE_V6}/128")
        resolv = Path("/etc/netns") / ns.name
        resolv.mkdir(parents=True)
        try:
            (resolv / "resolv.conf").write_text(f"nameserver {SERVICE_V4}\n")
            _start_services(ns, files)
            lab = ProxyLab(ns, files)
            yield lab
            lab.close()
        finally:
            shutil.rmtree(resolv)


@contextmanager
def tun_open_to_all() -> Iterator[None]:
    """/dev/net/tun 0666 (udev's default on desktops) for the block, its mode restored after."""
    mode = TUN.stat().st_mode & 0o777
    TUN.chmod(0o666)
    try:
        yield
    finally:
        TUN.chmod(mode)


@contextmanager
def rootless_lab(stack: str = "userspace") -> Iterator[ProxyLab]:
    """The proxy lab behind a WireGuard server (wireguard-go in `ns`, tunnel addresses
    SERVER_TUNNEL and SERVER_TUNNEL_V6), and a client namespace joined to it by a veth pair,
    with an echo service of its own (for -R) and no TUN, where the proxy runs on `stack`; and
    `tun_mode`'s configuration, a second peer of the server's."""
    server, client, tun = wg_genkey(), wg_genkey(), wg_genkey()
    opened = tun_open_to_all() if stack == "kernel" else contextlib.nullcontext()
    with opened, proxy_lab() as lab, namespace("wgpyproxy17c") as client_ns:
        join(lab.ns, client_ns)
        _start_echo(client_ns)
        allowed = f"{CLIENT_TUNNEL}/32, {CLIENT_TUNNEL_V6}/128"
        # The server knows where the proxy listens: a restarted one makes the new handshake.
        endpoint = f"{client_ns.ipv4}:{PROXY_WG_PORT}"
        wg = "\n".join((
            one_peer_config(server.private, client.public, allowed, endpoint),
            peer_section(tun.public, f"{TUN_MODE_TUNNEL}/32, {TUN_MODE_TUNNEL_V6}/128"),
        ))  # fmt: skip
        addresses = f"{SERVER_TUNNEL}/24", f"{SERVER_TUNNEL_V6}/64"
        ifname = unique_ifname("wgp")
        with restartable_daemon(lab.ns, ("wireguard-go",), ifname, wg, *addresses) as daemon:
            lab.config.write_text(_client_config(
                client.private, PROXY_WG_PORT, (CLIENT_TUNNEL, CLIENT_TUNNEL_V6), server.public,
                lab.ns.ipv4,
            ))  # fmt: skip
            lab.tun_config.write_text(_client_config(
                tun.private, TUN_MODE_WG_PORT, (TUN_MODE_TUNNEL, TUN_MODE_TUNNEL_V6),
                server.public, lab.ns.ipv4,
            ))  # fmt: skip
            lab.client, lab.stack, lab.tunnel_address = client_ns, stack, CLIENT_TUNNEL
            lab.server = daemon
            yield lab


def _client_config(
    private: str, port: int, addresses: tuple[str, str], server: str, server_host: str
) -> str:
    """A wg-quick file for one of the rootless lab's clients (a test key, for nobody to read)."""
    v4, v6 = addresses
    return (
        f"[Interface]\nPrivateKey = {private}\nListenPort = {port}\n"
        f"Address = {v4}/32, {v6}/128\nDNS = {SERVICE_V4}\n\n[Peer]\nPublicKey = {server}\n"
        f"AllowedIPs = {SERVER_TUNNEL}/32, {SERVICE_V4}/32, {SERVICE_V6}/128\n"
        f"Endpoint = {server_host}:{WG_PORT}\n"
    )


@contextmanager
def tun_mode(lab: ProxyLab) -> Iterator[str]:
    """wgpy on a TUN in the proxy's namespace (TUN mode, as root), a peer of the rootless lab's
    server with a key and addresses of its own (`lab.tun_config`), so that it may run beside a
    proxy; with its MTU (1420 by default, as the stacks and wgpy run have it; a TUN is born
    with 1500) and routes to the services through it; yields the interface's name."""
    config = wgconfig.load(lab.tun_config)
    ifname = unique_ifname("wgt")
    addresses = [str(address) for address in config.interface.address]
    wgpy = (sys.executable, "-m", "wgpy.cli.wgpy")
    with configured_daemon(lab.client, wgpy, ifname, wgconfig.strip(config), *addresses):
        mtu = config.interface.mtu or DEFAULT_MTU
        ip("-n", lab.client.name, "link", "set", ifname, "mtu", str(mtu))
        for service in (f"{SERVICE_V4}/32", f"{SERVICE_V6}/128"):
            ip("-n", lab.client.name, "route", "add", service, "dev", ifname)
        yield ifname


def _start_echo(ns: Namespace, *udp_hosts: str) -> None:
    hosts = [option for host in ("127.0.0.1", "::1", *udp_hosts) for option in ("--host", host)]
    ns.popen(sys.executable, "-m", "wgpy.lab.echo", "--tcp", str(TCP_ECHO), "--udp",
             str(UDP_ECHO), *hosts)  # fmt: skip


def _start_services(ns: Namespace, files: Path) -> None:
    _start_echo(ns, SERVICE_V4, SERVICE_V6)
    ns.popen(sys.executable, "-m", "http.server", "--bind", "::", "--directory",
             str(files / "www"), str(HTTP_PORT), stdout=subprocess.DEVNULL,
             stderr=subprocess.DEVNULL)  # fmt: skip
    ns.popen("dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
             f"--listen-address={SERVICE_V4}", f"--pid-file={files / 'dnsmasq.pid'}",
             "--user=root", f"--address=/{SERVICE_NAME}/{SERVICE_V4}",
             f"--address=/{SERVICE_NAME}/{SERVICE_V6}")  # fmt: skip
    ns.run("nft", "add table inet silent ; add chain inet silent input "
           "{ type filter hook input priority 0 ; } ; "
           f"add rule inet silent input tcp dport {SILENT_PORT} drop")  # fmt: skip
    if not wait_until(lambda: listening(ns, (TCP_ECHO, HTTP_PORT, 53)), STARTUP_TIMEOUT):
        raise RuntimeError("the proxy lab's services did not start")


def listening(ns: Namespace, ports: Sequence[int]) -> bool:
    """Whether something listens on each of `ports` (TCP or UDP) in `ns`."""
    listed = ns.run("ss", "-Hlntu", check=False).stdout
    return all(f":{port} " in listed for port in ports)


def listened_ports(options: Sequence[str]) -> list[int]:
    """The ports `wgpy proxy` listens on this machine for these options."""
    ports = []
    for flag, value in itertools.pairwise(options):
        if flag in ("--socks5", "--http"):
            ports.append(int(value.rsplit(":", 1)[-1]))
        elif flag == "-L":
            ports.append(int(value.split(":")[-3]))
    return ports


# A SOCKS5 client, small enough to read ---------------------------------------------------------


class Socks5Failed(OSError, WgpyError):
    def __init__(self, reply: int) -> None:
        super().__init__(f"SOCKS5 reply {reply}")
        self.reply = reply


async def socks5_open(
    proxy: tuple[str, int],
    host: str,
    port: int,
    command: int = 1,
    login: tuple[str, str] | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tuple[str, int]]:
    """A negotiated SOCKS5 connection (CONNECT by default, 3 for UDP ASSOCIATE) and the bound
    address the reply gave; raises Socks5Failed with the reply's code."""
    reader, writer = await asyncio.open_connection(*proxy)
    try:
        writer.write(b"\x05\x01\x02" if login else b"\x05\x01\x00")
        method = await reader.readexactly(2)
        if login:
            if method != b"\x05\x02":
                raise Socks5Failed(method[1])
            user, password = (part.encode() for part in login)
            writer.write(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
            if (await reader.readexactly(2))[1] != 0:
                raise Socks5Failed(-1)
        writer.write(bytes([5, command, 0]) + encode_address(host, port))
        head = await reader.readexactly(4)
        if head[1] != 0:
            raise Socks5Failed(head[1])
        size = {1: 4, 4: 16}[head[3]]
        raw = await reader.readexactly(size + 2)
        bound = (socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6, raw[:size]),
                 struct.unpack("!H", raw[size:])[0])  # fmt: skip
    except BaseException:
        await close_quietly(writer)
        raise
    return reader, writer, bound


def response_status(data: bytes) -> int:
    """The status of the HTTP response at the start of `data`, read by h11 as a client would."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.receive_data(data)
    event = client.next_event()
    if not isinstance(event, h11.Response):
        raise ValueError(f"no HTTP response: {data[:100]!r}")
    return int(event.status_code)
