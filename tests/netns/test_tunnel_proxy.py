"""`wgpy proxy --stack userspace` is rootless as the issue means it: the process serving the
proxy lab's traffic through wgpy.tunnel (tests/netns/test_proxy.py runs its behaviour over both
stacks) is uid 65534 with no capability at all, in a namespace with no TUN. Through it, every
byte survives a lossy outer path, and the same transfers give the same bytes as wgpy's TUN mode."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from wgpy.lab.netns import drop_share, dropped, wait_until
from wgpy.lab.proxy import (
    HTTP_PORT,
    SERVICE_NAME,
    SERVICE_V4,
    TCP_ECHO,
    ProxyLab,
    rootless_lab,
    socks5_open,
    tun_mode,
)
from wgpy.proxy.relay import close_quietly

pytestmark = pytest.mark.netns("wireguard-go", "wg", "curl", "dnsmasq", "setpriv", "nft", "ss")

SOCKS = 1080
FILE_SIZE = 32 << 20


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


def fetch(lab: ProxyLab, path: Path, *proxy_option: str, host: str = SERVICE_NAME) -> str:
    """The sha256 of the lab's file at `path` fetched by curl from `host` (through
    `proxy_option`, if any)."""
    lab.client.run(*curl(lab, path, *proxy_option, host=host))
    return sha256(fetched_path(lab, path))


def curl(lab: ProxyLab, path: Path, *options: str, host: str = SERVICE_NAME) -> list[str]:
    """curl's command line to fetch the lab's file at `path` from `host` to fetched_path."""
    url = f"http://{host}:{HTTP_PORT}/{path.name}"
    return ["curl", "--silent", "--show-error", "--fail", "--max-time", "120", *options, url,
            "-o", str(fetched_path(lab, path))]  # fmt: skip


def fetched_path(lab: ProxyLab, path: Path) -> Path:
    return lab.files / f"{path.name}.fetched"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_byte_comes_through_the_proxy_with_five_percent_of_the_outer_datagrams_lost() -> None:
    with rootless_lab() as lab:
        served = lab.serve_file("lossy.bin", FILE_SIZE)
        proxy = lab.start_proxy("--socks5", str(SOCKS))
        try:
            drop_share(lab.client, 5)
            fetched = fetch(lab, served, "--socks5-hostname", f"127.0.0.1:{SOCKS}")
            lost = dropped(lab.client)
        finally:
            lab.client.stop(proxy)
        assert fetched == sha256(served)

    assert len(lost) == 2 and lost[0] > 0 and lost[1] > 100  # out (ACKs), in (the data)


def test_the_proxy_and_tun_mode_carry_the_same_bytes() -> None:
    """The differential test: one server, the same transfers through `wgpy proxy`'s user-space
    stack and through wgpy on a TUN (Linux's stack), each a peer of the server's."""
    payload = random.Random(17).randbytes(1 << 20)
    with rootless_lab() as lab:
        served = lab.serve_file("same.bin", FILE_SIZE)
        proxy = lab.start_proxy("--socks5", str(SOCKS))
        try:
            through_proxy = (
                fetch(lab, served, "--socks5", f"127.0.0.1:{SOCKS}", host=SERVICE_V4),
                echo(lab, payload, socks5=True),
            )
        finally:
            lab.client.stop(proxy)
        with tun_mode(lab):
            through_tun = fetch(lab, served, host=SERVICE_V4), echo(lab, payload, socks5=False)
        assert through_proxy == through_tun == (sha256(served), payload)


def echo(lab: ProxyLab, payload: bytes, *, socks5: bool) -> bytes:
    """`payload` sent to the lab's TCP echo service and read back: through the proxy's SOCKS5
    CONNECT, or straight (routed through the TUN)."""

    async def exchange() -> bytes:
        if socks5:
            reader, writer, _ = await socks5_open(("127.0.0.1", SOCKS), SERVICE_V4, TCP_ECHO)
        else:
            reader, writer = await asyncio.open_connection(SERVICE_V4, TCP_ECHO)
        writer.write(payload)
        back = await reader.readexactly(len(payload))
        await close_quietly(writer)
        return back

    with lab.client.entered():
        return asyncio.run(exchange())


def test_a_transfer_through_the_proxy_survives_a_server_restart_midway() -> None:
    """wireguard-go restarts with a quarter of the file through: its sessions are gone, it makes
    a new handshake to the proxy's endpoint, and both TCPs' retransmissions carry on."""
    with rootless_lab() as lab:
        assert lab.server is not None
        served = lab.serve_file("restart.bin", FILE_SIZE)
        fetched = fetched_path(lab, served)
        proxy = lab.start_proxy("--socks5", str(SOCKS))
        try:
            options = "--socks5-hostname", f"127.0.0.1:{SOCKS}", "--limit-rate", "8M"
            fetching = lab.client.popen(*curl(lab, served, *options))
            quarter = wait_until(
                lambda: fetched.exists() and fetched.stat().st_size > FILE_SIZE // 4, 60
            )
            at_restart = fetched.stat().st_size
            lab.server.restart()
            assert quarter and fetching.wait(120) == 0
            after = lab.ns.run("wg", "show", lab.server.ifname).stdout
        finally:
            lab.client.stop(proxy)
        assert at_restart < FILE_SIZE and sha256(fetched) == sha256(served)
    assert "latest handshake" in after  # the new process's session with the proxy
