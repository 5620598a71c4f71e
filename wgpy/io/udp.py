"""The UDP edge: one socket per address family, both on the same port, as wireguard-go binds them.

Facts from wireguard-go conn/bind_std.go (IPv4 first, then IPv6 on the port IPv4 got, retried
when that port is taken for IPv6; a family the host lacks is skipped), conn/controlfns_linux.go
(7 MiB buffers, IPV6_V6ONLY, the address each datagram arrived on: see pktinfo.py) and
include/uapi/asm-generic/socket.h (option numbers).
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Final

from wgpy.io import pktinfo

SO_SNDBUFFORCE: Final = 32
SO_RCVBUFFORCE: Final = 33
SO_MARK: Final = 36

# What wireguard-go asks for; without CAP_NET_ADMIN the kernel caps it at net.core.[rw]mem_max.
SOCKET_BUFFER_SIZE: Final = 7 << 20
# wireguard-go's limit on tries to find a random port free in both families.
BIND_ATTEMPTS: Final = 100


def open_udp(port: int, fwmark: int = 0) -> tuple[socket.socket | None, socket.socket | None]:
    """Bind UDP `port` on every IPv4 and every IPv6 address; port 0 picks one free in both.

    Returns (sock4, sock6); a family the host does not have (EAFNOSUPPORT) is None, but never
    both. A taken port raises OSError(EADDRINUSE). A nonzero `fwmark` marks outgoing packets.
    """
    for _ in range(BIND_ATTEMPTS):
        sock4 = _bound(socket.AF_INET, "", port, fwmark)
        shared_port = sock4.getsockname()[1] if sock4 else port
        try:
            sock6 = _bound(socket.AF_INET6, "::", shared_port, fwmark)
        except OSError as err:
            if sock4:
                sock4.close()
            if port == 0 and err.errno == errno.EADDRINUSE:
                continue
            raise
        if sock4 is None and sock6 is None:
            raise OSError(errno.EAFNOSUPPORT, "neither IPv4 nor IPv6 is available")
        return sock4, sock6
    raise OSError(errno.EADDRINUSE, "no port is free on both IPv4 and IPv6")


def set_fwmark(sock: socket.socket, fwmark: int) -> None:
    """Mark the packets `sock` sends (SO_MARK); 0 removes the mark. Needs CAP_NET_ADMIN."""
    # The mark is a u32, beyond what setsockopt's int form accepts.
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, struct.pack("=I", fwmark))


def _bound(family: int, host: str, port: int, fwmark: int) -> socket.socket | None:
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as err:
        if err.errno == errno.EAFNOSUPPORT:
            return None
        raise
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        _enlarge_buffers(sock)
        pktinfo.enable(sock)
        if fwmark:
            set_fwmark(sock, fwmark)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _enlarge_buffers(sock: socket.socket) -> None:
    for forced, capped in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER_SIZE)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, capped, SOCKET_BUFFER_SIZE)
