"""`wgpy proxy --stack userspace`: the proxy on wgpy.tunnel, run as uid 65534 with every
capability dropped in a client namespace with no TUN, through wireguard-go to the proxy lab's
services (wgpy/lab/proxy.py: HTTP, echo and dnsmasq on Linux's own stack, behind the server).
curl fetches by name through SOCKS5 and through the HTTP proxy, the name resolved by dnsmasq
through the tunnel."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from wgpy.lab.netns import (
    STARTUP_TIMEOUT,
    WG_PORT,
    Namespace,
    configured_daemon,
    join,
    namespace,
    one_peer_config,
    unique_ifname,
    wait_until,
    wg_genkey,
)
from wgpy.lab.proxy import (
    HTTP_PORT,
    SERVICE_NAME,
    SERVICE_V4,
    SERVICE_V6,
    UNPRIVILEGED,
    ProxyLab,
    listening,
    proxy_lab,
)

pytestmark = pytest.mark.netns("wireguard-go", "wg", "curl", "dnsmasq", "setpriv", "nft", "ss")

SOCKS, HTTP = 1080, 3128
SERVER, CLIENT = "192.0.2.1", "192.0.2.2"
FILE_SIZE = 16 << 20


class Rootless(NamedTuple):
    lab: ProxyLab  # the server's namespace, with the services
    client: Namespace  # where the proxy and curl run
    proxy: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def rootless() -> Iterator[Rootless]:
    """The proxy lab's namespace as the server, wireguard-go on it, and a client namespace
    joined to it by a veth pair, running `wgpy proxy --stack userspace` as nobody."""
    server, client = wg_genkey(), wg_genkey()
    with proxy_lab() as lab, namespace("wgpystack17") as client_ns:
        join(lab.ns, client_ns)
        wg = one_peer_config(server.private, client.public, f"{CLIENT}/32")
        with configured_daemon(lab.ns, ("wireguard-go",), unique_ifname("wgs"), wg, f"{SERVER}/24"):
            config = lab.files / "rootless.conf"
            config.write_text(
                f"[Interface]\nPrivateKey = {client.private}\nAddress = {CLIENT}/32\n"
                f"DNS = {SERVICE_V4}\n\n[Peer]\nPublicKey = {server.public}\n"
                f"AllowedIPs = {SERVER}/32, {SERVICE_V4}/32, {SERVICE_V6}/128\n"
                f"Endpoint = {lab.ns.ipv4}:{WG_PORT}\n"
            )
            config.chmod(0o644)  # a test key, for nobody to read
            proxy = client_ns.popen(
                *UNPRIVILEGED, sys.executable, "-m", "wgpy.cli.wgpy", "proxy", str(config),
                "--stack", "userspace", "--socks5", str(SOCKS), "--http", str(HTTP),
            )  # fmt: skip
            up = wait_until(
                lambda: proxy.poll() is not None or listening(client_ns, (SOCKS, HTTP)),
                STARTUP_TIMEOUT,
            )
            assert up and proxy.poll() is None, "wgpy proxy --stack userspace did not start"
            yield Rootless(lab, client_ns, proxy)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("name", "proxy_option"),
    [("socks5", ("--socks5-hostname", f"127.0.0.1:{SOCKS}")),
     ("http", ("--proxy", f"http://127.0.0.1:{HTTP}"))],
)  # fmt: skip
def test_curl_fetches_a_file_by_name_through_the_rootless_proxy_intact(
    rootless: Rootless, name: str, proxy_option: tuple[str, str]
) -> None:
    served = rootless.lab.serve_file(f"rootless-{name}.bin", FILE_SIZE)
    fetched = rootless.lab.files / f"rootless-{name}.fetched"
    rootless.client.run(
        "curl", "--silent", "--show-error", "--fail", "--max-time", "120", *proxy_option,
        f"http://{SERVICE_NAME}:{HTTP_PORT}/{served.name}", "-o", str(fetched),
    )  # fmt: skip
    assert sha256(fetched) == sha256(served)


def test_the_proxy_runs_as_nobody_with_no_capability_beside_no_tun(rootless: Rootless) -> None:
    links = rootless.client.run("ip", "-brief", "link").stdout.splitlines()
    assert sorted(line.split()[0].partition("@")[0] for line in links) == ["lo", "veth0"]
    status = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{rootless.proxy.pid}/status").read_text().splitlines()
    )
    assert status["Uid"].split() == ["65534"] * 4
    assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0
