"""The plans of `wgpy-quick up` and `down`: steps from a config and a look at the host. Pure.

The order and the choices are wg-quick's (wireguard-tools src/wg-quick/linux.bash, cmd_up,
cmd_down, add_route, add_default, del_if, set_mtu_up, save_config); `steps` has the steps.

What the host looks like is read once, before anything changes (`observe`). Two facts only exist
once earlier steps have run, so the executor reads them when it gets there, as wg-quick does: the
addresses a firewall step guards (the kernel gives a TUN an IPv6 link-local address when it comes
up) and the iptables rules a removal finds.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from wgpy.config import Config, IPInterface, from_device_state
from wgpy.errors import ConfigError
from wgpy.quick import QuickError
from wgpy.quick.steps import (
    MAIN_TABLE,
    AddAddress,
    AddFirewall,
    AddRoute,
    AddRule,
    BestEffort,
    ConfigureDevice,
    CreateInterface,
    DeleteInterface,
    DeleteIptablesRules,
    DeleteNftTable,
    DeleteRule,
    Family,
    Firewall,
    Rule,
    RunHook,
    SaveConfig,
    SetDns,
    SetFwmark,
    SetMtuUp,
    SetSysctl,
    Step,
    UnsetDns,
)
from wgpy.uapi import AllowedIP, DeviceState, DeviceUpdate, format_ip, format_prefix

# Routing tables every iproute2 knows by name (lib/rt_names.c rtnl_rttable_init).
BUILTIN_TABLES: Mapping[str, int] = {"unspec": 0, "default": 253, "main": 254, "local": 255}
# add_default: the first table (and fwmark) tried for a full tunnel.
FIRST_FULL_TUNNEL_TABLE = 51820
# set_mtu_up: the largest overhead WireGuard adds to a packet: an IPv6 header (40), UDP (8) and
# the transport-data header and tag (16 + 16).
WIREGUARD_OVERHEAD = 80
FALLBACK_LINK_MTU = 1500
SRC_VALID_MARK = "net.ipv4.conf.all.src_valid_mark"


@dataclass(frozen=True)
class HostState:
    """What `up` reads off the host before it changes anything (see `observe.observe_host`)."""

    endpoint_mtus: tuple[int, ...] = ()  # the MTU of the route to each reachable endpoint
    default_route_mtu: int | None = None  # the MTU of the IPv4 default route in main, if any
    tables_in_use: frozenset[int] = frozenset()  # tables holding an IPv4 or IPv6 route
    table_names: Mapping[str, int] = field(default_factory=lambda: dict(BUILTIN_TABLES))
    src_valid_mark: bool = False
    firewall: Firewall = "nftables"
    resolvconf: str | None = "resolvconf"  # the command, None where it is missing
    resolvconf_prefix: str = ""  # linux.bash resolvconf_iface_prefix


@dataclass(frozen=True)
class RunningState:
    """What `down` reads off a running interface (see `observe.observe_running`)."""

    fwmark: int = 0
    allowed_ips: tuple[AllowedIP, ...] = ()
    rules: tuple[Rule, ...] = ()
    nft_tables: tuple[tuple[str, str], ...] = ()  # (family, name), as `nft list tables` prints
    iptables_rules: frozenset[Family] = frozenset()  # families with rules for this interface
    resolvconf: str | None = "resolvconf"
    resolvconf_prefix: str = ""


# up -----------------------------------------------------------------------------------------------


def plan_up(
    ifname: str, config: Config, update: DeviceUpdate, host: HostState, *, file: str = "<config>"
) -> list[Step]:
    """cmd_up: the interface, PreUp, the device, addresses, MTU and up, DNS, routes, PostUp.

    `update` is the device part of `config` with its endpoints resolved. Raises ConfigError for
    a Table that names no routing table, and QuickError for DNS without resolvconf.
    """
    interface = config.interface
    table = routing_table(interface.table, host.table_names, file=file)
    steps: list[Step] = [CreateInterface(ifname), *hooks(interface.pre_up, ifname)]
    steps.append(ConfigureDevice(ifname, update))
    steps += [AddAddress(ifname, address) for address in interface.address]
    steps.append(SetMtuUp(ifname, interface.mtu or auto_mtu(host)))
    steps += dns_steps(ifname, config, host.resolvconf, host.resolvconf_prefix)
    steps += route_steps(ifname, config, table, host)
    steps += hooks(interface.post_up, ifname)
    return steps


def hooks(commands: Iterable[str], ifname: str) -> list[Step]:
    """execute_hooks: each command with every %i replaced by the interface name."""
    return [RunHook(command.replace("%i", ifname)) for command in commands]


def auto_mtu(host: HostState) -> int:
    """set_mtu_up without MTU: the smallest MTU on the way to an endpoint, else the default
    route's, else 1500; less WireGuard's overhead."""
    link_mtu = min(host.endpoint_mtus, default=host.default_route_mtu) or FALLBACK_LINK_MTU
    return link_mtu - WIREGUARD_OVERHEAD


def dns_steps(ifname: str, config: Config, resolvconf: str | None, prefix: str) -> list[Step]:
    interface = config.interface
    if not interface.dns:  # set_dns does nothing without a server, even with search domains
        return []
    if resolvconf is None:
        servers = ", ".join(map(format_ip, interface.dns))
        raise QuickError(
            f"DNS = {servers} needs resolvconf(8), which is not installed: install the "
            "resolvconf or openresolv package, or remove DNS from the config"
        )
    nameservers = tuple(format_ip(server) for server in interface.dns)
    return [SetDns(resolvconf, prefix + ifname, nameservers, tuple(interface.dns_search))]


def route_steps(
    ifname: str, config: Config, table: int | Literal["auto", "off"], host: HostState
) -> list[Step]:
    """add_route for each allowed IP, longest prefix first; add_default for a /0 in table auto."""
    if table == "off":
        return []
    steps: list[Step] = []
    fwmark = config.interface.fwmark or None
    for prefix in route_order(allowed_ips(config)):
        if table != "auto":
            steps.append(AddRoute(ifname, prefix, table))
        elif prefix.prefixlen == 0:
            if fwmark is None:
                fwmark = first_free_table(host.tables_in_use)
                steps.append(SetFwmark(ifname, fwmark))
            steps += full_tunnel_steps(ifname, prefix, fwmark, host)
        elif not covered_by_connected_route(prefix, config.interface.address):
            steps.append(AddRoute(ifname, prefix))
    return steps


def full_tunnel_steps(ifname: str, prefix: AllowedIP, table: int, host: HostState) -> list[Step]:
    """add_default for one family: the default route goes in its own table, which everything
    but the tunnel's own (marked) packets uses; main still wins with anything but its default
    route; and the guard table."""
    family: Family = 4 if prefix.version == 4 else 6
    steps: list[Step] = [
        AddRule(Rule(family, table, fwmark=table, invert=True)),
        AddRule(Rule(family, MAIN_TABLE, suppress_prefixlength=0)),
        AddRoute(ifname, prefix, table),
    ]
    if family == 4 and not host.src_valid_mark:
        # Lets reverse-path filtering see the mark of the tunnel's own packets.
        steps.append(SetSysctl(SRC_VALID_MARK, "1"))
    steps.append(AddFirewall(family, ifname, table, host.firewall))
    return steps


def allowed_ips(config: Config) -> list[AllowedIP]:
    """The prefixes `wg show IFNAME allowed-ips` lists after the config is applied."""
    return list(dict.fromkeys(prefix for peer in config.peers for prefix in peer.allowed_ips))


def route_order(prefixes: Iterable[AllowedIP]) -> list[AllowedIP]:
    """cmd_up's `sort -nr -k 2 -t /`: longest prefix first; ties by the whole line, in reverse
    byte order (sort's last-resort comparison, reversed too by -r, in the C locale)."""
    return sorted(prefixes, key=lambda p: (p.prefixlen, format_prefix(p).encode()), reverse=True)


def covered_by_connected_route(prefix: AllowedIP, addresses: Sequence[IPInterface]) -> bool:
    """add_route skips a prefix that `ip route show dev IFNAME match PREFIX` already finds in
    main: here, the prefix route the kernel adds for each address shorter than a host route."""
    return any(
        address.version == prefix.version
        and address.network.prefixlen < address.max_prefixlen
        and prefix.subnet_of(address.network)  # type: ignore[arg-type]
        for address in addresses
    )


def first_free_table(tables_in_use: frozenset[int]) -> int:
    table = FIRST_FULL_TUNNEL_TABLE
    while table in tables_in_use:
        table += 1
    return table


def routing_table(
    value: str | None, names: Mapping[str, int], *, file: str = "<config>"
) -> int | Literal["auto", "off"]:
    """Table = auto (or unset), off, a number, or a name from iproute2's rt_tables.

    Numbers are read as iproute2's rtnl_rttable_a2n reads them (strtoul base 0: decimal, 0x hex,
    0 octal); "auto" and "off" are compared case-sensitively, as linux.bash does.
    """
    if value is None or value == "auto":
        return "auto"
    if value == "off":
        return "off"
    if value in names:
        return names[value]
    number = _c_unsigned(value)
    if number is None or number > 0xFFFFFFFF:
        raise ConfigError(f"no routing table named {value!r} in rt_tables", file=file, key="Table")
    return number


def _c_unsigned(text: str) -> int | None:
    try:
        if text[:2].lower() == "0x":
            return int(text[2:], 16) if text[2:].isalnum() else None
        if text.startswith("0") and text.isdigit():
            return int(text, 8)
        return int(text) if text.isdigit() else None
    except ValueError:
        return None


# down ---------------------------------------------------------------------------------------------


def plan_down(ifname: str, config: Config, running: RunningState, *, path: str) -> list[Step]:
    """cmd_down: PreDown, save, the full tunnel's rules, the interface, DNS, firewall, PostDown."""
    interface = config.interface
    steps = hooks(interface.pre_down, ifname)
    if interface.save_config:
        steps.append(SaveConfig(ifname, path, config))
    if interface.table in (None, "auto") and running.fwmark and _has_default(running.allowed_ips):
        steps += [DeleteRule(rule) for rule in full_tunnel_rules(running.rules, running.fwmark)]
    steps.append(DeleteInterface(ifname))
    if interface.dns and running.resolvconf is not None:
        record = running.resolvconf_prefix + ifname
        steps.append(BestEffort(UnsetDns(running.resolvconf, record)))
    table_name = f"wg-quick-{ifname}"
    steps += [
        BestEffort(DeleteNftTable(family, name))
        for family, name in running.nft_tables
        if name == table_name
    ]
    steps += [
        BestEffort(DeleteIptablesRules(family, ifname))
        for family in (4, 6)
        if family in running.iptables_rules
    ]
    steps += hooks(interface.post_down, ifname)
    return steps


def full_tunnel_rules(rules: Iterable[Rule], fwmark: int) -> list[Rule]:
    """del_if's rules, family by family: every rule looking up the fwmark's table, then every
    `from all lookup main suppress_prefixlength 0`."""
    rules = list(rules)
    found = []
    for family in (4, 6):
        found += [r for r in rules if r.family == family and r.table == fwmark]
        found += [
            r
            for r in rules
            if r.family == family
            and r.table == MAIN_TABLE
            and r.suppress_prefixlength == 0
            and r.fwmark is None
            and r.from_all
        ]
    return found


def _has_default(prefixes: Iterable[AllowedIP]) -> bool:
    return any(prefix.prefixlen == 0 for prefix in prefixes)


# save ---------------------------------------------------------------------------------------------


def saved_config(
    config: Config,
    device: DeviceState,
    addresses: Sequence[IPInterface],
    nameservers: Sequence[str],
    search: Sequence[str],
    link_mtu: int,
) -> Config:
    """save_config: the interface's addresses and DNS as they are now, the MTU as it is now if
    the file set one, the file's Table, SaveConfig and hooks, and what `wg showconf` prints."""
    saved = from_device_state(device)
    interface, original = saved.interface, config.interface
    interface.address = list(addresses)
    interface.dns = [ipaddress.ip_address(server) for server in nameservers]
    interface.dns_search = list(search)
    interface.mtu = link_mtu if original.mtu is not None else None
    interface.table = original.table
    interface.save_config = original.save_config
    interface.pre_up, interface.post_up = list(original.pre_up), list(original.post_up)
    interface.pre_down, interface.post_down = list(original.pre_down), list(original.post_down)
    return saved
