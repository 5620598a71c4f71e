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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from wgpy import uapi
from wgpy.client import socket_path
from wgpy.errors import UapiError

# A request's reply, in pieces: the connection sends each as the handler makes it.
Handler = Callable[[uapi.Request], Iterable[str]]


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
    """One client connection: bytes in, replies out, any number of requests in a row, each
    parsed as its bytes arrive (uapi.RequestReader), so that no request is held whole as text.
    A `capture=1` request ends the exchange: it is left in `capture`, and the caller takes the
    socket over for the stream."""

    def __init__(self, sock: socket.socket, handler: Handler) -> None:
        self.sock = sock
        self._handler = handler
        self._reader = uapi.RequestReader()
        self.capture: uapi.Request | None = None
        self.closing = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Take received bytes (b"" at the end of the stream) and yield the replies to the
        requests they complete, piece by piece as the handler makes them. Once it is exhausted,
        `closing` says whether the connection is over."""
        requests = self._reader.feed(data)
        while True:
            try:
                request = next(requests, None)
            except UapiError as error:  # The stream cannot go on.
                yield uapi.format_errno(error.errno).encode()
                self.closing = True
                return
            if request is None:
                break
            if request.operation == "capture":
                self.capture = request
                self.closing = True
                return
            for reply in self._handler(request):
                yield reply.encode()
        self.closing = not data
