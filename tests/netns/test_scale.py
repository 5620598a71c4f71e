"""A server with many peers, through the real wg(8) and the configuration socket: a set far
larger than the 1 MiB the socket once took whole, applied as it streams, and listed back."""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
from collections.abc import Callable, Iterator

import pytest
from peers import WGPY, hex_key, parse_dump, start_serving, unless_standing_in

from wgpy import client
from wgpy.lab.netns import Namespace, unique_ifname

PEERS = 10_000


def peer_section(key: str, index: int) -> str:
    """A peer as a server holds one: an endpoint, a keepalive, an IPv4 and an IPv6 address."""
    return (
        f"[Peer]\nPublicKey = {key}\nEndpoint = 198.18.{index >> 8}.{index & 255}:51820\n"
        f"PersistentKeepalive = 25\nAllowedIPs = {ipv4(index)}, {ipv6(index)}\n"
    )


def ipv4(index: int) -> str:
    return f"{ipaddress.IPv4Address((10 << 24) + index)}/32"


def ipv6(index: int) -> str:
    return f"{ipaddress.IPv6Address((0xFD00 << 112) + index)}/128"


@pytest.fixture
def server(netns: Namespace) -> Iterator[str]:
    """wgpy serving a new interface in `netns`; yields its name."""
    ifname = unique_ifname()
    process = start_serving(netns, WGPY, ifname)
    try:
        yield ifname
    finally:
        netns.stop(process)


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return [base64.b64encode(os.urandom(32)).decode() for _ in range(PEERS)]


@pytest.mark.netns("wg")
def test_wg_setconf_of_10000_peers_is_applied_and_wg_show_dump_lists_them_all(
    netns: Namespace, server: str, keys: list[str]
) -> None:
    config = "[Interface]\nListenPort = 51820\n" + "".join(
        peer_section(key, index) for index, key in enumerate(keys)
    )
    assert len(config) > 1 << 20

    netns.run("wg", "setconf", server, "/dev/stdin", input=config)

    listed = parse_dump(netns.run("wg", "show", server, "dump").stdout).peers
    assert set(listed) == set(keys)
    for index, key in enumerate(keys):
        peer = listed[key]
        assert peer.allowed_ips == {ipv4(index), ipv6(index)}
        assert peer.endpoint == f"198.18.{index >> 8}.{index & 255}:51820"
        assert peer.persistent_keepalive == "25"


def long_set(keys: list[str]) -> list[str]:
    """The lines of a `set` of every key, each peer with an endpoint and an allowed IP, after a
    device line: over 1 MiB in all."""
    return ["set=1\n", "listen_port=51820\n"] + [
        f"public_key={hex_key(key)}\nendpoint=198.18.0.1:51820\nallowed_ip={ipv4(n)}\n"
        for n, key in enumerate(keys)
    ]


def with_a_bad_line(server: str, lines: list[str], share: float) -> bytes:
    """Send `lines` with a bad value at `share` of them (after the first peer's key at least)."""
    lines.insert(max(3, round(len(lines) * share)), "allowed_ip=10.0.0.300/32\n")
    return client.exchange(server, "".join(lines) + "\n").encode()


def cut_short(server: str, lines: list[str], share: float) -> bytes:
    """Send `share` of the bytes of `lines`, mostly ending inside a line, and hang up."""
    request = "".join(lines).encode()
    with client.connect(server) as sock:
        sock.sendall(request[: round(len(request) * share)])
        sock.shutdown(socket.SHUT_WR)  # gone before the set's empty line
        return b"".join(iter(lambda: sock.recv(65536), b""))


@pytest.mark.netns("wg")
@unless_standing_in("applies a set line by line and keeps the lines before the fault")
@pytest.mark.parametrize("share", [0.0001, 0.5, 0.9999], ids=["start", "middle", "end"])
@pytest.mark.parametrize(
    ("spoil", "reply"),
    [(with_a_bad_line, b"errno=-22\n\n"), (cut_short, b"errno=-71\n\n")],  # EINVAL, EPROTO
    ids=["bad-line", "cut-short"],
)
def test_a_long_set_spoilt_anywhere_applies_nothing_and_the_daemon_serves_on(
    netns: Namespace,
    server: str,
    keys: list[str],
    share: float,
    spoil: Callable[[str, list[str], float], bytes],
    reply: bytes,
) -> None:
    lines = long_set(keys)
    assert len("".join(lines)) > 1 << 20
    before = netns.run("wg", "showconf", server).stdout

    assert spoil(server, lines, share) == reply

    assert netns.run("wg", "showconf", server).stdout == before, "nothing applied, and it serves"
