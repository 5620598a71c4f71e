"""`python -m wgpy.lab.echo --tcp PORT --udp PORT [--host ADDRESS]...`: echo servers, the services
the proxy's tests and benchmarks reach through it. TCP listens on every address; UDP on each
--host (default 127.0.0.1 and ::1) on its own socket, so that an answer leaves from the address
asked, whatever the route back. Serves until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import cast


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (Python 3.11's selector transport for datagrams does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def _tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    writer.close()


LISTEN_BACKLOG = 1024


async def serve(tcp_port: int | None, udp_port: int | None, hosts: list[str]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    closing: list[asyncio.Server | asyncio.BaseTransport] = []
    if tcp_port is not None:
        # asyncio's default backlog (100) would overflow under the tests' 200 connections at
        # once: Linux then drops their handshakes' last ACKs, and the lab, not the proxy, fails.
        server = await asyncio.start_server(
            _tcp_echo, ["0.0.0.0", "::"], tcp_port, backlog=LISTEN_BACKLOG
        )
        closing.append(server)
    if udp_port is not None:
        for host in hosts:
            transport, _ = await loop.create_datagram_endpoint(
                _UdpEcho, local_addr=(host, udp_port)
            )
            closing.append(transport)
    await stopping.wait()
    for item in closing:
        item.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m wgpy.lab.echo")
    parser.add_argument("--tcp", type=int)
    parser.add_argument("--udp", type=int)
    parser.add_argument("--host", action="append", help="a UDP address (repeatable)")
    args = parser.parse_args()
    asyncio.run(serve(args.tcp, args.udp, args.host or ["127.0.0.1", "::1"]))


if __name__ == "__main__":
    main()
