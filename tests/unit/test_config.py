"""wg and wg-quick configuration files, read as wireguard-tools config.c and linux.bash do."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import addresses, keys32, ports, prefixes

from wgpy import config, uapi
from wgpy.config import Config, InterfaceConfig, PeerConfig
from wgpy.core import keys
from wgpy.core.endpoint import Endpoint
from wgpy.errors import ConfigError
from wgpy.uapi import DeviceState, DeviceUpdate, PeerState, PeerUpdate

net, ip, iface = ipaddress.ip_network, ipaddress.ip_address, ipaddress.ip_interface

PRIVATE = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
PUBLIC1 = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
PUBLIC2 = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
PSK = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="

WG_QUICK_CONF = f"""\
# wg0: a road warrior
[Interface]
Address = 198.18.0.1/24, fd00::1/64
Address = 198.18.1.1/24
DNS = 192.0.2.53, fd00::53, example.com corp.example
MTU = 1380
Table = off
PreUp = echo "bringing %i up" # a comment wg-quick keeps
PostDown = ip rule del table 42
SaveConfig = true
PrivateKey = {PRIVATE}
ListenPort = 51820 # the port
FwMark = 0x42

[Peer]
PublicKey = {PUBLIC1}
PresharedKey = {PSK}
AllowedIPs = 198.18.0.2/32, fd00::2/128
AllowedIPs = 192.0.2.0/24
Endpoint = [fd00::5]:51820
PersistentKeepalive = 25

