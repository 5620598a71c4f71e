"""The plans of wgpy-quick up and down: wg-quick's steps, in wg-quick's order, with their undo.

Pure: a config and a description of the host go in, a list of steps comes out. Each step prints
as the command linux.bash runs for it, so most expectations here read as wg-quick's `[#]` log.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpy import config as wgconfig
from wgpy.config import Config
from wgpy.errors import ConfigError
from wgpy.quick import QuickError
from wgpy.quick.plan import (
    HostState,
    RunningState,
    auto_mtu,
    full_tunnel_rules,
    plan_down,
    plan_up,
    route_order,
    routing_table,
    saved_config,
)
from wgpy.quick.steps import (
    AddFirewall,
    AddRoute,
    BestEffort,
    DeleteIptablesRules,
    DeleteNftTable,
    Rule,
    RunHook,
    SaveConfig,
    SetDns,
    Step,
    UnsetDns,
)
from wgpy.uapi import AllowedIP, DeviceState, PeerState

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SERVER_KEY = "hpVWQU+/sVq3wjDycxiVWgoadwkYVoumsYjjMDcal1w="
PRIVATE_KEY = "KGg6uZuejMxXWv9DDedoOgcgrgw8WpGB3WTHLSotkm8="
PSK_CLIENT_KEY = "WKOh6IZ0/7W2F4Yp2VLuBnenr9obCRJwuRYgn4+mUFA="  # configs/psk.conf
HOST = HostState(endpoint_mtus=(1472,))
net = ipaddress.ip_network


def example(name: str, *interface_lines: str) -> Config:
    """An example from configs/, with more lines at the end of its [Interface] section."""
    text = (CONFIGS / f"{name}.conf").read_text()
    extra = "".join(f"{line}\n" for line in interface_lines)
    return wgconfig.parse(text.replace("\n[Peer]", f"{extra}\n[Peer]", 1))


def config(interface: str, peer: str = "AllowedIPs = 198.19.8.0/24") -> Config:
    return wgconfig.parse(
        f"[Interface]\nPrivateKey = {PRIVATE_KEY}\n{interface}\n"
        f"[Peer]\nPublicKey = {SERVER_KEY}\nEndpoint = 192.0.2.1:51820\n{peer}\n"
    )


def up(cfg: Config, host: HostState = HOST, ifname: str = "wg0") -> list[Step]:
    update = wgconfig.to_device_update(cfg, lambda host, port: ("192.0.2.1", port), append=True)
    return plan_up(ifname, cfg, update, host)


def commands(steps: list[Step]) -> list[str]:
    return [str(step) for step in steps]


# up -----------------------------------------------------------------------------------------------


def test_a_full_tunnel_comes_up_with_wg_quicks_commands_in_wg_quicks_order() -> None:
    assert commands(up(example("client-full"))) == [
        "wgpy wg0",
        "wg addconf wg0 <(wgpy-quick strip wg0)",
        "ip -4 address add 198.19.8.2/32 dev wg0",
        "ip -6 address add fd00:8::2/128 dev wg0",
        "ip link set mtu 1392 up dev wg0",
        "resolvconf -a wg0 -m 0 -x",
        # ::/0 sorts before 0.0.0.0/0, so IPv6 takes the fwmark and comes first.
        "wg set wg0 fwmark 51820",
        "ip -6 rule add not fwmark 51820 table 51820",
        "ip -6 rule add table main suppress_prefixlength 0",
        "ip -6 route add ::/0 dev wg0 table 51820",
        "nft -f -  # table ip6 wg-quick-wg0",
        "ip -4 rule add not fwmark 51820 table 51820",
        "ip -4 rule add table main suppress_prefixlength 0",
        "ip -4 route add 0.0.0.0/0 dev wg0 table 51820",
        "sysctl -q net.ipv4.conf.all.src_valid_mark=1",
        "nft -f -  # table ip wg-quick-wg0",
    ]


def test_a_failed_up_is_undone_by_deleting_the_interface_and_what_outlives_it() -> None:
    undo = [str(inverse) for step in up(example("client-full")) if (inverse := step.undo())]
    assert undo == [
        "ip link delete dev wg0",
        "resolvconf -d wg0 -f",
        "ip -6 rule delete not fwmark 51820 table 51820",
        "ip -6 rule delete table main suppress_prefixlength 0",
        "nft delete table ip6 wg-quick-wg0",
        "ip -4 rule delete not fwmark 51820 table 51820",
        "ip -4 rule delete table main suppress_prefixlength 0",
        "nft delete table ip wg-quick-wg0",
    ]


def test_the_device_gets_the_config_with_endpoints_resolved_and_peers_appended() -> None:
    configure = up(example("client-full"))[1]
    update = configure.update  # type: ignore[attr-defined]
    assert not update.replace_peers  # `wg addconf`, on a device that has no peers yet
    assert [str(peer.endpoint) for peer in update.peers] == ["192.0.2.1:51820"]


def test_hooks_run_right_after_the_interface_exists_and_last_with_percent_i_replaced() -> None:
    cfg = config(
        "PreUp = echo %i pre # a '#' in a hook is the hook's\nPostUp = ip link set %i alias x"
    )
    steps = commands(up(cfg, ifname="wg7"))
    assert steps[:3] == [
        "wgpy wg7",
        "echo wg7 pre # a '#' in a hook is the hook's",
        "wg addconf wg7 <(wgpy-quick strip wg7)",
    ]
    assert steps[-1] == "ip link set wg7 alias x"
    assert all(step.undo() is None for step in up(cfg) if isinstance(step, RunHook))


def test_a_split_tunnel_routes_longest_prefix_first_except_what_its_addresses_route() -> None:
    routes = [str(s) for s in up(example("client-split")) if isinstance(s, AddRoute)]
    # 198.19.8.0/24 and fd00:8::/64 come with the addresses 198.19.8.3/24 and fd00:8::3/64.
    assert routes == [
        "ip -6 route add fd00:64::/48 dev wg0",
        "ip -4 route add 198.19.64.0/18 dev wg0",
    ]


def test_host_addresses_bring_no_route_so_every_allowed_ip_gets_one() -> None:
    cfg = config("Address = 198.19.8.2/32", "AllowedIPs = 198.19.8.0/24, 198.19.8.2/32")
    routes = [str(s) for s in up(cfg) if isinstance(s, AddRoute)]
    assert routes == [
        "ip -4 route add 198.19.8.2/32 dev wg0",
        "ip -4 route add 198.19.8.0/24 dev wg0",
    ]


prefixes = st.one_of(
    st.builds(
        lambda a, n: ipaddress.ip_network((a, n), strict=False),
        st.ip_addresses(v=4),
        st.integers(0, 32),
    ),
    st.builds(
        lambda a, n: ipaddress.ip_network((a, n), strict=False),
        st.ip_addresses(v=6),
        st.integers(0, 128),
    ),
)


@settings(max_examples=50)
@given(st.lists(prefixes, unique=True, max_size=12))
def test_routes_come_in_the_order_of_wg_quicks_sort_command(found: list[AllowedIP]) -> None:
    lines = "".join(f"{prefix}\n" for prefix in found)
    expected = subprocess.run(
        ["sort", "-nr", "-k", "2", "-t", "/"],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
        env={"LC_ALL": "C"},
    ).stdout.split()
    assert [str(prefix) for prefix in route_order(found)] == expected


def test_a_numbered_table_takes_every_route_and_no_policy_routing() -> None:
    steps = up(config("Table = 1234", "AllowedIPs = 0.0.0.0/0, 198.19.8.0/24"))
    assert commands(steps)[3:] == [
        "ip -4 route add 198.19.8.0/24 dev wg0 table 1234",
        "ip -4 route add 0.0.0.0/0 dev wg0 table 1234",
    ]


def test_table_off_adds_no_route() -> None:
    assert commands(up(example("table-off")))[-1] == "ip link set mtu 1392 up dev wg0"


@pytest.mark.parametrize(
    "value, table",
    [
        (None, "auto"),
        ("auto", "auto"),
        ("off", "off"),
        ("main", 254),
        ("vpn", 100),
        ("1234", 1234),
        ("0x10", 16),
        ("010", 8),  # iproute2 reads numbers with strtoul(..., 0)
    ],
)
def test_table_names_and_numbers_read_as_iproute2_reads_them(
    value: str | None, table: int | str
) -> None:
    assert routing_table(value, {"main": 254, "vpn": 100}) == table


@pytest.mark.parametrize("value", ["Off", "nosuchtable", "0x", "4294967296"])
def test_a_table_that_is_neither_a_name_nor_a_number_is_an_error_naming_the_key(
    value: str,
) -> None:
    with pytest.raises(ConfigError, match=r"^wg0.conf: Table: no routing table named"):
        routing_table(value, {"main": 254}, file="wg0.conf")


def test_a_configured_fwmark_is_the_full_tunnel_table() -> None:
    steps = commands(up(config("FwMark = 0x1234", "AllowedIPs = 0.0.0.0/0")))
    assert "wg set wg0 fwmark 4660" not in steps
    assert "ip -4 rule add not fwmark 4660 table 4660" in steps


def test_the_full_tunnel_table_is_the_first_from_51820_that_holds_no_route() -> None:
    host = HostState(tables_in_use=frozenset({254, 51820, 51821, 51823}))
    steps = commands(up(config("", "AllowedIPs = 0.0.0.0/0"), host))
    assert "wg set wg0 fwmark 51822" in steps


def test_src_valid_mark_is_set_only_for_ipv4_and_only_when_it_is_not_already() -> None:
    ipv4, ipv6 = config("", "AllowedIPs = 0.0.0.0/0"), config("", "AllowedIPs = ::/0")
    sysctl = "sysctl -q net.ipv4.conf.all.src_valid_mark=1"
    assert sysctl in commands(up(ipv4))
    assert sysctl not in commands(up(ipv4, HostState(src_valid_mark=True)))
    assert sysctl not in commands(up(ipv6))


def test_without_nftables_the_full_tunnel_gets_wg_quicks_iptables_rules() -> None:
    steps = up(config("", "AllowedIPs = 0.0.0.0/0"), HostState(firewall="iptables"))
    (firewall,) = [step for step in steps if isinstance(step, AddFirewall)]
    assert str(firewall) == "iptables-restore -n  # wg-quick(8) rules for wg0"
    assert firewall.undo() == DeleteIptablesRules(4, "wg0")


@pytest.mark.parametrize(
    "host, mtu",
    [
        (HostState(endpoint_mtus=(1500, 1420, 9000), default_route_mtu=1280), 1340),
        (HostState(default_route_mtu=1472), 1392),
        (HostState(), 1420),
    ],
    ids=["smallest on the way to an endpoint", "the default route's", "1500 without either"],
)
def test_the_mtu_is_the_links_less_80(host: HostState, mtu: int) -> None:
    assert auto_mtu(host) == mtu


def test_a_configured_mtu_wins() -> None:
    assert "ip link set mtu 1280 up dev wg0" in commands(up(example("psk")))


def test_dns_gives_resolvconf_the_servers_then_the_search_domains_under_its_prefix() -> None:
    host = HostState(resolvconf="/sbin/resolvconf", resolvconf_prefix="tun.")
    (dns,) = [step for step in up(example("client-full"), host) if isinstance(step, SetDns)]
    assert str(dns) == "resolvconf -a tun.wg0 -m 0 -x"
    assert dns.text() == "nameserver 198.19.8.1\nnameserver fd00:8::1\nsearch corp.example\n"
    assert dns.undo() == UnsetDns("/sbin/resolvconf", "tun.wg0")


def test_search_domains_without_a_server_set_no_dns() -> None:
    steps = up(config("DNS = corp.example"), HostState(resolvconf=None))
    assert not [step for step in steps if isinstance(step, SetDns)]


def test_dns_without_resolvconf_stops_before_anything_is_done() -> None:
    with pytest.raises(QuickError, match=r"DNS = 198.19.8.1, fd00:8::1 needs resolvconf"):
        up(example("client-full"), HostState(resolvconf=None))


# down ---------------------------------------------------------------------------------------------

FULL_TUNNEL = RunningState(
    fwmark=51820,
    allowed_ips=(net("0.0.0.0/0"), net("::/0")),
    rules=(
        Rule(4, 255, priority=0),
        Rule(4, 254, suppress_prefixlength=0, priority=32764),
        Rule(4, 51820, fwmark=51820, invert=True, priority=32765),
        Rule(4, 254, priority=32766),
        Rule(6, 254, suppress_prefixlength=0, priority=32764),
        Rule(6, 51820, fwmark=51820, invert=True, priority=32765),
    ),
    nft_tables=(("ip6", "wg-quick-wg0"), ("ip", "wg-quick-wg0"), ("inet", "filter")),
)


def test_a_full_tunnel_goes_down_with_wg_quicks_commands_in_wg_quicks_order() -> None:
    cfg = example("client-full", "PreDown = echo %i", "PostDown = echo %i down")
    assert commands(plan_down("wg0", cfg, FULL_TUNNEL, path="/etc/wireguard/wg0.conf")) == [
        "echo wg0",
        "ip -4 rule delete priority 32765 not fwmark 51820 table 51820",
        "ip -4 rule delete priority 32764 table main suppress_prefixlength 0",
        "ip -6 rule delete priority 32765 not fwmark 51820 table 51820",
        "ip -6 rule delete priority 32764 table main suppress_prefixlength 0",
        "ip link delete dev wg0",
        "resolvconf -d wg0 -f",
        "nft delete table ip6 wg-quick-wg0",
        "nft delete table ip wg-quick-wg0",
        "echo wg0 down",
    ]


def test_down_carries_on_past_dns_and_firewall_failures_as_wg_quick_does() -> None:
    steps = plan_down("wg0", example("client-full"), FULL_TUNNEL, path="wg0.conf")
    best_effort = [step.step for step in steps if isinstance(step, BestEffort)]
    assert [type(step) for step in best_effort] == [UnsetDns, DeleteNftTable, DeleteNftTable]


def test_down_deletes_rules_only_for_a_full_tunnel_in_table_auto() -> None:
    split = RunningState(fwmark=51820, allowed_ips=(net("198.19.8.0/24"),), rules=FULL_TUNNEL.rules)
    unmarked = RunningState(allowed_ips=FULL_TUNNEL.allowed_ips, rules=FULL_TUNNEL.rules)
    numbered = example("client-full", "Table = 51820")
    for cfg, running in ((example("client-full"), split), (example("client-full"), unmarked)):
        assert "rule delete" not in " ".join(commands(plan_down("wg0", cfg, running, path="x")))
    assert "rule delete" not in " ".join(
        commands(plan_down("wg0", numbered, FULL_TUNNEL, path="x"))
    )


def test_down_finds_the_rules_as_wg_quicks_patterns_do() -> None:
    others = [
        Rule(4, 254, suppress_prefixlength=0, fwmark=7, priority=100),  # not "from all lookup main"
        Rule(4, 254, suppress_prefixlength=0, from_all=False, priority=101),
        Rule(4, 254, suppress_prefixlength=8, priority=102),
        Rule(6, 1234, priority=103),
    ]
    ours = [Rule(6, 51820, priority=5), Rule(4, 254, suppress_prefixlength=0, priority=6)]
    assert full_tunnel_rules([*others, *ours], 51820) == [ours[1], ours[0]]


def test_down_saves_first_when_the_config_says_so() -> None:
    cfg = example("client-full", "SaveConfig = true", "PreDown = echo bye")
    steps = plan_down("wg0", cfg, RunningState(), path="/etc/wireguard/wg0.conf")
    assert steps[1] == SaveConfig("wg0", "/etc/wireguard/wg0.conf", cfg)


def test_down_removes_iptables_rules_only_where_there_are_some() -> None:
    running = RunningState(iptables_rules=frozenset({6}))
    steps = plan_down("wg0", config(""), running, path="x")
    assert BestEffort(DeleteIptablesRules(6, "wg0")) in steps
    assert BestEffort(DeleteIptablesRules(4, "wg0")) not in steps


# save ---------------------------------------------------------------------------------------------


def test_save_keeps_the_files_wg_quick_keys_and_takes_the_rest_from_the_running_interface() -> None:
    cfg = example("psk", "PostUp = echo %i", "SaveConfig = true")
    server = wgconfig.parse(f"[Peer]\nPublicKey = {SERVER_KEY}").peers[0].public_key
    device = DeviceState(
        private_key=cfg.interface.private_key,
        listen_port=51821,
        peers=[
            PeerState(server, allowed_ips=[net("198.19.8.0/24")], persistent_keepalive_interval=42)
        ],
    )
    addresses = [ipaddress.ip_interface("198.19.8.5/24"), ipaddress.ip_interface("fd00:8::5/64")]
    saved = saved_config(cfg, device, addresses, ["198.19.8.1"], ["corp.example"], 1300)
    assert wgconfig.serialize(saved) == (
        "[Interface]\n"
        "Address = 198.19.8.5/24\n"
        "Address = fd00:8::5/64\n"
        "DNS = 198.19.8.1\n"
        "DNS = corp.example\n"
        "MTU = 1300\n"
        "SaveConfig = true\n"
        "PostUp = echo %i\n"
        "ListenPort = 51821\n"
        f"PrivateKey = {PSK_CLIENT_KEY}\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {SERVER_KEY}\n"
        "AllowedIPs = 198.19.8.0/24\n"
        "PersistentKeepalive = 42\n"
    )


def test_save_writes_an_mtu_only_if_the_file_had_one() -> None:
    saved = saved_config(example("client-full"), DeviceState(), [], [], [], 1392)
    assert saved.interface.mtu is None


def test_rules_print_as_ip_rule_arguments() -> None:
    assert str(Rule(4, 51820, fwmark=51820, invert=True)) == "not fwmark 51820 table 51820"
    assert str(Rule(6, 254, suppress_prefixlength=0, priority=7)) == (
        "priority 7 table main suppress_prefixlength 0"
    )
