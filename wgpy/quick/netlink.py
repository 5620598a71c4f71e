"""Addresses, routes, rules and links over rtnetlink, through pyroute2, without `ip`.

Each change is the message iproute2 sends for the command wg-quick runs (iproute2 ip/ipaddress.c
ipaddr_modify, ip/iproute.c iproute_modify, ip/iprule.c iprule_modify, ip/iplink.c), so the
kernel ends up in the same state: routes with protocol boot and, for IPv4 routes through a
device, scope link; addresses with IFA_LOCAL and IFA_ADDRESS and no broadcast; rules whose
priority the kernel picks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_DELRULE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTM_NEWRULE,
)
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from wgpy.config import IPInterface
from wgpy.quick.steps import MAIN_TABLE, Family, Rule
from wgpy.uapi import AllowedIP, IPAddress

Message = Any  # pyroute2's message classes carry no type information

AF = {4: socket.AF_INET, 6: socket.AF_INET6}
IFF_UP = 0x1
RT_TABLE_UNSPEC = 0
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RTN_UNICAST = 1
FR_ACT_UNSPEC = 0
FR_ACT_TO_TBL = 1
FIB_RULE_INVERT = 0x2
SUPPRESS_UNSET = 0xFFFFFFFF
# Rule attributes that select packets besides the fwmark; a rule without them is "from all".
_SELECTORS = (
    "FRA_IIFNAME",
    "FRA_OIFNAME",
    "FRA_IP_PROTO",
    "FRA_SPORT_RANGE",
    "FRA_DPORT_RANGE",
    "FRA_UID_RANGE",
    "FRA_L3MDEV",
    "FRA_TUN_ID",
)
_CREATE = NLM_F_CREATE | NLM_F_EXCL


# Messages -----------------------------------------------------------------------------------------


def address_message(index: int, address: IPInterface) -> Message:
    """`ip address add ADDRESS dev IFNAME`"""
    message = ifaddrmsg()
    message["family"] = AF[address.version]
    message["prefixlen"] = address.network.prefixlen
    message["index"] = index
    # default_scope(): host for 127.0.0.0/8, global for everything else.
    loopback = address.version == 4 and address.ip in ipaddress.ip_network("127.0.0.0/8")
    message["scope"] = RT_SCOPE_HOST if loopback else RT_SCOPE_UNIVERSE
    local = str(address.ip)
    message["attrs"] = [("IFA_LOCAL", local), ("IFA_ADDRESS", local)]
    return message


def route_message(index: int, prefix: AllowedIP, table: int) -> Message:
    """`ip route add PREFIX dev IFNAME table TABLE`"""
    message = rtmsg()
    message["family"] = AF[prefix.version]
    message["dst_len"] = prefix.prefixlen
    message["proto"] = RTPROT_BOOT
    message["scope"] = RT_SCOPE_LINK if prefix.version == 4 else RT_SCOPE_UNIVERSE
    message["type"] = RTN_UNICAST
    message["table"] = table if table < 256 else RT_TABLE_UNSPEC
    attrs = [("RTA_DST", str(prefix.network_address)), ("RTA_OIF", index)]
    attrs += [("RTA_TABLE", table)] if table >= 256 else []
    message["attrs"] = attrs
    return message


def rule_message(rule: Rule, *, delete: bool = False) -> Message:
    """`ip rule add|delete [priority P] [not] [fwmark M] table T [suppress_prefixlength N]`"""
    message = fibmsg()
    message["family"] = AF[rule.family]
    message["action"] = FR_ACT_UNSPEC if delete else FR_ACT_TO_TBL
    message["table"] = rule.table if rule.table < 256 else RT_TABLE_UNSPEC
    message["flags"] = FIB_RULE_INVERT if rule.invert else 0
    attrs: list[tuple[str, int]] = [("FRA_TABLE", rule.table)] if rule.table >= 256 else []
    if rule.priority is not None:
        attrs.append(("FRA_PRIORITY", rule.priority))
    if rule.fwmark is not None:
        attrs.append(("FRA_FWMARK", rule.fwmark))
    if rule.suppress_prefixlength is not None:
        attrs.append(("FRA_SUPPRESS_PREFIXLEN", rule.suppress_prefixlength))
    message["attrs"] = attrs
    return message


def mtu_up_message(index: int, mtu: int) -> Message:
    """`ip link set mtu MTU up dev IFNAME`"""
    message = ifinfmsg()
    message["index"] = index
    message["flags"] = message["change"] = IFF_UP
    message["attrs"] = [("IFLA_MTU", mtu)]
    return message


# Changes ------------------------------------------------------------------------------------------


def add_address(ipr: IPRoute, index: int, address: IPInterface) -> None:
    _request(ipr, address_message(index, address), RTM_NEWADDR, _CREATE)


def add_route(ipr: IPRoute, index: int, prefix: AllowedIP, table: int = MAIN_TABLE) -> None:
    _request(ipr, route_message(index, prefix, table), RTM_NEWROUTE, _CREATE)


def add_rule(ipr: IPRoute, rule: Rule) -> None:
    _request(ipr, rule_message(rule), RTM_NEWRULE, _CREATE)


def delete_rule(ipr: IPRoute, rule: Rule) -> None:
    _request(ipr, rule_message(rule, delete=True), RTM_DELRULE)


def set_mtu_up(ipr: IPRoute, index: int, mtu: int) -> None:
    _request(ipr, mtu_up_message(index, mtu), RTM_NEWLINK)


def delete_link(ipr: IPRoute, index: int) -> None:
    message = ifinfmsg()
    message["index"] = index
    _request(ipr, message, RTM_DELLINK)


def _request(ipr: IPRoute, message: Message, kind: int, flags: int = 0) -> None:
    message["header"]["type"] = kind
    message["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
    ipr.nlm_request_batch([message])


# Observations -------------------------------------------------------------------------------------


def link_index(ipr: IPRoute, ifname: str) -> int | None:
    indexes = ipr.link_lookup(ifname=ifname)
    return int(indexes[0]) if indexes else None


def link_mtu(ipr: IPRoute, index: int) -> int | None:
    try:
        (link,) = ipr.get_links(index)
    except NetlinkError:
        return None
    mtu = link.get_attr("IFLA_MTU")
    return int(mtu) if mtu is not None else None


def addresses(ipr: IPRoute, index: int, family: Family | None = None) -> list[Message]:
    """The interface's address messages, in the kernel's dump order (as `ip addr show`)."""
    kwargs = {"family": AF[family]} if family is not None else {}
    return [message for message in ipr.get_addr(**kwargs) if message["index"] == index]


def interface_of(message: Message) -> IPInterface:
    address = message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS")
    return ipaddress.ip_interface(f"{address}/{message['prefixlen']}")


def route_mtu(ipr: IPRoute, destination: IPAddress) -> int | None:
    """What set_mtu_up reads off `ip route get DESTINATION`: the route's MTU, else its device's;
    None if there is no route."""
    try:
        (route, *_) = ipr.route("get", dst=str(destination))
    except NetlinkError:
        return None
    return _mtu_of(ipr, route)


def default_route_mtu(ipr: IPRoute) -> int | None:
    """The same for the first IPv4 default route in main (`ip route show default`)."""
    for route in ipr.get_routes(family=socket.AF_INET):
        if route["dst_len"] == 0 and _table(route) == MAIN_TABLE:
            return _mtu_of(ipr, route)
    return None


def tables_in_use(ipr: IPRoute) -> frozenset[int]:
    """Every routing table that holds an IPv4 or IPv6 route."""
    return frozenset(
        _table(route) for family in AF.values() for route in ipr.get_routes(family=family)
    )


def rules(ipr: IPRoute) -> list[Rule]:
    return [
        _rule(4 if family == socket.AF_INET else 6, message)
        for family in AF.values()
        for message in ipr.get_rules(family=family)
    ]


def _rule(family: Family, message: Message) -> Rule:
    fwmark = message.get_attr("FRA_FWMARK")
    suppress = message.get_attr("FRA_SUPPRESS_PREFIXLEN")
    return Rule(
        family,
        table=message.get_attr("FRA_TABLE") or message["table"],
        fwmark=fwmark or None,
        invert=bool(message["flags"] & FIB_RULE_INVERT),
        suppress_prefixlength=None if suppress in (None, SUPPRESS_UNSET) else suppress,
        priority=message.get_attr("FRA_PRIORITY") or 0,
        from_all=not (
            message["src_len"]
            or message["dst_len"]
            or message["tos"]
            or any(message.get_attr(name) is not None for name in _SELECTORS)
        ),
    )


def _table(route: Message) -> int:
    return int(route.get_attr("RTA_TABLE") or route["table"])


def _mtu_of(ipr: IPRoute, route: Message) -> int | None:
    metrics = route.get_attr("RTA_METRICS")
    if metrics is not None and (mtu := metrics.get_attr("RTAX_MTU")):
        return int(mtu)
    index = route.get_attr("RTA_OIF") or _first_hop_oif(route.get_attr("RTA_MULTIPATH") or ())
    return link_mtu(ipr, index) if index else None


def _first_hop_oif(hops: Iterable[Message]) -> int | None:
    for hop in hops:
        return int(hop["oif"])
    return None
