"""The configuration socket: RUN_DIR/IFNAME.sock (wgpy.client.socket_path, where the clients look),
as wireguard-go serves it.

The socket is made 0600 (under umask 177) in a 0755 directory: its owner's alone, as
wireguard-go's is (made under umask 077, so 0700; on a socket only the write bit counts, for
connect). A stale socket file (nobody accepts on it) is replaced; a live one means another
process runs the interface, and is refused (EADDRINUSE), as wireguard-go's ipc/uapi_linux.go does.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path

from wgpy import uapi
from wgpy.client import socket_path
from wgpy.errors import UapiError

# Requests larger than this are refused rather than buffered without bound.
MAX_REQUEST_BYTES = 1 << 20

Handler = Callable[[uapi.Operation, list[str]], str]


def listen(name: str) -> socket.socket:
    path = socket_path(name)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if is_live(path):
            raise OSError(errno.EADDRINUSE, f"{path} is served by another process")
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        server.bind(str(path))
    finally:
        os.umask(old_umask)
    server.listen(16)
    server.setblocking(False)
    return server


def is_live(path: Path) -> bool:
    """Whether a process accepts connections on the unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class Connection:
    """One client connection: bytes in, replies out, any number of requests in a row. A
    `capture=1` request ends the exchange: its body lines are left in `capture`, and the caller
    takes the socket over for the stream."""

    def __init__(self, sock: socket.socket, handler: Handler) -> None:
        self.sock = sock
        self._handler = handler
        self._buffer = b""
        self.capture: list[str] | None = None

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Take received bytes (b"" at end of stream); return the reply bytes and whether the
        connection should close."""
        eof = not data
        self._buffer += data
        replies = b""
        while True:
            try:
                request = uapi.parse_request(self._buffer, eof=eof)
            except UapiError as error:
                return replies + uapi.format_errno(error.errno).encode(), True
            if request is None:
                break
            operation, lines, self._buffer = request
            if operation == "capture":
                self.capture = lines
                return replies, True
            replies += self._handler(operation, lines).encode()
        if len(self._buffer) > MAX_REQUEST_BYTES:
            return replies + uapi.format_errno(errno.EMSGSIZE).encode(), True
        return replies, eof
