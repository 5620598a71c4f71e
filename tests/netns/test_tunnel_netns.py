"""wgpy.tunnel against real WireGuard servers (wireguard-go, and wgpy on a TUN) in namespaces,
the services behind them on Linux's own stack. The client is a program (tests/tunnel_client.py)
run as root and as uid 65534 with every capability dropped, which cannot open a TUN: the rootless
path as its users run it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import WGPY, WIREGUARD_GO, Implementation

from wgpy.lab.netns import (
    WG_PORT,
    Namespace,
    configured_daemon,
    one_peer_config,
    unique_ifname,
    wg_genkey,
)

pytestmark = pytest.mark.netns("wireguard-go", "wg", "setpriv", "nft")

CLIENT = Path(__file__).resolve().parents[1] / "tunnel_client.py"
SERVER4, SERVER6 = "192.0.2.1", "fd00:2::1"
CLIENT4, CLIENT6 = "192.0.2.2", "fd00:2::2"
ECHO_PORT = 7
FETCH_PORT = 5201
FETCH_SIZE = 8 << 20
UNPRIVILEGED = (
    "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
    "--inh-caps=-all", "--bounding-set=-all",
)  # fmt: skip
AS = {"root": (), "uid-65534": UNPRIVILEGED}
SERVERS = {"wireguard-go": WIREGUARD_GO, "wgpy-tun": WGPY}


def fetch_data(size: int) -> bytes:
    return random.Random(size).randbytes(size)


@contextlib.contextmanager
def serving(ns: Namespace) -> Iterator[None]:
    """In `ns`, on Linux's stack: a UDP echo on ECHO_PORT, and on FETCH_PORT a TCP service that
    sends FETCH_SIZE bytes to each connection and closes it, over both families."""
    with ns.entered():
        udp = [socket.socket(f, socket.SOCK_DGRAM) for f in (socket.AF_INET, socket.AF_INET6)]
        for sock, host in zip(udp, ("", "::"), strict=True):
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, ECHO_PORT))
        tcp = socket.create_server(("::", FETCH_PORT), family=socket.AF_INET6, dualstack_ipv6=True)
    stop = threading.Event()
    threads = [threading.Thread(target=_echo, args=(sock, stop), daemon=True) for sock in udp]
    threads.append(threading.Thread(target=_send_all, args=(tcp, stop), daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for sock in [*udp, tcp]:
            sock.close()


def _echo(sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            data, address = sock.recvfrom(65535)
            sock.sendto(data, address)


def _send_all(listener: socket.socket, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    data = fetch_data(FETCH_SIZE)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(30)
                connection.sendall(data)


@contextlib.contextmanager
def wireguard_server(ns: Namespace, implementation: Implementation) -> Iterator[str]:
    """`implementation` on a TUN in `ns` with SERVER4 and SERVER6, whose one peer is the client;
    yields the client's wg-quick configuration."""
    server, client = wg_genkey(), wg_genkey()
    config = one_peer_config(server.private, client.public, f"{CLIENT4}/32, {CLIENT6}/128")
    with configured_daemon(
        ns, implementation.command, unique_ifname("wgt"), config, f"{SERVER4}/24", f"{SERVER6}/64"
    ):
        yield (
            f"[Interface]\nPrivateKey = {client.private}\nAddress = {CLIENT4}/32, {CLIENT6}/128\n"
            f"[Peer]\nPublicKey = {server.public}\nAllowedIPs = 192.0.2.0/24, fd00:2::/64\n"
            f"Endpoint = {ns.ipv4}:{WG_PORT}\n"
        )


def run_client(ns: Namespace, user: str, config: str, *arguments: str) -> dict[str, Any]:
    completed = ns.run(*AS[user], sys.executable, str(CLIENT), *arguments, input=config)
    found: dict[str, Any] = json.loads(completed.stdout)
    return found


@pytest.mark.parametrize("user", AS)
@pytest.mark.parametrize("server", SERVERS)
def test_a_rootless_client_pings_echoes_udp_and_fetches_megabytes_through_a_real_server(
    netns_pair: tuple[Namespace, Namespace], server: str, user: str
) -> None:
    server_ns, client_ns = netns_pair
    with wireguard_server(server_ns, SERVERS[server]) as config, serving(server_ns):
        found = run_client(
            client_ns, user, config,
            "--ping", SERVER4, "--ping", SERVER6,
            "--udp-echo", f"{SERVER4}:{ECHO_PORT}", "--udp-echo", f"[{SERVER6}]:{ECHO_PORT}",
            "--fetch", f"{SERVER4}:{FETCH_PORT}", "--fetch", f"[{SERVER6}]:{FETCH_PORT}",
        )  # fmt: skip

    assert all(0 < rtt < 5 for rtt in found["ping"].values()) and len(found["ping"]) == 2
    assert found["udp_echo"] == {f"{SERVER4}:{ECHO_PORT}": True, f"[{SERVER6}]:{ECHO_PORT}": True}
    expected = {"bytes": FETCH_SIZE, "sha256": hashlib.sha256(fetch_data(FETCH_SIZE)).hexdigest()}
    for fetched in found["fetch"].values():
        assert {key: fetched[key] for key in expected} == expected
    assert len(found["fetch"]) == 2
    if user != "root":
        assert "not permitted" in found["tun"]


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


def test_a_rootless_fetch_arrives_intact_through_five_percent_loss_each_way(
    netns_pair: tuple[Namespace, Namespace],
) -> None:
    server_ns, client_ns = netns_pair
    with wireguard_server(server_ns, WIREGUARD_GO) as config, serving(server_ns):
        drop_share(client_ns, 5)
        found = run_client(
            client_ns, "uid-65534", config,
            "--fetch", f"{SERVER4}:{FETCH_PORT}", "--fetch", f"[{SERVER6}]:{FETCH_PORT}",
        )  # fmt: skip
        lost = dropped(client_ns)

    expected = {"bytes": FETCH_SIZE, "sha256": hashlib.sha256(fetch_data(FETCH_SIZE)).hexdigest()}
    assert [{key: f[key] for key in expected} for f in found["fetch"].values()] == [expected] * 2
    # In, ~5% of ~12,000 datagrams; out, of the ACKs, whose UDP_SEGMENT batches go whole.
    assert len(lost) == 2 and lost[0] > 0 and lost[1] > 100
