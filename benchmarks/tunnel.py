"""wgpy.tunnel's figures: one TCP flow each way through the user-space stack, against wgpy (or
wireguard-go) on a TUN in a network namespace (Linux's TCP behind it), and where the time goes.

    python benchmarks/tunnel.py [--size MIB] [--server wgpy|wireguard-go] [--profile]   # as root

The client is this process: its tunnel's UDP sockets are opened inside the client namespace, and
its asyncio loop runs here. "download" is the server sending SIZE MiB to the client over one
connection, "upload" the client sending them; both ends count the bytes. --profile runs each
direction once more under cProfile and prints the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import socket
import statistics
import subprocess
import sys
import threading
import time

from wgpy import tunnel
from wgpy.lab import netns

SERVERS = {"wgpy": (sys.executable, "-m", "wgpy.cli.wgpy"), "wireguard-go": ("wireguard-go",)}
SERVER, CLIENT = "192.0.2.1", "192.0.2.2"
DOWNLOAD_PORT, UPLOAD_PORT = 5201, 5202
CHUNK = 1 << 16


def serve(size: int) -> None:
    """The services, on Linux's stack of the namespace this runs in (a process of its own, so
    that it does not share the client's interpreter): DOWNLOAD_PORT sends `size` bytes to each
    connection; UPLOAD_PORT reads each to its end and answers with the count."""
    download = socket.create_server(("", DOWNLOAD_PORT))
    upload = socket.create_server(("", UPLOAD_PORT))

    def send_all() -> None:
        data = bytes(CHUNK)
        while True:
            connection, _ = download.accept()
            with connection:
                for _ in range(size // CHUNK):
                    connection.sendall(data)

    def read_all() -> None:
        buffer = bytearray(CHUNK)
        while True:
            connection, _ = upload.accept()
            with connection:
                total = 0
                while count := connection.recv_into(buffer):
                    total += count
                connection.sendall(str(total).encode())

    threading.Thread(target=send_all, daemon=True).start()
    print("serving", flush=True)
    read_all()


async def measure(t: tunnel.Tunnel, size: int) -> dict[str, float]:
    """MB/s each way, and MB per CPU-second of this process (the client's whole cost: device,
    stack and streams), which a loaded machine disturbs less than the wall clock."""
    figures: dict[str, float] = {}
    for direction, transfer in (("download", download), ("upload", upload)):
        wall, cpu = time.perf_counter(), time.process_time()
        await transfer(t, size)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        figures[f"{direction}_MBps"] = size / wall / 1e6
        figures[f"{direction}_MB_per_cpu_s"] = size / cpu / 1e6
    return figures


async def download(t: tunnel.Tunnel, size: int) -> None:
    reader, writer = await t.open_connection(SERVER, DOWNLOAD_PORT)
    total = 0
    while chunk := await reader.read(1 << 18):
        total += len(chunk)
    writer.close()
    assert total == size, f"downloaded {total} of {size} bytes"


async def upload(t: tunnel.Tunnel, size: int) -> None:
    reader, writer = await t.open_connection(SERVER, UPLOAD_PORT)
    data = bytes(CHUNK)
    for _ in range(size // CHUNK):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
    count = int(await reader.read())  # what the server counted, once it read to our EOF
    writer.close()
    assert count == size, f"uploaded {count} of {size} bytes"


async def connect_time(t: tunnel.Tunnel, count: int = 50) -> float:
    """The median time to open a connection (the three-way handshake through the tunnel), ms."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        reader, writer = await t.open_connection(SERVER, UPLOAD_PORT)
        times.append(time.perf_counter() - started)
        writer.write_eof()
        await reader.read()
        writer.close()
    return statistics.median(times) * 1e3


async def run(
    client_ns: netns.Namespace, config: str, size: int, profile: bool
) -> dict[str, float | str]:
    with client_ns.entered():  # the tunnel's UDP sockets belong to the client namespace
        t = tunnel.open(config)
        await t.start()
    try:
        await t.ping(SERVER)
        figures: dict[str, float | str] = dict(await measure(t, size))
        figures["connect_ms"] = await connect_time(t)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await measure(t, size)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
            figures["profile"] = out.getvalue()
        return figures
    finally:
        await t.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="MiB each way (default 64)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--server", choices=SERVERS, default="wgpy", help="on the TUN side")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    size = arguments.size << 20
    if arguments.serve:
        return serve(size)
    server, client = netns.wg_genkey(), netns.wg_genkey()
    with netns.veth_pair() as (server_ns, client_ns):
        config = netns.one_peer_config(server.private, client.public, f"{CLIENT}/32")
        with netns.configured_daemon(
            server_ns, SERVERS[arguments.server], netns.unique_ifname("wgb"), config, f"{SERVER}/24"
        ):
            services = server_ns.popen(
                sys.executable, __file__, "--serve", "--size", str(arguments.size),
                stdout=subprocess.PIPE,
            )  # fmt: skip
            assert services.stdout is not None and services.stdout.readline() == b"serving\n"
            client_config = (
                f"[Interface]\nPrivateKey = {client.private}\nAddress = {CLIENT}/32\n"
                f"[Peer]\nPublicKey = {server.public}\nAllowedIPs = {SERVER}/32\n"
                f"Endpoint = {server_ns.ipv4}:{netns.WG_PORT}\n"
            )
            figures = asyncio.run(run(client_ns, client_config, size, arguments.profile))
    profile = figures.pop("profile", "")
    connect_ms = float(figures.pop("connect_ms"))
    rates = {key: float(value) for key, value in figures.items()}
    print(
        f"one TCP flow through wgpy.tunnel, {arguments.size} MiB each way, "
        f"against {arguments.server} on a TUN"
    )
    for direction in ("download", "upload"):
        rate, cpu = rates[f"{direction}_MBps"], rates[f"{direction}_MB_per_cpu_s"]
        print(f"  {direction:9} {rate:6.1f} MB/s ({rate * 8:4.0f} Mbit/s), {cpu:6.1f} MB per CPU-s")
    print(f"  connect   {connect_ms:6.2f} ms (median of 50)")
    print(
        json.dumps(
            {**{key: round(rate, 2) for key, rate in rates.items()}, "connect_ms": connect_ms}
        )
    )
    print(profile)


if __name__ == "__main__":
    main()
