"""wgpy.tunnel end to end in one process: two tunnels, peers of each other over 127.0.0.1, each
with its own user-space stack. No root, no TUN: the rootless path as a Python program uses it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import random
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from tunnels import A4, A6, B4, B6, Collect, DnsZone, UdpEcho, config_text, tunnel_pair

from wgpy import client, tunnel, uapi
from wgpy.capture import PacketRecord, RecordReader
from wgpy.core.keys import generate_private_key, public_key
from wgpy.core.observer import Direction
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


# -- TCP ---------------------------------------------------------------------------------------


async def send_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A service that sends the size asked for (a decimal line) of seeded bytes, and closes."""
    size = int(await reader.readline())
    data = random.Random(size).randbytes(size)
    for start in range(0, size, 1 << 16):
        writer.write(data[start : start + (1 << 16)])
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def upper_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Sends back what it reads, upper-cased, until the client's EOF; then closes."""
    while chunk := await reader.read(1 << 16):
        writer.write(chunk.upper())
        await writer.drain()
    writer.close()


@pytest.mark.parametrize("server", [B4, B6], ids=["ipv4", "ipv6"])
def test_a_tcp_stream_fetches_megabytes_intact_through_the_tunnel(server: str) -> None:
    size = 3 << 20

    async def test() -> tuple[bytes, tuple[str, int]]:
        async with tunnel_pair() as (a, b):
            await b.start_server(send_and_close, 80)
            reader, writer = await a.open_connection(server, 80)
            writer.write(f"{size}\n".encode())
            data = await reader.read()  # to EOF
            writer.close()
            await writer.wait_closed()
            return data, writer.get_extra_info("peername")

    data, peer = run(test)
    assert (
        hashlib.sha256(data).digest()
        == hashlib.sha256(random.Random(size).randbytes(size)).digest()
    )
    assert peer == (server, 80)


def test_a_tcp_stream_carries_data_both_ways_with_a_half_close() -> None:
    async def test() -> bytes:
        async with tunnel_pair() as (a, b):
            await b.start_server(upper_echo, 7)
            reader, writer = await a.open_connection(B4, 7)
            for _ in range(100):
                writer.write(b"hello tunnel " * 1000)
            await writer.drain()
            writer.write_eof()
            return await reader.read()

    assert run(test) == b"HELLO TUNNEL " * 100_000


@pytest.mark.parametrize("drained", [True, False], ids=["drained", "all-at-once"])
def test_what_is_written_after_the_peers_eof_all_arrives_before_ours(drained: bool) -> None:
    # A reply sent after the request's EOF (as a forward relays one): its end must not wait on
    # the connection's send buffer and be lost with the transport (issue 17's -R pull hung so).
    size = 3 << 20
    data = random.Random(size).randbytes(size)

    async def reply_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.write(data)  # more than the send buffer takes at once
        if drained:
            await writer.drain()  # down to WRITE_HIGH: some is still waiting here
        writer.write_eof()

    async def test() -> bytes:
        async with tunnel_pair() as (a, b):
            await b.start_server(reply_after_eof, 7)
            reader, writer = await a.open_connection(B4, 7)
            writer.write_eof()
            return await reader.read()

    assert run(test) == data


def test_a_slow_reader_stops_the_writer_through_the_window_not_by_buffering() -> None:
    async def test() -> tuple[int, int]:
        async with tunnel_pair() as (a, b):
            paused = asyncio.Event()

            async def never_read(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter
            ) -> None:
                await paused.wait()

            await b.start_server(never_read, 9)
            _, writer = await a.open_connection(B4, 9)
            written = 0
            chunk = bytes(1 << 16)
            with contextlib.suppress(TimeoutError):
                while written < 64 << 20:
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), 1.0)
                    written += len(chunk)
            paused.set()
            writer.transport.abort()
            return written, writer.transport.get_write_buffer_size()

    written, buffered = run(test)
    # The writer stops once the reader's buffers and the window are full: a few MiB, not 64.
    assert written < 16 << 20
    assert buffered <= 1 << 17


def test_connecting_to_a_port_nobody_listens_on_is_refused() -> None:
    async def test() -> None:
        async with tunnel_pair() as (a, _):
            await a.open_connection(B6, 81)

    with pytest.raises(ConnectionRefusedError):
        run(test)


def test_a_name_resolved_through_the_tunnel_is_connected_to() -> None:
    async def test() -> bytes:
        async with tunnel_pair(dns_on_b=True) as (a, b):
            await b.create_datagram_endpoint(
                lambda: DnsZone({"echo.test": [B4]}), local_addr=("::", 53)
            )
            await b.start_server(upper_echo, 7)
            reader, writer = await a.open_connection("echo.test", 7)
            writer.write(b"by name")
            writer.write_eof()
            return await reader.read()

    assert run(test) == b"BY NAME"


