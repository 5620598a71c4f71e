"""`wgpy proxy` run as nobody with every capability dropped, before an echo service, an HTTP
server and dnsmasq (wgpy/lab/proxy.py): curl through SOCKS5 and HTTP, forwards both ways, UDP
ASSOCIATE, many connections at once, refusing and silent servers, and a clean stop. The proxy's
own behaviour on this machine's stack (`--stack host`, beside the services); through wireguard-go
on both stacks, `kernel` (Linux's, in a namespace with a TUN) and `userspace` (wgpy.tunnel)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wgpy.lab.netns import Namespace, wait_until
from wgpy.lab.proxy import (
    HTTP_PORT,
    NOBODY,
    REFUSING_PORT,
    SERVICE_NAME,
    SERVICE_V4,
    SERVICE_V6,
    SILENT_PORT,
    TCP_ECHO,
    UDP_ECHO,
    UNPRIVILEGED,
    ProxyLab,
    Socks5Failed,
    proxy_lab,
    rootless_lab,
    socks5_open,
)
from wgpy.proxy.network import HostNetwork
from wgpy.proxy.relay import close_quietly
from wgpy.proxy.resolve import resolve
from wgpy.proxy.socks5 import Reply, parse_udp_datagram, udp_datagram

pytestmark = pytest.mark.netns("curl", "dnsmasq", "setpriv", "nft", "ss")

SOCKS, HTTP, LOCAL_TCP, LOCAL_UDP, REMOTE_TCP, REMOTE_UDP = 1080, 3128, 7001, 7002, 7003, 7004
FILE_SIZE = 100 << 20  # the 100 MiB
NAME = f"wgpx{os.getpid() % 100000}"  # the user-space proxy's configuration socket


@pytest.fixture(scope="module")
def lab() -> Iterator[ProxyLab]:
    """The proxy lab on the host stack, for the tests that start proxies of their own."""
    with proxy_lab() as lab:
        yield lab


@pytest.fixture(scope="module", params=["host", "kernel", "userspace"])
def proxy(request: pytest.FixtureRequest) -> Iterator[ProxyLab]:
    """One proxy with every kind of listener, on this machine's stack beside the services, and
    through wireguard-go (the rootless lab) on both stacks, for the tests that only use it."""
    with contextlib.ExitStack() as stack:
        if request.param == "host":
            lab = request.getfixturevalue("lab")
        else:
            lab = stack.enter_context(rootless_lab(request.param))
        process = lab.start_proxy(
            "--socks5", str(SOCKS), "--http", str(HTTP),
            "-L", f"tcp:{LOCAL_TCP}:{SERVICE_NAME}:{TCP_ECHO}",
            "-L", f"udp:{LOCAL_UDP}:{SERVICE_V4}:{UDP_ECHO}",
            "-R", f"tcp:{REMOTE_TCP}:127.0.0.1:{TCP_ECHO}",
            "-R", f"udp:{REMOTE_UDP}:[::1]:{UDP_ECHO}",
            "--connect-timeout", "2",
            *(["--name", NAME] if request.param == "userspace" else []),
            environment={"XDG_RUNTIME_DIR": str(runtime_directory(lab))},
        )  # fmt: skip
        yield lab
        lab.client.stop(process)


def runtime_directory(lab: ProxyLab) -> Path:
    """nobody's XDG_RUNTIME_DIR, as a login would make it (0700, theirs)."""
    directory = lab.files / "runtime"
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chown(directory, NOBODY, NOBODY)
    return directory


def run_in(ns: Namespace, work):  # type: ignore[no-untyped-def]
    """`work()`'s coroutine run to its end on a loop whose sockets live in `ns`."""
    with ns.entered():
        return asyncio.run(work())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def curl(lab: ProxyLab, *args: str) -> str:
    return lab.client.run(
        "curl", "--silent", "--show-error", "--fail", "--max-time", "60", *args
    ).stdout


