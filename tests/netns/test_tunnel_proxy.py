"""`wgpy proxy --stack userspace` is rootless as the issue means it: the process serving the
proxy lab's traffic through wgpy.tunnel (tests/netns/test_proxy.py runs its behaviour over both
stacks) is uid 65534 with no capability at all, in a namespace with no TUN."""

from __future__ import annotations

from pathlib import Path

import pytest

from wgpy.lab.proxy import rootless_lab

pytestmark = pytest.mark.netns("wireguard-go", "wg", "curl", "dnsmasq", "setpriv", "nft", "ss")

SOCKS = 1080


def test_the_userspace_proxy_runs_as_nobody_with_no_capability_beside_no_tun() -> None:
    with rootless_lab() as lab:
        proxy = lab.start_proxy("--socks5", str(SOCKS))
        try:
            links = lab.client.run("ip", "-brief", "link").stdout.splitlines()
            status = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{proxy.pid}/status").read_text().splitlines()
            )
        finally:
            lab.client.stop(proxy)

    assert sorted(line.split()[0].partition("@")[0] for line in links) == ["lo", "veth0"]
    assert status["Uid"].split() == ["65534"] * 4
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == int(status["CapBnd"], 16) == 0