[Peer]
PublicKey = {PUBLIC2}
Endpoint = vpn.example.com:51821
"""


def expected_config() -> Config:
    return Config(
        InterfaceConfig(
            private_key=keys.from_base64(PRIVATE),
            listen_port=51820,
            fwmark=0x42,
            address=[iface("198.18.0.1/24"), iface("fd00::1/64"), iface("198.18.1.1/24")],
            dns=[ip("192.0.2.53"), ip("fd00::53")],
            dns_search=["example.com", "corp.example"],
            mtu=1380,
            table="off",
            pre_up=['echo "bringing %i up" # a comment wg-quick keeps'],
            post_down=["ip rule del table 42"],
            save_config=True,
        ),
        [
            PeerConfig(
                public_key=keys.from_base64(PUBLIC1),
                preshared_key=keys.from_base64(PSK),
                allowed_ips=[net("198.18.0.2/32"), net("fd00::2/128"), net("192.0.2.0/24")],
                endpoint=Endpoint("fd00::5", 51820),
                persistent_keepalive=25,
            ),
            PeerConfig(
                public_key=keys.from_base64(PUBLIC2),
                endpoint=Endpoint("vpn.example.com", 51821),
            ),
        ],
    )


# Reading ------------------------------------------------------------------------------------------


def test_parse_reads_wg_and_wg_quick_keys() -> None:
    assert config.parse(WG_QUICK_CONF) == expected_config()


def test_sections_and_keys_are_case_insensitive() -> None:
    parsed = config.parse(
        f"[INTERFACE]\nprivatekey = {PRIVATE}\nmtu = 1400\nsaveconfig = TRUE\n"
        f"[peer]\npublickey={PUBLIC1}\nALLOWEDIPS=192.0.2.0/24"
    )
    assert parsed.interface.private_key == keys.from_base64(PRIVATE)
    assert parsed.interface.mtu == 1400
    assert parsed.interface.save_config
    assert parsed.peers[0].allowed_ips == [net("192.0.2.0/24")]


def test_wg_removes_all_whitespace_from_its_lines() -> None:
    parsed = config.parse(
        f"[ Interface ]\nListen Port = 5 1820\n[Peer]\nPublic Key = {PUBLIC1}\n"
        "Allowed IPs = 192.0.2.0 / 24 ,\tfd00::/8\r\nPersistent Keepalive = o f f"
    )
    assert parsed.interface.listen_port == 51820
    assert parsed.peers[0].allowed_ips == [net("192.0.2.0/24"), net("fd00::/8")]
    assert parsed.peers[0].persistent_keepalive == 0


def test_comments_and_blank_lines_are_ignored_but_hooks_keep_their_hash() -> None:
    parsed = config.parse(
        "# header\n\n[Interface] # the interface\n   \nPostUp = iptables -A x # y\n"
        "DNS = 192.0.2.1 # , example.com\n#ListenPort = 1\n"
    )
    assert parsed.interface.post_up == ["iptables -A x # y"]
    assert parsed.interface.dns == [ip("192.0.2.1")]
    assert parsed.interface.dns_search == []
    assert parsed.interface.listen_port is None


def test_repeated_scalar_keys_override_and_list_keys_grow() -> None:
    parsed = config.parse(
        "[Interface]\nListenPort = 1\nListenPort = 2\nPreUp = a\nPreUp = b\nMTU = 1\nMTU = 2\n"
        f"[Peer]\nPublicKey = {PUBLIC1}\nEndpoint = 192.0.2.1:1\nEndpoint = 192.0.2.2:2\n"
        "AllowedIPs = 192.0.2.0/24\nAllowedIPs = fd00::/8"
    )
    assert (parsed.interface.listen_port, parsed.interface.mtu) == (2, 2)
    assert parsed.interface.pre_up == ["a", "b"]
    assert parsed.peers[0].endpoint == Endpoint("192.0.2.2", 2)
    assert parsed.peers[0].allowed_ips == [net("192.0.2.0/24"), net("fd00::/8")]


def test_several_interface_sections_add_up_as_in_wg() -> None:
    parsed = config.parse("[Interface]\nListenPort = 1\n[Interface]\nFwMark = 2\n")
    assert (parsed.interface.listen_port, parsed.interface.fwmark) == (1, 2)


def test_dns_entries_are_servers_when_numeric_or_with_a_colon_and_search_domains_otherwise() -> (
    None
):
    parsed = config.parse("[Interface]\nDNS = 192.0.2.1,fd00::1 corp,  lan.example ,fe80::1%eth0")
    assert parsed.interface.dns == [ip("192.0.2.1"), ip("fd00::1"), ip("fe80::1%eth0")]
    assert parsed.interface.dns_search == ["corp", "lan.example"]


def test_empty_wg_quick_values_leave_settings_at_their_defaults() -> None:
    parsed = config.parse("[Interface]\nAddress =\nDNS =\nMTU =\nTable =\n")
    assert parsed.interface == InterfaceConfig()


@pytest.mark.parametrize(
    ("value", "fwmark"), [("off", 0), ("OFF", 0), ("0", 0), ("4660", 4660), ("0x1234", 0x1234)]
)
def test_fwmark_is_off_decimal_or_hexadecimal(value: str, fwmark: int) -> None:
    assert config.parse(f"[Interface]\nFwMark = {value}").interface.fwmark == fwmark


@pytest.mark.parametrize(
    ("value", "interval"), [("off", 0), ("Off", 0), ("0", 0), ("65535", 65535)]
)
def test_persistent_keepalive_is_off_or_seconds(value: str, interval: int) -> None:
    text = f"[Peer]\nPublicKey = {PUBLIC1}\nPersistentKeepalive = {value}"
    assert config.parse(text).peers[0].persistent_keepalive == interval


@pytest.mark.parametrize(
    ("value", "port"),
    [("51820", 51820), ("https", 443), ("70000", 70000 - 65536), ("65536", 0)],
)
def test_a_port_is_read_as_wg_reads_it_a_service_name_or_a_number_kept_to_16_bits(
    value: str, port: int
) -> None:
    # wireguard-tools' parse_port and parse_endpoint hand the port to getaddrinfo.
    text = f"[Interface]\nListenPort = {value}\n[Peer]\nPublicKey = {PUBLIC1}\nEndpoint = h:{value}"
    parsed = config.parse(text)
    assert (parsed.interface.listen_port, parsed.peers[0].endpoint) == (port, Endpoint("h", port))


def test_allowed_ips_without_mask_are_hosts_and_host_bits_are_masked_off() -> None:
    text = f"[Peer]\nPublicKey = {PUBLIC1}\nAllowedIPs = 192.0.2.7, fd00::7, 198.18.0.9/015"
    assert config.parse(text).peers[0].allowed_ips == [
        net("192.0.2.7/32"),
        net("fd00::7/128"),
        net("198.18.0.0/15"),
    ]


@pytest.mark.parametrize(
    ("value", "endpoint"),
    [
        ("192.0.2.1:51820", Endpoint("192.0.2.1", 51820)),
        ("[fd00::1]:51820", Endpoint("fd00::1", 51820)),
        ("fd00::1:51820", Endpoint("fd00::1", 51820)),  # wg cuts at the last colon
        ("vpn.example.com:1", Endpoint("vpn.example.com", 1)),
        ("[vpn.example.com]:1", Endpoint("vpn.example.com", 1)),
    ],
)
def test_endpoint_is_kept_unresolved(value: str, endpoint: Endpoint) -> None:
    text = f"[Peer]\nPublicKey = {PUBLIC1}\nEndpoint = {value}"
    assert config.parse(text).peers[0].endpoint == endpoint


def test_load_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "wg0.conf"
    path.write_text(WG_QUICK_CONF)
    assert config.load(path) == expected_config()
    path.write_text("[Interface]\nListenPort = x\n")
    with pytest.raises(ConfigError, match=f"^{path}:2: ListenPort: "):
        config.load(path)


# Errors -------------------------------------------------------------------------------------------

PEER = f"[Peer]\nPublicKey = {PUBLIC1}\n"


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("ListenPort = 1", 1, "ListenPort", "key outside a section"),
        ("Address = 198.18.0.1/24\n[Interface]", 1, "Address", "key outside a section"),
        ("[Interface]\nBogus = 1", 2, "Bogus", "unknown key in [Interface]"),
        ("[Interface]\nPrivateKey = " + PRIVATE + "\n[Peer]\nMTU = 1", 4, "MTU", "unknown key"),
        (PEER + "ListenPort = 1", 3, "ListenPort", "unknown key in [Peer]"),
        ("[Interfaces]", 1, "[Interfaces]", "unknown section"),
        ("[Interface]\nListenPort =", 2, "ListenPort", "missing value"),
        ("[Interface]\nListenPort", 2, "ListenPort", "missing value"),
        ("[Interface]\nMTU", 2, "MTU", "missing value"),
        ("[Interface]\nListenPort = -1", 2, "ListenPort", "`-1'"),
        ("[Interface]\nListenPort = nosuchservice", 2, "ListenPort", "`nosuchservice'"),
        ("[Interface]\nFwMark = 0x100000000", 2, "FwMark", "neither off nor a number"),
        ("[Interface]\nFwMark = 0X10", 2, "FwMark", "neither off nor a number"),
        ("[Interface]\nFwMark = on", 2, "FwMark", "neither off nor a number"),
        ("[Interface]\nPrivateKey = abc=", 2, "PrivateKey", "44 characters"),
        ("[Interface]\nPrivateKey = " + PRIVATE[:42] + "n=", 2, "PrivateKey", "canonical"),
        ("[Interface]\nMTU = 0", 2, "MTU", "not a number in 1-65535"),
        ("[Interface]\nMTU = auto", 2, "MTU", "not a number"),
        ("[Interface]\nSaveConfig = yes", 2, "SaveConfig", "neither true nor false"),
        ("[Interface]\nAddress = 198.18.0.1/33", 2, "Address", "198.18.0.1/33"),
        ("[Interface]\nDNS = 192.0.2.300", 2, "DNS", "192.0.2.300"),
        (PEER + "PublicKey = nope", 3, "PublicKey", "44 characters"),
        (PEER + "PresharedKey = " + PRIVATE[1:], 3, "PresharedKey", "44 characters"),
        (PEER + "AllowedIPs = 192.0.2.0/33", 3, "AllowedIPs", "not a number in 0-32"),
        (PEER + "AllowedIPs = fd00::/129", 3, "AllowedIPs", "not a number in 0-128"),
        (PEER + "AllowedIPs = 192.0.2.0/", 3, "AllowedIPs", "not a number"),
        (PEER + "AllowedIPs = 192.0.2.0/24,", 3, "AllowedIPs", "''"),
        (PEER + "AllowedIPs = 192.0.2.256/32", 3, "AllowedIPs", "192.0.2.256"),
        (PEER + "AllowedIPs = fe80::%eth0/64", 3, "AllowedIPs", "not an IP address"),
        (PEER + "Endpoint = 192.0.2.1", 3, "Endpoint", "not host:port"),
        (PEER + "Endpoint = 192.0.2.1:", 3, "Endpoint", "not host:port"),
        (PEER + "Endpoint = :51820", 3, "Endpoint", "not host:port"),
        (PEER + "Endpoint = [fd00::1:51820", 3, "Endpoint", "no matching ']'"),
        (PEER + "Endpoint = [fd00::1]51820", 3, "Endpoint", "not host:port"),
        (PEER + "Endpoint = 192.0.2.1:nosuchservice", 3, "Endpoint", "`nosuchservice'"),
        (PEER + "PersistentKeepalive = 65536", 3, "PersistentKeepalive", "not a number"),
        (PEER + "PersistentKeepalive = on", 3, "PersistentKeepalive", "not a number"),
        ("[Peer]\nAllowedIPs = 192.0.2.0/24", 1, "PublicKey", "peer has no PublicKey"),
        (PEER + "[Peer]\n\nPublicKey = " + PUBLIC1, 5, "PublicKey", "duplicate peer public key"),
    ],
)
def test_every_error_names_file_line_and_key(text: str, line: int, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(text, file="wg0.conf")
    error = caught.value
    assert (error.file, error.line, error.key) == ("wg0.conf", line, key)
    assert str(error).startswith(f"wg0.conf:{line}: {key}: ")
    assert message in str(error)


def test_a_missing_private_key_is_left_unset_for_a_hook_to_set_as_wg_quick_allows() -> None:
    # wg-quick(8): `PostUp = wg set %i private-key <(pass ...)` keys a tunnel from a secret store.
    text = "[Interface]\nPostUp = wg set %i private-key <(pass wg0)\n" + PEER
    parsed = config.parse(text)
    assert parsed.interface.private_key is None
    assert config.to_device_update(parsed, _no_names, append=True).private_key is None


def _no_names(host: str, port: int) -> tuple[str, int]:
    raise AssertionError("nothing to resolve")


@pytest.mark.parametrize("line", ["; a comment", ";PrivateKey = " + PRIVATE])
def test_a_line_starting_with_a_semicolon_is_refused_as_wg_refuses_it(line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(f"[Interface]\n{line}\n", file="wg0.conf")
    assert str(caught.value) == ("wg0.conf:2: Line unrecognized: comments start with '#', not ';'")


def test_a_file_that_is_not_utf8_is_an_error_on_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    # Found by fuzzing (benchmarks/hardening/fuzz_config.py): the error carried no line.
    path = tmp_path / "wg0.conf"
    path.write_bytes(b"[Interface]\nListenPort = 1\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        config.load(path)
    assert (caught.value.file, caught.value.line) == (str(path), 3)


def test_load_ends_lines_at_newlines_only_as_wg_does(tmp_path: Path) -> None:
    path = tmp_path / "wg0.conf"
    path.write_bytes(b"[Interface]\r\nListenPort = 1\r\nFwMark = 0x1\rListenPort = 2\n")
    with pytest.raises(ConfigError) as caught:  # "0x1ListenPort=2" after removing the spaces
        config.load(path)
    assert (caught.value.line, caught.value.key) == (3, "FwMark")


@pytest.mark.parametrize("endpoint", ["=[fd00::1]:1", "a[b:1", "a]b:1", "[[fd00::1]]:1"])
def test_an_endpoint_host_with_a_bracket_is_rejected(endpoint: str) -> None:
    # Found by fuzzing: "=[fd00::1]" was taken as a host name, and written back as
    # "[=[fd00::1]]:1", which does not read back.
    text = f"[Peer]\nPublicKey = {PUBLIC1}\nEndpoint = {endpoint}\n"
    with pytest.raises(ConfigError) as caught:
        config.parse(text, file="wg0.conf")
    assert (caught.value.line, caught.value.key) == (3, "Endpoint")


# Writing ------------------------------------------------------------------------------------------


# What wg itself reads of expected_config(), after the [Interface] line: `wg showconf`'s part.
WG_PART = (
    "ListenPort = 51820\n"
    "FwMark = 0x42\n"
    f"PrivateKey = {PRIVATE}\n"
    "\n"
    "[Peer]\n"
    f"PublicKey = {PUBLIC1}\n"
    f"PresharedKey = {PSK}\n"
    "AllowedIPs = 198.18.0.2/32, fd00::2/128, 192.0.2.0/24\n"
    "Endpoint = [fd00::5]:51820\n"
    "PersistentKeepalive = 25\n"
    "\n"
    "[Peer]\n"
    f"PublicKey = {PUBLIC2}\n"
    "Endpoint = vpn.example.com:51821\n"
)


def test_serialize_writes_what_wg_quick_save_writes() -> None:
    assert config.serialize(expected_config()) == (
        "[Interface]\n"
        "Address = 198.18.0.1/24\n"
        "Address = fd00::1/64\n"
        "Address = 198.18.1.1/24\n"
        "DNS = 192.0.2.53\n"
        "DNS = fd00::53\n"
        "DNS = example.com\n"
        "DNS = corp.example\n"
        "MTU = 1380\n"
        "Table = off\n"
        "SaveConfig = true\n"
        'PreUp = echo "bringing %i up" # a comment wg-quick keeps\n'
        "PostDown = ip rule del table 42\n" + WG_PART
    )


def test_strip_keeps_only_what_wg_understands() -> None:
    assert config.strip(expected_config()) == "[Interface]\n" + WG_PART


def test_explicit_off_values_are_written_as_off() -> None:
    parsed = config.parse("[Interface]\nFwMark = 0\n" + PEER + "PersistentKeepalive = 0")
    assert "FwMark = off\n" in config.serialize(parsed)
    assert "PersistentKeepalive = off\n" in config.serialize(parsed)


def test_secrets_do_not_appear_in_repr() -> None:
    text = repr(expected_config())
    assert "private_key" not in text
    assert "preshared_key" not in text


interfaces = st.builds(
    lambda address, bits: ipaddress.ip_interface((address, bits % (address.max_prefixlen + 1))),
    addresses,
    st.integers(0, 128),
)
hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z]{2,6}){0,2}", fullmatch=True)
commands = st.text(st.characters(min_codepoint=32, max_codepoint=126)).map(str.strip)
hooks = st.lists(commands, max_size=2)

configs = st.builds(
    Config,
    interface=st.builds(
        InterfaceConfig,
        private_key=st.none() | keys32,
        listen_port=st.none() | ports,
        fwmark=st.none() | st.integers(0, 2**32 - 1),
        address=st.lists(interfaces, max_size=3),
        dns=st.lists(addresses, max_size=3),
        dns_search=st.lists(hostnames, max_size=2),
        mtu=st.none() | st.integers(1, 65535),
        table=st.none() | st.from_regex(r"[A-Za-z0-9_]{1,10}", fullmatch=True),
        pre_up=hooks,
        post_up=hooks,
        pre_down=hooks,
        post_down=hooks,
        save_config=st.booleans(),
    ),
    peers=st.lists(
        st.builds(
            PeerConfig,
            public_key=keys32,
            preshared_key=st.none() | keys32,
            allowed_ips=st.lists(prefixes, max_size=4),
            endpoint=st.none() | st.builds(Endpoint, hostnames | addresses.map(str), ports),
            persistent_keepalive=st.none() | ports,
        ),
        max_size=3,
        unique_by=lambda peer: peer.public_key,
    ),
)


@given(configs)
def test_serialize_round_trips(original: Config) -> None:
    text = config.serialize(original)
    assert config.parse(text) == original
    assert config.serialize(config.parse(text)) == text


@given(configs)
def test_strip_is_the_wg_part_of_the_configuration(original: Config) -> None:
    stripped = config.parse(config.strip(original))
    wg_only = InterfaceConfig(
        private_key=original.interface.private_key,
        listen_port=original.interface.listen_port,
        fwmark=original.interface.fwmark,
    )
    assert stripped == Config(wg_only, original.peers)


# To and from a device -----------------------------------------------------------------------------


def fake_resolve(host: str, port: int) -> tuple[str, int]:
    return {"vpn.example.com": "192.0.2.80"}.get(host, host), port


def test_setconf_replaces_peers_and_resets_what_the_file_leaves_out() -> None:
    parsed = config.parse(f"[Interface]\n[Peer]\nPublicKey = {PUBLIC2}\nEndpoint = [fd00::9]:1")
    assert config.to_device_update(parsed, fake_resolve) == DeviceUpdate(
        private_key=uapi.ZERO_KEY,
        listen_port=0,
        fwmark=0,
        replace_peers=True,
        peers=[
            PeerUpdate(
                keys.from_base64(PUBLIC2),
                endpoint=Endpoint("fd00::9", 1),
                replace_allowed_ips=True,
            )
        ],
    )


def test_to_device_update_resolves_endpoints_and_clamps_the_private_key() -> None:
    update = config.to_device_update(expected_config(), fake_resolve)
    assert update.private_key == keys.clamp(keys.from_base64(PRIVATE))
    assert (update.listen_port, update.fwmark, update.replace_peers) == (51820, 0x42, True)
    assert update.peers == [
        PeerUpdate(
            keys.from_base64(PUBLIC1),
            preshared_key=keys.from_base64(PSK),
            endpoint=Endpoint("fd00::5", 51820),
            persistent_keepalive_interval=25,
            replace_allowed_ips=True,
            allowed_ips=[net("198.18.0.2/32"), net("fd00::2/128"), net("192.0.2.0/24")],
        ),
        PeerUpdate(
            keys.from_base64(PUBLIC2),
            endpoint=Endpoint("192.0.2.80", 51821),
            replace_allowed_ips=True,
        ),
    ]


def test_addconf_leaves_peers_and_unset_interface_keys_alone() -> None:
    parsed = config.parse(f"[Interface]\nListenPort = 7\n{PEER}")
    update = config.to_device_update(parsed, fake_resolve, append=True)
    assert (update.private_key, update.fwmark, update.replace_peers) == (None, None, False)
    assert update.listen_port == 7
    assert update.peers == [PeerUpdate(keys.from_base64(PUBLIC1), replace_allowed_ips=True)]


def test_an_endpoint_that_does_not_resolve_is_an_error_at_its_line() -> None:
    text = f"[Interface]\n{PEER}AllowedIPs = 192.0.2.2/32\nEndpoint = vpn.invalid:1\n"
    parsed = config.parse(text)

    def unresolvable(host: str, port: int) -> tuple[str, int]:
        raise ValueError(f"Name or service not known: `{host}:{port}'")

    with pytest.raises(ConfigError) as caught:
        config.to_device_update(parsed, unresolvable, file="wg0.conf")
    assert (caught.value.file, caught.value.line, caught.value.key) == ("wg0.conf", 5, "Endpoint")
    assert "vpn.invalid:1" in str(caught.value)


def test_from_device_state_leaves_out_what_showconf_leaves_out() -> None:
    state = DeviceState(
        private_key=keys.from_base64(PRIVATE),
        listen_port=0,
        fwmark=0,
        peers=[
            PeerState(
                public_key=keys.from_base64(PUBLIC1),
                preshared_key=uapi.ZERO_KEY,
                endpoint=Endpoint("192.0.2.1", 51820),
                last_handshake_time=(1700000000, 5),
                tx_bytes=10,
                persistent_keepalive_interval=0,
                allowed_ips=[net("192.0.2.0/24")],
            )
        ],
    )
    assert config.from_device_state(state) == Config(
        InterfaceConfig(private_key=keys.from_base64(PRIVATE)),
        [
            PeerConfig(
                keys.from_base64(PUBLIC1),
                allowed_ips=[net("192.0.2.0/24")],
                endpoint=Endpoint("192.0.2.1", 51820),
            )
        ],
    )


def test_wg_only_parsing_refuses_wg_quick_keys_as_wg_setconf_does() -> None:
    text = f"[Interface]\nPrivateKey = {PRIVATE}\nAddress = 10.0.0.1/24\n"
    assert config.parse(text).interface.address
    with pytest.raises(ConfigError, match=r"wg0.conf:3: Address: unknown key"):
        config.parse(text, file="wg0.conf", wg_only=True)