@pytest.mark.parametrize(
    ("name", "proxy_option"),
    [("socks5", ("--socks5-hostname", f"127.0.0.1:{SOCKS}")),
     ("http", ("--proxy", f"http://127.0.0.1:{HTTP}"))],
)  # fmt: skip
def test_curl_fetches_a_file_by_name_through_the_proxy_intact(
    proxy: ProxyLab, name: str, proxy_option: tuple[str, str]
) -> None:
    served = proxy.serve_file(f"{name}.bin", FILE_SIZE)
    fetched = proxy.files / f"{name}.fetched"
    curl(
        proxy, *proxy_option, f"http://{SERVICE_NAME}:{HTTP_PORT}/{served.name}", "-o", str(fetched)
    )
    assert sha256(fetched) == sha256(served)


def test_curl_tunnels_through_http_connect(proxy: ProxyLab) -> None:
    served = proxy.serve_file("connect.bin", 1 << 20)
    body = proxy.client.run(
        "curl", "--silent", "--fail", "--proxytunnel", "--proxy", f"http://127.0.0.1:{HTTP}",
        f"http://[{SERVICE_V6}]:{HTTP_PORT}/{served.name}", "-o", "/dev/null",
        "-w", "%{size_download}",
    ).stdout  # fmt: skip
    assert body == str(1 << 20)


def test_the_dns_stub_resolves_through_the_labs_dns_server(lab: ProxyLab) -> None:
    addresses = run_in(lab.ns, lambda: resolve(HostNetwork(), [SERVICE_V4], SERVICE_NAME))
    assert addresses == [SERVICE_V4, SERVICE_V6]


def forward_entry(lab: ProxyLab, direction: str) -> tuple[Namespace, str]:
    """Where a forward's listener is reached from: -L on this machine's loopback, -R on the
    tunnel address from the server's side (the lab's own loopback on the host stack)."""
    return (lab.client, "127.0.0.1") if direction == "-L" else (lab.ns, lab.tunnel_address)


@pytest.mark.parametrize(("direction", "port"), [("-L", LOCAL_TCP), ("-R", REMOTE_TCP)])
def test_tcp_forwards_echo_every_byte(proxy: ProxyLab, direction: str, port: int) -> None:
    ns, host = forward_entry(proxy, direction)

    async def echoed() -> bool:
        reader, writer = await asyncio.open_connection(host, port)
        payload = os.urandom(300_000)
        writer.write(payload)
        writer.write_eof()
        back = await reader.read()
        await close_quietly(writer)
        return back == payload

    assert run_in(ns, echoed)


@pytest.mark.parametrize(("direction", "port"), [("-L", LOCAL_UDP), ("-R", REMOTE_UDP)])
def test_udp_forwards_carry_datagrams_both_ways(proxy: ProxyLab, direction: str, port: int) -> None:
    ns, host = forward_entry(proxy, direction)
    with ns.entered(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"ping %d" % port, (host, port))
        assert sock.recvfrom(100) == (b"ping %d" % port, (host, port))


def test_udp_associate_relays_datagrams_with_their_socks5_headers(proxy: ProxyLab) -> None:
    async def associate() -> list[tuple[str, int, bytes]]:
        _, writer, bound = await socks5_open(("127.0.0.1", SOCKS), "0.0.0.0", 0, command=3)
        answers = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            for host in (SERVICE_V4, SERVICE_V6, SERVICE_NAME):
                sock.sendto(udp_datagram(host, UDP_ECHO, host.encode()), bound)
                datagram = parse_udp_datagram(sock.recv(2048))
                assert datagram is not None
                answers.append((datagram.host, datagram.port, datagram.payload))
        await close_quietly(writer)
        return answers

    answers = run_in(proxy.client, associate)
    assert answers[:2] == [(SERVICE_V4, UDP_ECHO, SERVICE_V4.encode()),
                           (SERVICE_V6, UDP_ECHO, SERVICE_V6.encode())]  # fmt: skip
    assert answers[2][1:] == (UDP_ECHO, SERVICE_NAME.encode())
    assert answers[2][0] in (SERVICE_V4, SERVICE_V6)


