"""The demo: the VPN people build WireGuard for, in three network namespaces.

    client eth0 198.18.0.2 -- 198.18.0.1 eth1  server  eth0 192.0.2.1 -- 192.0.2.100 eth0 internet

The client's default route goes to the server, as to any router, but the internet host has no
route back: it answers only what the server masquerades, which is what comes out of the tunnel.
`wgpy-quick up` of a config with `AllowedIPs = 0.0.0.0/0, ::/0` sends all of the client's traffic
into the tunnel (wg-quick's policy routing); the server, brought up by `wgpy-quick` too, forwards
it behind its own address (an nftables MASQUERADE). Every step prints what a reader of a "build
your own VPN" post wants to see. Everything made here is removed at the end, also on failure or
Ctrl-C: the namespaces (unique names), the processes in them, the configuration sockets.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from wgpy import client as uapi_client
from wgpy.cli import wg
from wgpy.core import keys
from wgpy.errors import WgpyError
from wgpy.lab import netns

WGPY_QUICK = (sys.executable, "-m", "wgpy.cli.quick")
TOOLS = {"ip": "iproute2", "ping": "iputils-ping", "nft": "nftables", "sysctl": "procps",
         "bash": "bash"}  # fmt: skip
GATEWAY = ("198.18.0.1", "fd00:1::1")  # the server's address on the client's network
CLIENT_LAN = ("198.18.0.2", "fd00:1::2")
SERVER_WAN = ("192.0.2.1", "fd00:3::1")  # the server's address on the internet
INTERNET_HOST = ("192.0.2.100", "fd00:3::100")
HTTP_PORT = 8080
EXPLAINED = """\
   `not fwmark 51820 lookup 51820`: everything without the tunnel's fwmark goes to table 51820,
   whose default route is the tunnel; `main suppress_prefixlength 0`: main's routes still count,
   but not its default route; the tunnel's own packets (fwmark 0xca6c) still reach the server's
   endpoint through eth0."""
DOWNLOAD_BYTES = 4 * 1024 * 1024
TOPOLOGY = f"""\
   client {CLIENT_LAN[0]} -- {GATEWAY[0]} server {SERVER_WAN[0]} -- {INTERNET_HOST[0]} internet host
   The server is the client's default gateway; the internet host has no route back to the client."""
# What can go wrong on the way, said in one line (a bug in the demo still shows its traceback).
FAILURES = (WgpyError, OSError, RuntimeError, http.client.HTTPException, subprocess.SubprocessError)

SERVER_CONF = """\
[Interface]
PrivateKey = {private_key}
ListenPort = 51820
Address = 198.19.8.1/24, fd00:8::1/64
PostUp = sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
PostUp = nft add table inet wgpy_demo
PostUp = nft add chain inet wgpy_demo nat '{{ type nat hook postrouting priority srcnat; }}'
PostUp = nft add rule inet wgpy_demo nat oifname eth0 ip saddr 198.19.8.0/24 masquerade
PostUp = nft add rule inet wgpy_demo nat oifname eth0 ip6 saddr fd00:8::/64 masquerade
PostDown = nft delete table inet wgpy_demo

[Peer]
PublicKey = {peer}
AllowedIPs = 198.19.8.2/32, fd00:8::2/128
"""

CLIENT_CONF = """\
[Interface]
PrivateKey = {private_key}
Address = 198.19.8.2/32, fd00:8::2/128

[Peer]
PublicKey = {peer}
Endpoint = 198.18.0.1:51820
AllowedIPs = 0.0.0.0/0, ::/0
"""


class Hosts(NamedTuple):
    client: netns.Namespace
    server: netns.Namespace
    internet: netns.Namespace


class End(NamedTuple):
    """One end of the tunnel: the client or the server, in its namespace, with its config."""

    role: str
    ns: netns.Namespace
    config: Path

    @property
    def ifname(self) -> str:
        return self.config.stem


