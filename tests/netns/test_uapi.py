"""The configuration protocol against a running wireguard-go in a network namespace: its replies
are what wgpy writes and parses, and it refuses what wgpy refuses, with the same errno."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from wgpy import client, config, uapi
from wgpy.errors import UapiError
from wgpy.lab.netns import Namespace, start_wireguard_go, unique_ifname

# A key from the example on https://www.wireguard.com/xplatform/.
PEER1_HEX = "b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33"

WG_CONF = """\
[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
ListenPort = 51820
FwMark = 0x10

[Peer]
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
PresharedKey = FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=
AllowedIPs = 198.18.0.2/32, fd00::2/128, 192.0.2.0/24, ::ffff:198.18.0.0/112
Endpoint = [fd00::5]:51820
PersistentKeepalive = 25
"""


pytestmark = pytest.mark.netns("wireguard-go", "wg")


@dataclass(frozen=True)
class WireguardGo:
    """A wireguard-go process serving one interface inside a network namespace of its own."""

    ns: Namespace
    interface: str

    def request(self, text: str) -> str:
        return client.exchange(self.interface, text)

    def wg(self, *args: str) -> str:
        return self.ns.run("wg", *args).stdout


@pytest.fixture
def wireguard_go(netns: Namespace) -> WireguardGo:
    """Ended with its namespace; one that does not start fails the test with what it printed."""
    interface = unique_ifname("wgu")
    start_wireguard_go(netns, interface)
    return WireguardGo(netns, interface)


def test_wireguard_go_get_reply_is_what_format_get_writes(wireguard_go: WireguardGo) -> None:
    parsed = config.parse(WG_CONF)
    update = config.to_device_update(parsed, lambda host, port: (host, port))
    assert wireguard_go.request(uapi.format_set(update)) == "errno=0\n\n"

    reply = wireguard_go.request("get=1\n\n")
    state = uapi.parse_get(reply)
    assert uapi.format_get(state) == reply
    assert config.from_device_state(state) == parsed


def test_wg_setconf_and_showconf_agree_with_strip_and_serialize(
    wireguard_go: WireguardGo, tmp_path: Path
) -> None:
    conf = tmp_path / "wg0.conf"
    conf.write_text(config.strip(config.parse(WG_CONF)))
    wireguard_go.wg("setconf", wireguard_go.interface, str(conf))

    shown = wireguard_go.wg("showconf", wireguard_go.interface)
    state = uapi.parse_get(wireguard_go.request("get=1\n\n"))
    assert config.serialize(config.from_device_state(state)) == shown
    assert config.parse(shown) == config.parse(WG_CONF)


@pytest.mark.parametrize(
    "lines",
    [
        ["listen_port=x"],
        ["bogus=1"],
        ["public_key=abc"],
        [f"public_key={PEER1_HEX}", "endpoint=example.com:1"],
        [f"public_key={PEER1_HEX}", "allowed_ip=192.0.2.0"],
        [f"public_key={PEER1_HEX}", "protocol_version=2"],
        ["oops"],
    ],
)
def test_wireguard_go_answers_a_bad_set_with_the_errno_parse_set_raises(
    wireguard_go: WireguardGo, lines: list[str]
) -> None:
    with pytest.raises(UapiError) as caught:
        uapi.parse_set(lines)
    reply = wireguard_go.request("set=1\n" + "".join(f"{line}\n" for line in lines) + "\n")
    assert reply == uapi.format_errno(caught.value.errno)
