"""Reading what `wgpy metrics` serves: a GET over its unix socket, and one metric's lines."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(self._path))


def get(path: Path, target: str) -> tuple[int, str, str]:
    """(status, Content-Type, body) of GET `target` over the unix socket at `path`."""
    connection = UnixHTTPConnection(path)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        connection.close()


def lines_of(name: str, text: str) -> list[str]:
    """The sample lines of the metric `name` in the exposition `text`."""
    return [line for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name]
