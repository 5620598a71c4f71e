"""wgpy.tunnel against real WireGuard servers (wireguard-go, and wgpy on a TUN) in namespaces,
the services behind them on Linux's own stack. The client is a program (tests/tunnel_client.py)
run as root and as uid 65534 with every capability dropped, which cannot open a TUN: the rootless
path as its users run it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from peers import WGPY, WIREGUARD_GO, Implementation

from wgpy.lab.netns import (
    WG_PORT,
    Namespace,
    drop_share,
    dropped,
    one_peer_config,
    restartable_daemon,
    unique_ifname,
    wg_genkey,
)

pytestmark = pytest.mark.netns("wireguard-go", "wg", "setpriv", "nft")

CLIENT = Path(__file__).resolve().parents[1] / "tunnel_client.py"
SERVER4, SERVER6 = "192.0.2.1", "fd00:2::1"
CLIENT4, CLIENT6 = "192.0.2.2", "fd00:2::2"
ECHO_PORT = 7
CLIENT_PORT = 51821
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
def serving(ns: Namespace, halfway: Callable[[], object] = lambda: None) -> Iterator[None]:
    """In `ns`, on Linux's stack: a UDP echo on ECHO_PORT, and on FETCH_PORT a TCP service that
    sends FETCH_SIZE bytes to each connection and closes it, over both families, calling
    `halfway` when it has sent half."""
    with ns.entered():
        udp = [socket.socket(f, socket.SOCK_DGRAM) for f in (socket.AF_INET, socket.AF_INET6)]
        for sock, host in zip(udp, ("", "::"), strict=True):
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, ECHO_PORT))
        tcp = socket.create_server(("::", FETCH_PORT), family=socket.AF_INET6, dualstack_ipv6=True)
    stop = threading.Event()
    threads = [threading.Thread(target=_echo, args=(sock, stop), daemon=True) for sock in udp]
    threads.append(threading.Thread(target=_send_all, args=(tcp, stop, halfway), daemon=True))
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


def _send_all(
    listener: socket.socket, stop: threading.Event, halfway: Callable[[], object]
) -> None:
    listener.settimeout(0.2)
    data = fetch_data(FETCH_SIZE)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(60)
                connection.sendall(data[: FETCH_SIZE // 2])
                halfway()
                connection.sendall(data[FETCH_SIZE // 2 :])


class WireGuardServer(NamedTuple):
    ifname: str
    client_config: str  # the client's wg-quick file
    restart: Callable[[], None]  # the server's process, for a new one (its sessions forgotten)


@contextlib.contextmanager
def wireguard_server(
    ns: Namespace, implementation: Implementation, client_endpoint: str = ""
) -> Iterator[WireGuardServer]:
    """`implementation` on a TUN in `ns` with SERVER4 and SERVER6, whose one peer is the client
    (at `client_endpoint`, which then listens on CLIENT_PORT, if given)."""
    server, client = wg_genkey(), wg_genkey()
    config = one_peer_config(
        server.private, client.public, f"{CLIENT4}/32, {CLIENT6}/128", client_endpoint
    )
    ifname, addresses = unique_ifname("wgt"), (f"{SERVER4}/24", f"{SERVER6}/64")
    with restartable_daemon(ns, implementation.command, ifname, config, *addresses) as daemon:
        yield WireGuardServer(
            ifname,
            f"[Interface]\nPrivateKey = {client.private}\nAddress = {CLIENT4}/32, {CLIENT6}/128\n"
            + (f"ListenPort = {CLIENT_PORT}\n" if client_endpoint else "")
            + f"[Peer]\nPublicKey = {server.public}\nAllowedIPs = 192.0.2.0/24, fd00:2::/64\n"
            f"Endpoint = {ns.ipv4}:{WG_PORT}\n",
            daemon.restart,
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
    with wireguard_server(server_ns, SERVERS[server]) as wg, serving(server_ns):
        found = run_client(
            client_ns, user, wg.client_config,
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


def test_a_rootless_fetch_arrives_intact_through_five_percent_loss_each_way(
    netns_pair: tuple[Namespace, Namespace],
) -> None:
    server_ns, client_ns = netns_pair
    with wireguard_server(server_ns, WIREGUARD_GO) as wg, serving(server_ns):
        drop_share(client_ns, 5)
        found = run_client(
            client_ns, "uid-65534", wg.client_config,
            "--fetch", f"{SERVER4}:{FETCH_PORT}", "--fetch", f"[{SERVER6}]:{FETCH_PORT}",
        )  # fmt: skip
        lost = dropped(client_ns)

    expected = {"bytes": FETCH_SIZE, "sha256": hashlib.sha256(fetch_data(FETCH_SIZE)).hexdigest()}
    assert [{key: f[key] for key in expected} for f in found["fetch"].values()] == [expected] * 2
    # In, ~5% of ~12,000 datagrams; out, of the ACKs, whose UDP_SEGMENT batches go whole.
    assert len(lost) == 2 and lost[0] > 0 and lost[1] > 100


def test_a_rootless_fetch_survives_a_server_restart_mid_transfer(
    netns_pair: tuple[Namespace, Namespace],
) -> None:
    """wireguard-go restarts halfway: its sessions are gone, it makes a new handshake to the
    client's endpoint, and Linux's retransmissions carry the connection on."""
    server_ns, client_ns = netns_pair
    restarts = []
    with wireguard_server(server_ns, WIREGUARD_GO, f"{client_ns.ipv4}:{CLIENT_PORT}") as wg:

        def restart() -> None:
            wg.restart()
            restarts.append(wg_show(server_ns, wg.ifname))

        with serving(server_ns, halfway=restart):
            found = run_client(
                client_ns, "uid-65534", wg.client_config, "--fetch", f"{SERVER4}:{FETCH_PORT}"
            )
        after = wg_show(server_ns, wg.ifname)
    expected = {"bytes": FETCH_SIZE, "sha256": hashlib.sha256(fetch_data(FETCH_SIZE)).hexdigest()}
    (fetched,) = found["fetch"].values()
    assert {key: fetched[key] for key in expected} == expected
    # The new process had no session when it started, and made one with the client.
    assert len(restarts) == 1 and "latest handshake" not in restarts[0]
    assert "latest handshake" in after


def wg_show(ns: Namespace, ifname: str) -> str:
    return ns.run("wg", "show", ifname).stdout