def main() -> int:
    missing = missing_tools()
    if missing:
        print(f"wgpy demo: {missing}; `wgpy demo --simulated` runs without it", file=sys.stderr)
        return 1
    started = time.monotonic()
    try:
        run()
    except KeyboardInterrupt:
        print("\ndemo interrupted: everything it made is removed", file=sys.stderr)
        return 130
    except FAILURES as error:
        print(f"\ndemo failed: {error}\neverything it made is removed", file=sys.stderr)
        return 1
    print(f"\ndemo done in {time.monotonic() - started:.1f} s: namespaces, processes and "
          "sockets removed")  # fmt: skip
    return 0


def missing_tools() -> str | None:
    """What this machine lacks for the demo, in one line naming the Debian packages to install."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not absent:
        return None
    packages = " ".join(dict.fromkeys(TOOLS[tool] for tool in absent))
    return f"needs {', '.join(absent)}: apt install {packages}"


def run() -> None:
    with config_files() as (client_config, server_config):
        try:
            with three_hosts() as hosts:
                step(f"namespaces {', '.join(ns.name for ns in hosts)}")
                print(TOPOLOGY)
                client = End("client", hosts.client, client_config)
                server = End("server", hosts.server, server_config)
                vpn(client, server, hosts.internet)
                step("tearing down: namespaces deleted with every process in them")
        finally:
            remove_sockets(client_config.stem, server_config.stem)


def vpn(client: End, server: End, internet: netns.Namespace) -> None:
    quick(server, "up")
    before = show_routing(client.ns, "client's routing before `up`")
    unanswered(client.ns)
    quick(client, "up")
    show_routing(client.ns, "client's routing after `up`")
    print(EXPLAINED)
    ping(client.ns)
    download(client.ns, internet)
    for end in (client, server):
        show(end)
    quick(client, "down")
    after = show_routing(client.ns, "client's routing after `down`")
    if after != before:
        raise WgpyError("the client's routing after `down` is not as it was before `up`")
    step("the client's routing is as it was before `up`")
    quick(server, "down")


@contextmanager
def three_hosts() -> Iterator[Hosts]:
    with (
        netns.namespace("wgpy-client") as client,
        netns.namespace("wgpy-server") as server,
        netns.namespace("wgpy-internet") as internet,
    ):
        netns.link(client, "eth0", server, "eth1")
        netns.link(server, "eth0", internet, "eth0")
        netns.ip_up(client, "eth0", f"{CLIENT_LAN[0]}/24", f"{CLIENT_LAN[1]}/64")
        netns.ip_up(server, "eth1", f"{GATEWAY[0]}/24", f"{GATEWAY[1]}/64")
        netns.ip_up(server, "eth0", f"{SERVER_WAN[0]}/24", f"{SERVER_WAN[1]}/64")
        netns.ip_up(internet, "eth0", f"{INTERNET_HOST[0]}/24", f"{INTERNET_HOST[1]}/64")
        netns.ip("-n", client.name, "route", "add", "default", "via", GATEWAY[0])
        netns.ip("-n", client.name, "-6", "route", "add", "default", "via", GATEWAY[1])
        links = ((client, "eth0"), (server, "eth1"), (server, "eth0"), (internet, "eth0"))
        netns.wait_operational(links)
        yield Hosts(client, server, internet)


@contextmanager
def config_files() -> Iterator[tuple[Path, Path]]:
    """The client's and the server's config, with fresh keys (0600, named for unique
    interfaces)."""
    client_key, server_key = (keys.generate_private_key(os.urandom) for _ in range(2))
    with tempfile.TemporaryDirectory(prefix="wgpy-demo-") as directory:
        client = Path(directory, f"{netns.unique_ifname('wgc')}.conf")
        server = Path(directory, f"{netns.unique_ifname('wgs')}.conf")
        _write(client, CLIENT_CONF, client_key, server_key)
        _write(server, SERVER_CONF, server_key, client_key)
        yield client, server


def _write(path: Path, template: str, private: bytes, peer: bytes) -> None:
    text = template.format(private_key=keys.to_base64(private),
                           peer=keys.to_base64(keys.public_key(peer)))  # fmt: skip
    path.touch(0o600)
    path.write_text(text)


def remove_sockets(*ifnames: str) -> None:
    """The configuration sockets of daemons that could not remove their own (killed)."""
    for ifname in ifnames:
        uapi_client.socket_path(ifname).unlink(missing_ok=True)


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def indented(text: str) -> None:
    for line in text.rstrip().splitlines():
        print(f"   {line}")


def quick(end: End, command: str) -> None:
    """`wgpy-quick COMMAND CONFIG` at `end`, printing the config on `up` and what it does."""
    step(f"{end.role}: wgpy-quick {command} {end.config.name}")
    if command == "up":
        indented(end.config.read_text())
        print()
    result = end.ns.run(*WGPY_QUICK, command, str(end.config), check=False)
    indented(result.stderr)
    if result.returncode != 0:
        raise WgpyError(f"wgpy-quick {command} at the {end.role} exited {result.returncode}")


def show_routing(ns: netns.Namespace, title: str) -> str:
    """Print and return the policy rules and route lookups that decide where traffic goes."""
    step(title)
    commands = [
        ("ip", "rule"),
        ("ip", "-6", "rule"),
        ("ip", "route", "get", INTERNET_HOST[0]),
        ("ip", "route", "get", INTERNET_HOST[1]),
        # The server's endpoint as the tunnel's own packets see it: `up` gives them the fwmark.
        ("ip", "route", "get", GATEWAY[0], "mark", "51820"),
    ]
    lines = []
    for command in commands:
        result = ns.run(*command, check=False)
        lines.append(f"$ {' '.join(command)}")
        output = (result.stdout + result.stderr).splitlines()
        lines.extend(f"  {line.rstrip()}" for line in output if line.strip() != "cache")
    text = "\n".join(lines)
    indented(text)
    return text


def unanswered(ns: netns.Namespace) -> None:
    """Without the tunnel the internet host does not answer the client: no route back."""
    result = ns.run("ping", "-c", "1", "-W", "0.5", INTERNET_HOST[0], check=False)
    if result.returncode == 0:
        raise WgpyError(f"the internet host answers the client without the tunnel: {result.stdout}")
    step(f"client: ping {INTERNET_HOST[0]}: no answer without the tunnel")


def ping(ns: netns.Namespace) -> None:
    for host in INTERNET_HOST:
        result = ns.run("ping", "-c", "3", "-i", "0.2", "-w", "5", host, check=False)
        summary = [line for line in result.stdout.splitlines() if "packet loss" in line]
        step(f"client: ping {host}: {summary[0] if summary else result.stderr.strip()}")
        if result.returncode != 0:
            raise WgpyError(f"ping {host} from the client failed")


def download(client: netns.Namespace, internet: netns.Namespace) -> None:
    """The client fetches a file over HTTP from the internet host, who says who asked."""
    payload = os.urandom(DOWNLOAD_BYTES)
    with serving(internet, payload) as seen:
        started = time.monotonic()
        with client.entered():
            connection = http.client.HTTPConnection(INTERNET_HOST[0], HTTP_PORT, timeout=10)
            try:
                connection.request("GET", "/file")
                body = connection.getresponse().read()
            finally:
                connection.close()
        seconds = time.monotonic() - started
    intact = hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
    url = f"http://{INTERNET_HOST[0]}:{HTTP_PORT}/file"
    rate = len(body) * 8 / seconds / 1e6
    verdict = "matches" if intact else "DOES NOT MATCH"
    step(f"client: downloaded {len(body) >> 20} MiB from {url} in {seconds:.2f} s "
         f"({rate:.0f} Mbit/s), sha256 {verdict}")  # fmt: skip
    print(f"   the internet host saw the request come from {seen[0]}: the server's address, by "
          "NAT, not the client's")  # fmt: skip
    if not intact:
        raise WgpyError("the download arrived damaged")


@contextmanager
def serving(ns: netns.Namespace, payload: bytes) -> Iterator[list[str]]:
    """An HTTP server in `ns` handing out `payload`; yields the addresses it served, in order."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.client_address[0])
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ns.entered():
        server = http.server.HTTPServer((INTERNET_HOST[0], HTTP_PORT), Handler)
    with server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield seen
        finally:
            server.shutdown()


def show(end: End) -> None:
    step(f"{end.role}: wgpy show {end.ifname}")
    wg.run("show", [end.ifname])
