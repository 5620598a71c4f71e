"""An HTTP GET through a WireGuard tunnel with no root and no TUN: wgpy.tunnel.

    python examples/tunnel_http_get.py wg0.conf http://10.0.0.1/      # through your own VPN
    python examples/tunnel_http_get.py                                 # a self-contained demo

With a wg-quick file and a URL, the GET goes through that tunnel: `Address` is the tunnel address
the request comes from, a host name resolves on the `DNS =` servers through the tunnel. With no
arguments, the demo plays the server too: a second tunnel in this process, on 127.0.0.1, whose
user-space stack serves HTTP on its tunnel address, so the GET crosses a real WireGuard session.
Any user can run either: nothing here needs a capability.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from urllib.parse import urlsplit

from wgpy import tunnel
from wgpy.core.keys import generate_private_key, public_key, to_base64

SERVER, CLIENT = "192.0.2.1", "192.0.2.2"  # the demo's tunnel addresses (RFC 5737, never routed)
PAGE = b"hello from the far end of the tunnel\n"


async def http_get(t: tunnel.Tunnel, url: str) -> tuple[str, dict[str, str], bytes]:
    """The status line, headers and body of GET `url` (http only), through tunnel `t`."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise SystemExit(f"an http:// URL, please: {url!r}")
    reader, writer = await t.open_connection(parts.hostname, parts.port or 80)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
        "User-Agent: wgpy-tunnel-example\r\n\r\n".encode()
    )
    response = await reader.read()  # to the end: the server closes after the response
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("iso-8859-1").split("\r\n")
    fields = (line.partition(":") for line in lines)
    headers = {name.lower(): value.strip() for name, _, value in fields}
    return status, headers, body


async def serve_page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The demo's web server: one page, then close, whatever the request."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {len(PAGE)}\r\nConnection: close\r\n\r\n".encode()
        + PAGE
    )
    await writer.drain()
    writer.close()


def client_config(server_port: int, server_key: bytes, client_key: bytes) -> str:
    """The client's wg-quick file for the demo server listening on 127.0.0.1:`server_port`."""
    return (
        f"[Interface]\nPrivateKey = {to_base64(client_key)}\nAddress = {CLIENT}/32\n\n"
        f"[Peer]\nPublicKey = {to_base64(public_key(server_key))}\n"
        f"AllowedIPs = {SERVER}/32\nEndpoint = 127.0.0.1:{server_port}\n"
    )


async def demo() -> int:
    server_key, client_key = generate_private_key(os.urandom), generate_private_key(os.urandom)
    server_config = (
        f"[Interface]\nPrivateKey = {to_base64(server_key)}\nAddress = {SERVER}/32\n\n"
        f"[Peer]\nPublicKey = {to_base64(public_key(client_key))}\nAllowedIPs = {CLIENT}/32\n"
    )
    async with tunnel.open(server_config) as server:
        await server.start_server(serve_page, 80)
        print(f"server: {SERVER}:80 in the tunnel, WireGuard on UDP port {server.listen_port}")
        async with tunnel.open(client_config(server.listen_port, server_key, client_key)) as client:
            return await fetch(client, f"http://{SERVER}/")


async def fetch(t: tunnel.Tunnel, url: str) -> int:
    started = time.perf_counter()
    status, headers, body = await http_get(t, url)
    elapsed = (time.perf_counter() - started) * 1e3
    print(f"GET {url} -> {status} ({len(body)} bytes in {elapsed:.1f} ms, handshake included)")
    print(f"content-type: {headers.get('content-type', '?')}")
    print(body.decode(errors="replace"), end="" if body.endswith(b"\n") else "\n")
    return 0 if status.split()[1:2] == ["200"] else 1


async def main(arguments: list[str]) -> int:
    if not arguments:
        return await demo()
    if len(arguments) != 2:
        raise SystemExit(__doc__)
    async with tunnel.open(arguments[0]) as t:
        return await fetch(t, arguments[1])


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
