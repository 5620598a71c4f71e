"""wgpy.tunnel end to end in one process: two tunnels, peers of each other over 127.0.0.1, each
with its own user-space stack. No root, no TUN: the rootless path as a Python program uses it."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from tunnels import A4, A6, B4, B6, Collect, DnsZone, UdpEcho, config_text, tunnel_pair

from wgpy import tunnel
from wgpy.core.keys import generate_private_key
from wgpy.errors import ConfigError

T = TypeVar("T")
TIMEOUT = 10.0


def run(test: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(test(), TIMEOUT))


@pytest.mark.parametrize("address", [B4, B6], ids=["ipv4", "ipv6"])
def test_a_ping_through_the_tunnel_is_answered_by_the_peers_stack(address: str) -> None:
    async def test() -> list[float]:
        async with tunnel_pair() as (a, _):
            return [await a.ping(address) for _ in range(3)]

    rtts = run(test)
    assert all(0 < rtt < TIMEOUT for rtt in rtts)


@pytest.mark.parametrize(("server", "client"), [(B4, A4), (B6, A6)], ids=["ipv4", "ipv6"])
def test_udp_datagrams_echo_through_the_tunnel_from_the_right_addresses(
    server: str, client: str
) -> None:
    async def test() -> tuple[list[object], tuple[str, int]]:
        async with tunnel_pair() as (a, b):
            await b.create_datagram_endpoint(UdpEcho, local_addr=("::", 7))
            transport, collect = await a.create_datagram_endpoint(Collect, remote_addr=(server, 7))
            for size in (1, 500, 1300):
                transport.sendto(bytes([size % 256]) * size)
            got = [await collect.queue.get() for _ in range(3)]
            return got, transport.get_extra_info("sockname")

    got, sockname = run(test)
    assert got == [(bytes([n % 256]) * n, (server, 7)) for n in (1, 500, 1300)]
    assert sockname[0] == client


def test_a_datagram_to_a_closed_port_comes_back_as_connection_refused() -> None:
    async def test() -> object:
        async with tunnel_pair() as (a, _):
            transport, collect = await a.create_datagram_endpoint(Collect, remote_addr=(B4, 9))
            transport.sendto(b"anyone?")
            return await collect.queue.get()

    error = run(test)
    assert isinstance(error, ConnectionRefusedError)


def test_names_resolve_through_the_tunnel_to_the_dns_server_of_the_config() -> None:
    zone = {"intranet.test": ["198.18.17.80", "fd00:17::80"]}

    async def test() -> tuple[list[str], BaseException]:
        async with tunnel_pair(dns_on_b=True) as (a, b):
            await b.create_datagram_endpoint(lambda: DnsZone(zone), local_addr=("::", 53))
            found = await a.resolve("intranet.test")
            with pytest.raises(socket.gaierror) as missing:
                await a.resolve("nowhere.test")
            return found, missing.value

    found, missing = run(test)
    assert sorted(found) == sorted(zone["intranet.test"])
    assert missing.errno == socket.EAI_NONAME


def test_an_ip_literal_resolves_to_itself_without_a_query() -> None:
    async def test() -> list[str]:
        async with tunnel_pair() as (a, _):
            return await a.resolve("fd00:17:0::2")

    assert run(test) == ["fd00:17::2"]


def test_a_config_file_path_opens_as_its_text_does(tmp_path: Path) -> None:
    key = generate_private_key(os.urandom)
    path = tmp_path / "wg0.conf"
    path.write_text(config_text(key, (A4, A6), generate_private_key(os.urandom), (B4, B6)))

    async def test() -> int:
        async with tunnel.open(path) as t:
            return t.listen_port

    assert run(test) > 0


def test_a_config_without_address_is_an_error_naming_the_key() -> None:
    text = config_text(
        generate_private_key(os.urandom), (A4, A6), generate_private_key(os.urandom), (B4, B6)
    )
    text = "\n".join(line for line in text.splitlines() if not line.startswith("Address"))
    with pytest.raises(ConfigError, match="Address"):
        tunnel.open(text)


def test_a_config_error_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_text("[Interface]\nPrivateKey = nope\n")
    with pytest.raises(ConfigError) as error:
        tunnel.open(path)
    assert (error.value.file, error.value.line, error.value.key) == (str(path), 2, "PrivateKey")


@pytest.mark.parametrize("line", ["Table = off", "PostUp = echo up", "SaveConfig = true"])
def test_wg_quick_keys_for_a_host_interface_warn_that_they_do_not_apply(line: str) -> None:
    key = line.partition(" ")[0]
    text = config_text(
        generate_private_key(os.urandom),
        (A4, A6),
        generate_private_key(os.urandom),
        (B4, B6),
        extra=line,
    )
    with pytest.warns(tunnel.NotAppliedWarning, match=f"{key}: configures a host interface"):
        tunnel.open(text)
