"""Sockets made in one network namespace for a process in another, passed over a unix socket
(SCM_RIGHTS). A socket belongs to the namespace it was made in for its whole life, whoever then
binds, connects or sends on it: so `wgpy run` opens its UDP sockets outside for the interface
inside, and its port publisher and the kernel-stack proxy connect into the namespace from outside.

A request is one JSON object in one datagram of a SOCK_SEQPACKET pair; the reply is a JSON object
(`errno`, `message`) carrying the sockets made, or none and the errno that stopped them.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("wgpy")

MAX_MESSAGE = 4096
MAX_SOCKETS = 4
Maker = Callable[[dict[str, Any]], list[socket.socket]]


def channel() -> tuple[socket.socket, socket.socket]:
    """(the client's end, the server's end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def serve(
    end: socket.socket, make: Maker, on_end: Callable[[], None] = lambda: None
) -> threading.Thread:
    """Answer requests on `end` with `make`'s sockets, in a daemon thread, until the other end
    closes; then call `on_end`. The sockets are closed here once passed."""

    def run() -> None:
        try:
            _serve(end, make)
        finally:
            on_end()

    thread = threading.Thread(target=run, name="socket-broker", daemon=True)
    thread.start()
    return thread


def _serve(end: socket.socket, make: Maker) -> None:
    with end:
        while True:
            try:
                request = end.recv(MAX_MESSAGE)
            except OSError:
                return
            if not request:
                return
            try:
                made = make(json.loads(request))
            except OSError as error:
                reply: dict[str, Any] = {"errno": error.errno or 0, "message": str(error)}
                made = []
            else:
                reply = {"errno": 0, "message": ""}
            try:
                socket.send_fds(end, [json.dumps(reply).encode()], [s.fileno() for s in made])
            except OSError:
                return
            finally:
                for sock in made:
                    sock.close()


class Broker:
    """The client's end: `request()` may be called from any thread (one request at a time)."""

    def __init__(self, end: socket.socket) -> None:
        self._end = end
        self._lock = threading.Lock()

    def request(self, **request: Any) -> list[socket.socket]:
        """The sockets the server made for `request`; raises OSError with the server's errno."""
        with self._lock:
            self._end.sendall(json.dumps(request).encode())
            data, fds, _, _ = socket.recv_fds(self._end, MAX_MESSAGE, MAX_SOCKETS)
        if not data:
            raise ConnectionResetError("the socket broker has gone")
        reply = json.loads(data)
        if reply["errno"]:
            raise OSError(reply["errno"], reply["message"])
        return [socket.socket(fileno=fd) for fd in fds]

    def close(self) -> None:
        self._end.close()
