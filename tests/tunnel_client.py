"""A wgpy.tunnel client as a program: the namespace tests run it as root and as uid 65534 with
every capability dropped, the configuration on stdin, and read what it found as JSON on stdout.

    python tests/tunnel_client.py [--ping ADDR]... [--udp-echo ADDR:PORT]... [--fetch ADDR:PORT]...

--ping prints the round-trip time; --udp-echo sends datagrams of a few sizes and reports whether
each came back whole; --fetch reads a TCP stream to its end and reports its length and sha256;
"tun" says whether this process could have opened a TUN instead (it should not, unprivileged).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from typing import Any

from wgpy import tunnel
from wgpy.io.tun import describe, open_tun

UDP_SIZES = (1, 512, 1300)
TIMEOUT = 120.0


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


async def udp_echo(t: tunnel.Tunnel, address: tuple[str, int]) -> bool:
    transport, replies = await t.create_datagram_endpoint(Replies, remote_addr=address)
    try:
        for size in UDP_SIZES:
            payload = bytes([size % 251]) * size
            transport.sendto(payload)
            if await asyncio.wait_for(replies.queue.get(), 10) != payload:
                return False
        return True
    finally:
        transport.close()


async def fetch(t: tunnel.Tunnel, address: tuple[str, int]) -> dict[str, Any]:
    reader, writer = await t.open_connection(*address)
    digest, length = hashlib.sha256(), 0
    started = asyncio.get_running_loop().time()
    while chunk := await reader.read(1 << 16):
        digest.update(chunk)
        length += len(chunk)
    seconds = asyncio.get_running_loop().time() - started
    writer.close()
    return {"bytes": length, "sha256": digest.hexdigest(), "seconds": seconds}


def tun_refusal() -> str:
    try:
        open_tun("wgpytest0").close()
    except OSError as error:
        return describe(error)
    return "opened"


async def main(arguments: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {"tun": tun_refusal()}
    async with tunnel.open(sys.stdin.read()) as t:
        found["ping"] = {address: await t.ping(address) for address in arguments.ping}
        found["udp_echo"] = {
            text: await udp_echo(t, host_port(text)) for text in arguments.udp_echo
        }
        found["fetch"] = {text: await fetch(t, host_port(text)) for text in arguments.fetch}
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for option in ("--ping", "--udp-echo", "--fetch"):
        parser.add_argument(option, action="append", default=[])
    result = asyncio.run(asyncio.wait_for(main(parser.parse_args()), TIMEOUT))
    print(json.dumps(result))