def test_a_closed_server_refuses_new_connections() -> None:
    async def test() -> None:
        async with tunnel_pair() as (a, b):
            server = await b.start_server(upper_echo, 7)
            server.close()
            await server.wait_closed()
            await a.open_connection(B4, 7)

    with pytest.raises(ConnectionRefusedError):
        run(test)


# -- the configuration socket's hook -----------------------------------------------------------


def ask(t: tunnel.Tunnel, text: str) -> str:
    (request,) = uapi.RequestReader().feed(text.encode())
    return "".join(t.handle_request(request))


def test_the_configuration_hook_answers_get_and_set_as_the_socket_protocol_does() -> None:
    new_peer = public_key(generate_private_key(os.urandom))

    async def test() -> tuple[uapi.DeviceState, str, uapi.DeviceState]:
        async with tunnel_pair() as (a, _):
            await a.ping(B4)
            before = uapi.parse_get(ask(a, "get=1\n\n"))
            reply = ask(a, f"set=1\npublic_key={new_peer.hex()}\nallowed_ip=198.18.99.0/24\n\n")
            return before, reply, uapi.parse_get(ask(a, "get=1\n\n"))

    before, reply, after = run(test)
    (peer,) = before.peers
    assert peer.last_handshake_time[0] > 0 and peer.rx_bytes > 0
    assert reply == "errno=0\n\n"
    assert {p.public_key for p in after.peers} == {peer.public_key, new_peer}


def test_a_tunnel_opened_with_a_name_serves_its_configuration_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WGPY_RUN_DIR", str(tmp_path))
    key, peer = generate_private_key(os.urandom), generate_private_key(os.urandom)
    text = config_text(key, (A4, A6), peer, (B4, B6))

    async def test() -> tuple[uapi.DeviceState, bool]:
        async with tunnel.open(text, name="wgpytun17") as t:
            loop = asyncio.get_running_loop()
            # The client blocks: it runs on a thread while the loop serves.
            state = await loop.run_in_executor(None, client.get_device, "wgpytun17")
            assert state.listen_port == t.listen_port
        return state, client.socket_path("wgpytun17").exists()

    state, left_behind = run(test)
    assert state.private_key == key and [p.public_key for p in state.peers] == [public_key(peer)]
    assert not left_behind


def test_a_named_tunnel_streams_the_packets_it_carries_to_a_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WGPY_RUN_DIR", str(tmp_path))

    def read_packets(sock: socket.socket, count: int) -> list[PacketRecord]:
        reader, packets = RecordReader(), []
        sock.settimeout(TIMEOUT)
        while len(packets) < count:
            packets += [r for r in reader.feed(sock.recv(1 << 16)) if isinstance(r, PacketRecord)]
        return packets

    async def test() -> list[PacketRecord]:
        async with tunnel_pair(name_a="wgpycap17") as (a, _):
            loop = asyncio.get_running_loop()
            sock, _ = await loop.run_in_executor(
                None, client.open_capture, "wgpycap17", uapi.CaptureRequest()
            )
            with sock:
                await a.ping(B4)
                return await loop.run_in_executor(None, read_packets, sock, 2)

    request, reply = run(test)
    assert (request.direction, request.packet[16:20]) == (Direction.OUTBOUND, socket.inet_aton(B4))
    assert (reply.direction, reply.packet[12:16]) == (Direction.INBOUND, socket.inet_aton(B4))


def test_closing_a_tunnel_resets_its_open_connections_for_their_peers() -> None:
    async def test() -> BaseException | bytes:
        async with tunnel_pair() as (a, b):
            accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()

            async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await accepted.put(reader)

            await b.start_server(hold, 7)
            await a.open_connection(B4, 7)
            reader = await accepted.get()
            await a.close()
            try:
                return await reader.read()
            except ConnectionResetError as error:
                return error

    assert isinstance(run(test), ConnectionResetError)


def test_two_hundred_concurrent_connections_each_get_their_own_bytes_back() -> None:
    async def test() -> list[bool]:
        async with tunnel_pair() as (a, b):
            await b.start_server(upper_echo, 7, backlog=256)

            async def one(n: int) -> bool:
                reader, writer = await a.open_connection(B6 if n % 2 else B4, 7)
                payload = random.Random(n).randbytes(20_000).lower()
                writer.write(payload)
                writer.write_eof()
                back = await reader.read()
                writer.close()
                return back == payload.upper()

            return await asyncio.gather(*(one(n) for n in range(200)))

    assert run(test) == [True] * 200


@pytest.mark.parametrize("use", ["ping", "connect", "udp"])
def test_an_address_no_peer_routes_is_unreachable_at_once(use: str) -> None:
    elsewhere = "198.51.100.7"  # outside every AllowedIPs of the pair

    async def test() -> None:
        async with tunnel_pair() as (a, _):
            if use == "ping":
                await a.ping(elsewhere)
            elif use == "connect":
                await a.open_connection(elsewhere, 80)
            else:
                await a.create_datagram_endpoint(Collect, remote_addr=(elsewhere, 53))

    with pytest.raises(OSError) as error:
        run(test)
    assert error.value.errno == errno.ENETUNREACH
