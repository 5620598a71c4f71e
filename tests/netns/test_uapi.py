"""The configuration protocol against a running wireguard-go in a network namespace: its replies
are what wgpy writes and parses, and it refuses what wgpy refuses, with the same errno."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wgpy import client, config, uapi
from wgpy.errors import UapiError

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


class WireguardGo:
    """A wireguard-go process serving one interface inside a network namespace of its own."""

    def __init__(self, namespace: str, interface: str, process: subprocess.Popen[bytes]) -> None:
        self.namespace, self.interface, self.process = namespace, interface, process

    def request(self, text: str) -> str:
        return client.exchange(self.interface, text)

    def wg(self, *args: str) -> str:
        command = ["ip", "netns", "exec", self.namespace, "wg", *args]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def wireguard_go() -> Iterator[WireguardGo]:
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    if not (shutil.which("wireguard-go") and shutil.which("wg") and shutil.which("ip")):
        pytest.skip("needs wireguard-go, wg and ip")
    namespace = f"wgpy-uapi-{os.getpid()}-{secrets.token_hex(3)}"
    interface = f"wgu{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    process = None
    try:
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "wireguard-go", "-f", interface],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        device = WireguardGo(namespace, interface, process)
        deadline = time.monotonic() + 10
        while not client.socket_path(interface).exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.skip("wireguard-go did not start")
            time.sleep(0.02)
        yield device
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        subprocess.run(["ip", "netns", "delete", namespace], check=True)


@pytest.mark.netns
def test_wireguard_go_get_reply_is_what_format_get_writes(wireguard_go: WireguardGo) -> None:
    parsed = config.parse(WG_CONF)
    update = config.to_device_update(parsed, lambda host, port: (host, port))
    assert wireguard_go.request(uapi.format_set(update)) == "errno=0\n\n"

    reply = wireguard_go.request("get=1\n\n")
    state = uapi.parse_get(reply)
    assert uapi.format_get(state) == reply
    assert config.from_device_state(state) == parsed


@pytest.mark.netns
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


@pytest.mark.netns
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
