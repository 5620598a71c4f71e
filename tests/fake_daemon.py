"""A stand-in for a daemon's configuration socket: one connection, one canned reply."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

IFNAME = "wgfake0"


class FakeDaemon:
    """Serves one connection: reads the request, sends `reply`, then closes."""

    def __init__(self, run_dir: Path, reply: bytes) -> None:
        self.request = b""
        self._reply = reply
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(run_dir / f"{IFNAME}.sock"))
        self._server.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._server.accept()
        with connection:
            while not self.request.endswith(b"\n\n"):
                self.request += connection.recv(4096)
            connection.sendall(self._reply)

    def close(self) -> None:
        self._thread.join(10.0)
        self._server.close()