def test_200_concurrent_connections_each_echo_their_own_bytes(proxy: ProxyLab) -> None:
    async def one(index: int) -> bool:
        reader, writer, _ = await socks5_open(("127.0.0.1", SOCKS), SERVICE_V4, TCP_ECHO)
        try:  # closed however it ends: a failure must not leave 199 open transports to others
            payload = random.Random(index).randbytes(20_000 + index)
            writer.write(payload)
            back = await reader.readexactly(len(payload))
        finally:
            await close_quietly(writer)
        return back == payload

    async def many() -> list[bool]:
        return await asyncio.gather(*(one(index) for index in range(200)))

    assert run_in(proxy.client, many) == [True] * 200


@pytest.mark.parametrize(
    ("host", "port", "reply"),
    [
        (SERVICE_V4, REFUSING_PORT, Reply.CONNECTION_REFUSED),
        (SERVICE_NAME, REFUSING_PORT, Reply.CONNECTION_REFUSED),  # each of its addresses refuses
        (SERVICE_V4, SILENT_PORT, Reply.TTL_EXPIRED),
    ],
)
def test_a_refusing_or_silent_server_gets_the_socks5_reply_that_says_so(
    proxy: ProxyLab, host: str, port: int, reply: Reply
) -> None:
    async def attempt() -> int:
        try:
            await socks5_open(("127.0.0.1", SOCKS), host, port)
        except Socks5Failed as failure:
            return failure.reply
        return 0

    started = time.monotonic()
    assert run_in(proxy.client, attempt) == reply
    assert time.monotonic() - started < 10  # --connect-timeout 2


def test_the_http_proxy_answers_502_for_a_refusing_server(proxy: ProxyLab) -> None:
    status = proxy.client.run(
        "curl", "--silent", "--proxy", f"http://127.0.0.1:{HTTP}", "-o", "/dev/null",
        "-w", "%{http_code}", f"http://{SERVICE_V4}:{REFUSING_PORT}/",
        check=False,
    ).stdout  # fmt: skip
    assert status == "502"


def test_a_forwarded_request_cut_short_mid_body_is_closed_at_once(proxy: ProxyLab) -> None:
    """The echo service is no HTTP server: only the proxy can end this connection."""

    async def cut_short() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", HTTP)
        writer.write(f"POST http://{SERVICE_V4}:{TCP_ECHO}/ HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 100\r\n\r\nabc".encode())  # fmt: skip
        writer.write_eof()
        async with asyncio.timeout(5):
            answer = await reader.read()
        await close_quietly(writer)
        return answer

    # Closed within the 5 s (TimeoutError if the proxy kept it open), with at most what the
    # echo origin sent back of the forwarded part before the proxy aborted it.
    answer = run_in(proxy.client, cut_short)
    assert answer == b"" or answer.startswith(b"POST / HTTP/1.1\r\n")


@pytest.mark.parametrize("proxy", ["userspace"], indirect=True)
def test_wgpy_show_reads_the_rootless_proxy_by_its_name_as_its_user(proxy: ProxyLab) -> None:
    runtime = runtime_directory(proxy)
    assert echo_once(proxy)  # a handshake to show, whichever tests ran before
    shown = proxy.client.run(
        "env", f"XDG_RUNTIME_DIR={runtime}", *UNPRIVILEGED,
        sys.executable, "-m", "wgpy.cli.wgpy", "show", NAME,
    ).stdout  # fmt: skip
    assert (runtime / "wireguard" / f"{NAME}.sock").is_socket()
    assert f"interface: {NAME}" in shown and "peer: " in shown and "latest handshake" in shown


