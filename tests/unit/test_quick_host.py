"""How wgpy-quick reads and changes the host, checked without touching it.

The rtnetlink messages are iproute2's for the commands wg-quick runs; resolvconf records and
rt_tables files are read as wg-quick and iproute2 read them. (Endpoints are resolved as wg
resolves them, for wgpy-quick too: tests/test_resolver.py.)
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

from wgpy.quick import dns, netlink, observe
from wgpy.quick.steps import Rule

net, iface = ipaddress.ip_network, ipaddress.ip_interface

# rtnetlink ----------------------------------------------------------------------------------------


def attrs(message: Any) -> dict[str, Any]:
    return dict(message["attrs"])


def test_a_route_is_iproute2s_protocol_boot_with_scope_link_for_ipv4() -> None:
    route = netlink.route_message(7, net("198.19.64.0/18"), 254)
    assert (route["family"], route["dst_len"], route["table"]) == (socket.AF_INET, 18, 254)
    assert (route["proto"], route["scope"], route["type"]) == (3, 253, 1)  # boot, link, unicast
    assert attrs(route) == {"RTA_DST": "198.19.64.0", "RTA_OIF": 7}


def test_a_table_beyond_255_goes_in_an_attribute() -> None:
    route = netlink.route_message(7, net("::/0"), 51820)
    assert (route["table"], route["scope"]) == (0, 0)  # RT_TABLE_UNSPEC; IPv6 has no scopes
    assert attrs(route)["RTA_TABLE"] == 51820


def test_the_full_tunnel_rules_are_ip_rule_adds() -> None:
    marked = netlink.rule_message(Rule(4, 51820, fwmark=51820, invert=True))
    assert (marked["action"], marked["flags"], marked["table"]) == (1, 2, 0)  # to table, not
    assert attrs(marked) == {"FRA_TABLE": 51820, "FRA_FWMARK": 51820}
    suppress = netlink.rule_message(Rule(6, 254, suppress_prefixlength=0))
    assert (suppress["family"], suppress["table"]) == (socket.AF_INET6, 254)
    assert attrs(suppress) == {"FRA_SUPPRESS_PREFIXLEN": 0}


def test_a_rule_is_deleted_by_what_was_observed_of_it() -> None:
    delete = netlink.rule_message(
        Rule(4, 254, suppress_prefixlength=0, priority=32764), delete=True
    )
    assert delete["action"] == 0
    assert attrs(delete) == {"FRA_PRIORITY": 32764, "FRA_SUPPRESS_PREFIXLEN": 0}


def test_an_address_has_local_and_address_and_no_broadcast() -> None:
    address = netlink.address_message(7, iface("198.19.8.2/24"))
    assert (address["prefixlen"], address["scope"], address["index"]) == (24, 0, 7)
    assert attrs(address) == {"IFA_LOCAL": "198.19.8.2", "IFA_ADDRESS": "198.19.8.2"}
    assert netlink.address_message(7, iface("127.0.0.2/8"))["scope"] == 254  # host


def test_mtu_and_up_are_one_message() -> None:
    link = netlink.mtu_up_message(7, 1392)
    assert (link["index"], link["flags"], link["change"]) == (7, 1, 1)
    assert attrs(link) == {"IFLA_MTU": 1392}


# resolvconf ---------------------------------------------------------------------------------------

DEBIAN_INTERFACE_ORDER = """\
# interface-order(5)
lo.inet6
lo.inet
lo.@(dnsmasq|pdnsd)
lo.!(pdns|pdns-recursor)
lo
tun*
tap*
hso*
em+([0-9])?(_+([0-9]))*
"""


def test_debians_resolvconf_gets_records_under_its_first_plain_pattern() -> None:
    assert dns.prefix_from_interface_order(DEBIAN_INTERFACE_ORDER) == "tun."
    assert dns.prefix_from_interface_order("lo\neth*?\n") == ""


def test_other_resolvconfs_get_the_bare_interface_name(tmp_path: Path) -> None:
    order = tmp_path / "interface-order"
    order.write_text(DEBIAN_INTERFACE_ORDER)
    debian = tmp_path / "resolvconf"
    debian.write_text("#!/bin/sh\n")
    systemd = tmp_path / "resolvectl-link"
    systemd.symlink_to(debian)
    assert dns.record_prefix(str(debian), order) == "tun."
    assert dns.record_prefix(str(systemd), order) == ""
    assert dns.record_prefix(str(debian), tmp_path / "missing") == ""


def test_a_record_reads_back_as_nameservers_and_search_domains() -> None:
    record = "nameserver 198.19.8.1\nnameserver fd00:8::1\nsearch corp.example lab.example\n"
    assert dns.parse_record(record) == (
        ["198.19.8.1", "fd00:8::1"],
        ["corp.example", "lab.example"],
    )


# rt_tables ----------------------------------------------------------------------------------------


def test_rt_tables_lines_name_tables_and_comments_are_skipped(tmp_path: Path) -> None:
    assert observe.parse_rt_tables("255\tlocal\n0x10 vpn # ours\n#1\tinr.ruhep\n\n") == {
        "local": 255,
        "vpn": 16,
    }
    table_d = tmp_path / "rt_tables.d"
    table_d.mkdir()
    (table_d / "office.conf").write_text("100 office\n")
    (tmp_path / "rt_tables").write_text("200 office\n")
    names = observe.table_names([tmp_path / "rt_tables"], [table_d])
    assert (names["main"], names["office"]) == (254, 100)  # rt_tables.d comes last
