"""The demo: two hosts in network namespaces, joined by a veth pair, talk through a WireGuard
tunnel between wgpy on one and wireguard-go (or, without it, wgpy again) on the other.

Everything it makes is its own: two fresh namespaces on test addresses (198.18.0.0/24 underneath,
192.0.2.0/24 and fd00:2::/64 in the tunnel), deleted with every process at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import threading
import time

from wgpy import client, uapi
from wgpy.cli import wg
from wgpy.core import keys
from wgpy.core.endpoint import Endpoint
from wgpy.lab import netns
from wgpy.uapi import DeviceUpdate, PeerUpdate

WGPY = (sys.executable, "-m", "wgpy.cli.wgpy")
PORT = 51820
INNER = (("192.0.2.1", "fd00:2::1"), ("192.0.2.2", "fd00:2::2"))
TRANSFER_BYTES = 20 * 1024 * 1024


def main() -> int:
    missing = netns.missing_requirements(["ping"])
    if missing:
        print(f"wgpy demo: {missing}; `wgpy demo --simulated` runs without them", file=sys.stderr)
        return 1
    peer_command: tuple[str, ...] = ("wireguard-go",)
    if shutil.which("wireguard-go") is None:
        peer_command = WGPY
    peer_name = "wireguard-go" if peer_command[0] == "wireguard-go" else "wgpy"
    with netns.veth_pair() as (alice, bob):
        step(f"namespaces {alice.name} and {bob.name}, joined by a veth pair")
        names = (netns.unique_ifname("wgpy"), netns.unique_ifname("peer"))
        netns.start_daemon(alice, WGPY, names[0])
        netns.start_daemon(bob, peer_command, names[1])
        step(f"wgpy serves {names[0]} in alice; {peer_name} serves {names[1]} in bob")
        configure(alice, bob, names)
        ping(alice, bob)
        transfer(alice, bob)
        show(names[0])
        step("tearing down: processes ended, namespaces deleted")
    print("\ndemo done")
    return 0


def step(text: str) -> None:
    print(f"\n== {text}")


def configure(alice: netns.Namespace, bob: netns.Namespace, names: tuple[str, str]) -> None:
    private = [keys.generate_private_key(os.urandom) for _ in names]
    hosts = ((alice, bob), (bob, alice))
    for index, ((ns, other), name) in enumerate(zip(hosts, names, strict=True)):
        other_index = 1 - index
        peer = PeerUpdate(
            public_key=keys.public_key(private[other_index]),
            endpoint=Endpoint(other.ipv4, PORT),
            replace_allowed_ips=True,
            allowed_ips=[uapi.parse_allowed_ip(f"{INNER[other_index][0]}/32"),
                         uapi.parse_allowed_ip(f"{INNER[other_index][1]}/128")],
        )  # fmt: skip
        client.set_device(name, DeviceUpdate(private[index], PORT, peers=[peer]))
        netns.ip_up(ns, name, f"{INNER[index][0]}/24", f"{INNER[index][1]}/64")
    step("configured over the configuration socket, as `wg setconf` does; addresses up")


def ping(alice: netns.Namespace, bob: netns.Namespace) -> None:
    for source, target in ((alice, INNER[1][0]), (bob, INNER[0][0]), (alice, INNER[1][1])):
        result = source.run("ping", "-c", "3", "-i", "0.2", "-w", "10", target, check=False)
        summary = [line for line in result.stdout.splitlines() if "packet loss" in line]
        step(f"ping {target} from {source.name}: {summary[0] if summary else result.stderr}")


def transfer(alice: netns.Namespace, bob: netns.Namespace) -> None:
    """Send TRANSFER_BYTES from alice to bob over TCP through the tunnel; compare sha256."""
    received: dict[str, str] = {}
    with bob.entered():
        listener = socket.create_server((INNER[1][0], 5001))
    receiver = threading.Thread(target=_receive, args=(listener, received))
    receiver.start()
    payload = os.urandom(TRANSFER_BYTES)
    start = time.monotonic()
    with alice.entered():
        client = socket.create_connection((INNER[1][0], 5001), timeout=30)
    with client:
        client.sendall(payload)
    receiver.join(60)
    listener.close()
    seconds = time.monotonic() - start
    sent = hashlib.sha256(payload).hexdigest()
    verdict = "matches" if received.get("sha256") == sent else "DOES NOT MATCH"
    step(f"sent {TRANSFER_BYTES >> 20} MiB alice -> bob in {seconds:.2f} s "
         f"({TRANSFER_BYTES * 8 / seconds / 1e6:.0f} Mbit/s); sha256 at bob {verdict}")  # fmt: skip


def _receive(listener: socket.socket, result: dict[str, str]) -> None:
    connection, _ = listener.accept()
    digest = hashlib.sha256()
    with connection:
        while chunk := connection.recv(1 << 16):
            digest.update(chunk)
    result["sha256"] = digest.hexdigest()


def show(name: str) -> None:
    step(f"wgpy show {name}")
    sys.stdout.flush()
    wg.run("show", [name])