@pytest.mark.parametrize("proxy", ["userspace"], indirect=True)
def test_wgpy_capture_and_metrics_read_the_rootless_proxy_by_its_name_as_its_user(
    proxy: ProxyLab,
) -> None:
    runtime = runtime_directory(proxy)
    as_nobody = ("env", f"XDG_RUNTIME_DIR={runtime}", *UNPRIVILEGED,
                 sys.executable, "-m", "wgpy.cli.wgpy")  # fmt: skip
    capture = proxy.client.popen(
        *as_nobody, "capture", NAME, "-w", "-", "--count", "2", stdout=subprocess.PIPE
    )
    # Echoes until the capture has its two packets: it may attach after the first ones.
    captured = wait_until(lambda: bool(echo_once(proxy)) and capture.poll() is not None, 20, 0.2)
    pcapng = capture.communicate()[0]
    metrics_socket = runtime / "metrics.sock"
    metrics = proxy.client.popen(*as_nobody, "metrics", NAME, "--listen", f"unix:{metrics_socket}")
    try:
        assert wait_until(metrics_socket.exists, 10)
        scraped = proxy.client.run(
            "curl", "--silent", "--fail", "--unix-socket", str(metrics_socket),
            "http://localhost/metrics",
        ).stdout  # fmt: skip
    finally:
        proxy.client.stop(metrics)
    assert captured and capture.returncode == 0
    assert [block for block in pcapng_blocks(pcapng) if block == ENHANCED_PACKET] == [
        ENHANCED_PACKET
    ] * 2
    received = re.search(r"^wireguard_received_bytes_total\{[^}]*\} (\d+)", scraped, re.M)
    assert received is not None and int(received[1]) > 0


ENHANCED_PACKET = 6  # pcapng's block type


def pcapng_blocks(data: bytes) -> list[int]:
    """The block types of a little-endian pcapng stream, in order."""
    types, at = [], 0
    while at + 8 <= len(data):
        block_type, length = struct.unpack_from("<II", data, at)
        types.append(block_type)
        at += length
    return types


def echo_once(lab: ProxyLab) -> bool:
    """One byte echoed through the -L TCP forward."""

    async def exchange() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", LOCAL_TCP)
        writer.write(b"x")
        back = await reader.readexactly(1)
        await close_quietly(writer)
        return back == b"x"

    return run_in(lab.client, exchange)


def test_socks5_with_a_password_file_admits_only_its_users(lab: ProxyLab) -> None:
    auth = lab.files / "users"
    auth.write_text("alice:correct horse\n")
    auth.chmod(0o600)
    os.chown(auth, 65534, 65534)
    process = lab.start_proxy("--socks5", "0.0.0.0:1081", "--socks5-auth", str(auth))
    try:

        def fetch(login: str) -> int:
            return lab.ns.run(
                "curl", "--silent", "--proxy", f"socks5h://{login}@{SERVICE_V4}:1081",
                "-o", "/dev/null", f"http://{SERVICE_NAME}:{HTTP_PORT}/", check=False,
            ).returncode  # fmt: skip

        assert fetch("alice:correct%20horse") == 0
        assert fetch("alice:wrong") != 0
    finally:
        lab.ns.stop(process)


def test_stopping_lets_an_open_connection_end_then_exits(lab: ProxyLab) -> None:
    process = lab.start_proxy("--socks5", "1082", environment={"LOG_LEVEL": "verbose"})

    async def open_then_stop() -> bytes:
        reader, writer, _ = await socks5_open(("127.0.0.1", 1082), SERVICE_V4, TCP_ECHO)
        os.kill(process.pid, signal.SIGTERM)  # setpriv execs the proxy: this pid is its
        await asyncio.sleep(0.5)
        writer.write(b"still served")
        writer.write_eof()
        back = await reader.read()
        await close_quietly(writer)
        return back

    assert run_in(lab.ns, open_then_stop) == b"still served"
    assert process.wait(timeout=10) == 0
    log = lab.output(process)
    assert "opened" in log and "closed, 12 bytes up, 12 down" in log
