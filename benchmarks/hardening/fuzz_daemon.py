"""A wgpy daemon for the fuzzers: started with its log kept, and spoken to over its socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from wgpy.client import socket_path
from wgpy.io.uapi_server import is_live
from wgpy.lab.netns import Namespace, wait_until

WGPY = (sys.executable, "-m", "wgpy.cli.wgpy")
STARTUP_TIMEOUT = 10.0


def start_daemon(
    ns: Namespace,
    command: tuple[str, ...],
    ifname: str,
    output: IO[bytes] | int,
    environment: dict[str, str],
) -> subprocess.Popen[bytes]:
    """`command --foreground IFNAME` in `ns`, once its configuration socket accepts (the file
    is there a moment before the daemon listens on it)."""
    process = ns.popen(
        *command, "--foreground", ifname, stdout=output, stderr=output,
        env={**os.environ, **environment},
    )  # fmt: skip
    uapi_socket = socket_path(ifname)
    wait_until(lambda: is_live(uapi_socket) or process.poll() is not None, STARTUP_TIMEOUT)
    if not is_live(uapi_socket):
        raise RuntimeError(f"{command[0]} did not start on {ifname}")
    return process


def exchange(socket_path: Path, request: bytes, timeout: float = 10.0) -> bytes:
    """Send `request`, hang up the sending side, and read until the daemon closes: raw bytes,
    not wgpy.client's exchange, since a fuzzed request may be cut short, and only the hang-up
    ends it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(os.fspath(socket_path))
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def log_faults(text: str) -> int:
    """Tracebacks and error lines in a daemon's log, rejected configuration requests excepted."""
    faults = text.count("Traceback")
    for line in text.splitlines():
        faults += line.startswith("ERROR:") and "configuration rejected" not in line
    return faults
