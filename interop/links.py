"""Tunnels between the wgpy under test and one or more peer interfaces, configured with wg(8).

Inner addresses: the wgpy side has 192.0.2.1/24 and fd00:2::1/64; remote interface i has
192.0.2.(2+i) and fd00:2::(2+i) as /32 and /128. Several remote interfaces can share one host (two
peers on one wgpy interface), so each answers from its own routing table, chosen by source address
(`ip rule from ADDR lookup TABLE`): a reply leaves through the interface it belongs to.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from interop._harness import WgKeys, unique_ifname, wg_genkey
from interop.errors import ScenarioFailure
from interop.hosts import Host, ProxyHost

LOCAL_INNER = ("192.0.2.1", "fd00:2::1")
LOCAL_PREFIXES = ("192.0.2.1/24", "fd00:2::1/64")
INNER_NETWORKS = ("192.0.2.0/24", "fd00:2::/64")
FIRST_TABLE = 100

_ports = itertools.count(51820)


def remote_inner(index: int) -> tuple[str, str]:
    return f"192.0.2.{2 + index}", f"fd00:2::{2 + index:x}"


def host_prefix(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass
class Interface:
    """One WireGuard interface of a scenario."""

    host: Host
    ifname: str
    keys: WgKeys
    port: int
    # Its tunnel addresses, the first two being its main IPv4 and IPv6.
    addresses: list[str]
    table: int = 0

    @property
    def inner(self) -> tuple[str, str]:
        return self.addresses[0], self.addresses[1]

    def endpoint(self, family: int) -> str:
        return endpoint(self.host.underlay[0 if family == 4 else 1], self.port)


@dataclass
class PeerEntry:
    """A [Peer] section: who `Interface` talks to."""

    public_key: str
    allowed_ips: Sequence[str]
    endpoint: str = ""
    preshared_key: str = ""
    keepalive: int = 0

    def render(self) -> str:
        lines = [f"PublicKey = {self.public_key}", f"AllowedIPs = {', '.join(self.allowed_ips)}"]
        if self.endpoint:
            lines.append(f"Endpoint = {self.endpoint}")
        if self.preshared_key:
            lines.append(f"PresharedKey = {self.preshared_key}")
        if self.keepalive:
            lines.append(f"PersistentKeepalive = {self.keepalive}")
        return "[Peer]\n" + "\n".join(lines) + "\n"


@dataclass
class LinkOptions:
    """What a scenario wants of its tunnel; the defaults are the plainest working one."""

    remotes: int = 1
    outer: int = 4  # the address family of the endpoints
    wgpy_knows_endpoint: bool = True
    peer_knows_endpoint: bool = True
    preshared_key: bool = False
    # More tunnel addresses of the first remote, each with the prefix wgpy allows for it, or ""
    # for an address wgpy must not take from the peer.
    extra_remote_addresses: Sequence[tuple[str, str]] = ()
    wgpy_keepalive: int = 0
    peer_keepalive: int = 0


@dataclass
class Link:
    """The wgpy interface and the remote interfaces it has as peers."""

    local: Interface
    remotes: list[Interface]
    options: LinkOptions
    preshared_keys: list[str] = field(default_factory=list)


def build_link(local_host: Host, remote_host: Host, options: LinkOptions) -> Link:
    """Create and configure every interface of the link; `teardown_link` undoes it."""
    local = Interface(local_host, unique_ifname("wgpy"), wg_genkey(), next(_ports), [*LOCAL_INNER])
    remotes = []
    for index in range(options.remotes):
        addresses = list(remote_inner(index))
        if index == 0:
            addresses += [address for address, _ in options.extra_remote_addresses]
        remotes.append(
            Interface(
                remote_host, unique_ifname("peer"), wg_genkey(), next(_ports), addresses,
                table=FIRST_TABLE + index,
            )
        )  # fmt: skip
    link = Link(local, remotes, options)
    link.preshared_keys = [wg_genpsk() if options.preshared_key else "" for _ in remotes]
    created: list[Interface] = []
    try:
        for interface in (local, *remotes):
            interface.host.add_interface(interface.ifname)
            created.append(interface)
        _configure_local(link)
        for index in range(len(remotes)):
            _configure_remote(link, index)
    except BaseException:
        teardown_link(link, created)
        raise
    return link


def teardown_link(link: Link, interfaces: Sequence[Interface] | None = None) -> None:
    """Remove the link's interfaces and routing rules; a host that is gone is skipped."""
    for interface in interfaces if interfaces is not None else (link.local, *link.remotes):
        with contextlib.suppress(ScenarioFailure, OSError, subprocess.SubprocessError):
            if interface.table:
                interface.host.shell.run(_unroute(interface))
            interface.host.remove_interface(interface.ifname)


