"""What the plans need to know about the host, read before anything changes."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from pyroute2 import IPRoute

from wgpy import client
from wgpy.quick import dns, firewall, netlink, nftables
from wgpy.quick.plan import BUILTIN_TABLES, HostState, RunningState
from wgpy.quick.steps import Family
from wgpy.uapi import DeviceUpdate

SYSCTL = Path("/proc/sys")
# iproute2 reads table names from these files (lib/rt_names.c), the later ones taking precedence.
RT_TABLES = (Path("/usr/share/iproute2/rt_tables"), Path("/etc/iproute2/rt_tables"))
RT_TABLES_DIRS = (Path("/usr/share/iproute2/rt_tables.d"), Path("/etc/iproute2/rt_tables.d"))
_TABLE_LINE = re.compile(r"\s*(0x[0-9a-fA-F]+|[0-9]+)\s+(\S+)")


def observe_host(ipr: IPRoute, update: DeviceUpdate) -> HostState:
    endpoints = [ipaddress.ip_address(peer.endpoint.host) for peer in update.peers if peer.endpoint]
    resolvconf = dns.find_resolvconf()
    return HostState(
        endpoint_mtus=tuple(
            mtu for endpoint in endpoints if (mtu := netlink.route_mtu(ipr, endpoint)) is not None
        ),
        default_route_mtu=netlink.default_route_mtu(ipr),
        tables_in_use=netlink.tables_in_use(ipr),
        table_names=table_names(),
        src_valid_mark=read_sysctl("net.ipv4.conf.all.src_valid_mark") == "1",
        firewall="nftables" if nftables.available() else "iptables",
        resolvconf=resolvconf,
        resolvconf_prefix=dns.record_prefix(resolvconf),
    )


def observe_running(ipr: IPRoute, ifname: str) -> RunningState:
    state = client.get_device(ifname)
    resolvconf = dns.find_resolvconf()
    return RunningState(
        fwmark=state.fwmark,
        allowed_ips=tuple(prefix for peer in state.peers for prefix in peer.allowed_ips),
        rules=tuple(netlink.rules(ipr)),
        nft_tables=tuple(nftables.tables()) if nftables.available() else (),
        iptables_rules=frozenset(
            family for family in (4, 6) if iptables_removal(family, ifname) is not None
        ),
        resolvconf=resolvconf,
        resolvconf_prefix=dns.record_prefix(resolvconf),
    )


def iptables_removal(family: Family, ifname: str) -> str | None:
    """The iptables-restore script that deletes IFNAME's rules, or None if there are none."""
    command = f"{'iptables' if family == 4 else 'ip6tables'}-save"
    if shutil.which(command) is None:
        return None
    saved = subprocess.run(
        [command], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    return firewall.iptables_removal(saved.stdout, ifname)


def read_sysctl(key: str) -> str | None:
    try:
        return (SYSCTL / key.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def table_names(
    files: Iterable[Path] = RT_TABLES, directories: Iterable[Path] = RT_TABLES_DIRS
) -> Mapping[str, int]:
    """Routing table names: iproute2's own, then rt_tables, then rt_tables.d/*.conf."""
    names = dict(BUILTIN_TABLES)
    paths = [*files, *(p for d in directories if d.is_dir() for p in sorted(d.glob("*.conf")))]
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        names.update(parse_rt_tables(text))
    return names


def parse_rt_tables(text: str) -> dict[str, int]:
    """`NUMBER NAME` lines of an rt_tables file; '#' starts a comment."""
    names = {}
    for line in text.splitlines():
        if match := _TABLE_LINE.match(line.partition("#")[0]):
            names[match[2]] = int(match[1], 0)
    return names
