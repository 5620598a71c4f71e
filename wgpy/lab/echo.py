"""`python -m wgpy.lab.echo --tcp PORT --udp PORT`: echo servers on every address (IPv4 and IPv6),
the services the proxy's tests and benchmarks reach through it. Serves until SIGTERM."""

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


async def serve(tcp_port: int | None, udp_port: int | None) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    closing: list[asyncio.Server | asyncio.BaseTransport] = []
    if tcp_port is not None:
        closing.append(await asyncio.start_server(_tcp_echo, ["0.0.0.0", "::"], tcp_port))
    if udp_port is not None:
        # "::" takes IPv4 too: IPV6_V6ONLY is off by default.
        transport, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("::", udp_port))
        closing.append(transport)
    await stopping.wait()
    for item in closing:
        item.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m wgpy.lab.echo")
    parser.add_argument("--tcp", type=int)
    parser.add_argument("--udp", type=int)
    args = parser.parse_args()
    asyncio.run(serve(args.tcp, args.udp))


if __name__ == "__main__":
    main()