def _configure_local(link: Link) -> None:
    options = link.options
    peers = []
    for index, remote in enumerate(link.remotes):
        allowed = [host_prefix(address) for address in remote.inner]
        if index == 0:
            allowed += [prefix for _, prefix in options.extra_remote_addresses if prefix]
        peers.append(
            PeerEntry(
                remote.keys.public,
                allowed,
                remote.endpoint(options.outer) if options.wgpy_knows_endpoint else "",
                link.preshared_keys[index],
                options.wgpy_keepalive,
            )
        )
    local = link.local
    if isinstance(local.host, ProxyHost):
        # A wg-quick file: the proxy's stack takes its addresses, and routes by AllowedIPs.
        address = f"Address = {', '.join(LOCAL_PREFIXES)}\n"
        local.host.start(local.ifname, _config(local, peers, address))
        return
    extra_routes = [p for _, p in options.extra_remote_addresses if p and _needs_route(p)]
    script = "set -e\n" + _setconf(local, peers) + _addresses(local, LOCAL_PREFIXES)
    script += "".join(f"ip route add {prefix} dev {local.ifname}\n" for prefix in extra_routes)
    local.host.shell.run(script).check(f"configuring {local.ifname} (wgpy)")


def _configure_remote(link: Link, index: int) -> None:
    options = link.options
    remote, local = link.remotes[index], link.local
    peer = PeerEntry(
        local.keys.public,
        [host_prefix(address) for address in local.inner],
        local.endpoint(options.outer) if options.peer_knows_endpoint else "",
        link.preshared_keys[index],
        options.peer_keepalive,
    )
    prefixes = [host_prefix(address) for address in remote.addresses]
    script = "set -e\n" + _setconf(remote, [peer]) + _addresses(remote, prefixes) + _route(remote)
    remote.host.shell.run(script).check(
        f"configuring {remote.ifname} ({remote.host.implementation})"
    )


def _setconf(interface: Interface, peers: Sequence[PeerEntry]) -> str:
    config = _config(interface, peers)
    return f"wg setconf {interface.ifname} /dev/stdin <<'@@END'\n{config}@@END\n"


def _config(interface: Interface, peers: Sequence[PeerEntry], more: str = "") -> str:
    """`interface`'s configuration file, with `more` lines in its [Interface] section."""
    head = f"[Interface]\nPrivateKey = {interface.keys.private}\nListenPort = {interface.port}\n"
    return head + more + "\n" + "\n".join(peer.render() for peer in peers)


def _addresses(interface: Interface, prefixes: Sequence[str]) -> str:
    lines = [f"ip address add {prefix} dev {interface.ifname}" for prefix in prefixes]
    return "\n".join([*lines, f"ip link set {interface.ifname} up", ""])


def _route(interface: Interface) -> str:
    """Replies from this interface's addresses leave through it, whatever else the host has."""
    lines = []
    for network in INNER_NETWORKS:
        lines.append(f"ip route add {network} dev {interface.ifname} table {interface.table}")
    for address in interface.addresses:
        family = "-6" if ":" in address else "-4"
        lines.append(f"ip {family} rule add from {address} lookup {interface.table}")
    return "\n".join([*lines, ""])


def _unroute(interface: Interface) -> str:
    lines = []
    for address in interface.addresses:
        family = "-6" if ":" in address else "-4"
        lines.append(f"ip {family} rule del from {address} lookup {interface.table}")
    return "\n".join(lines)


def _needs_route(prefix: str) -> bool:
    """Whether wgpy's side needs a route for `prefix`: its on-link networks do not cover it."""
    network = ipaddress.ip_network(prefix)
    return not any(
        network.version == inner.version and network.subnet_of(inner)  # type: ignore[arg-type]
        for inner in map(ipaddress.ip_network, INNER_NETWORKS)
    )


def wg_genpsk() -> str:
    result = subprocess.run(["wg", "genpsk"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ScenarioFailure(f"wg genpsk failed: {result.stderr}")
    return result.stdout.strip()
