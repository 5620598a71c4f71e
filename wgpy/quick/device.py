"""The wgpy daemon, as wg-quick drives a userspace WireGuard: start it, talk to its socket.

`start` runs `wgpy IFNAME`, which returns once the TUN device and the configuration socket exist
(wireguard-go's contract). The rest is what `wg` does over that socket (wgpy.uapi has the text
format).
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
import time

from wgpy import uapi
from wgpy.errors import UapiError
from wgpy.io.uapi_server import socket_path
from wgpy.quick import QuickError
from wgpy.uapi import DeviceState, DeviceUpdate

SOCKET_TIMEOUT = 10.0


def start(ifname: str) -> None:
    """`wgpy IFNAME`: create the interface and serve its socket in the background."""
    command = [sys.executable, "-m", "wgpy.cli.wgpy", ifname]
    if subprocess.run(command, stdin=subprocess.DEVNULL, check=False).returncode != 0:
        raise QuickError(f"wgpy could not create {ifname} (see above)")


def is_running(ifname: str) -> bool:
    """Whether something serves IFNAME's configuration socket (`wg show interfaces`)."""
    try:
        get(ifname)
    except (OSError, UapiError):
        return False
    return True


def wait_until_stopped(ifname: str, timeout: float) -> bool:
    """Wait for the daemon to notice its interface is gone and remove its socket."""
    path = socket_path(ifname)
    deadline = time.monotonic() + timeout
    while path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def configure(ifname: str, update: DeviceUpdate) -> None:
    """`wg addconf` / `wg set`: send a set request; raise UapiError if the device refuses it."""
    reply = _request(ifname, uapi.format_set(update))
    status = int(reply.removeprefix("errno=").strip() or "0")
    if status:
        raise UapiError(abs(status), f"{ifname} refused the configuration")


def get(ifname: str) -> DeviceState:
    """`wg showconf`: the device's state."""
    return uapi.parse_get(_request(ifname, "get=1\n\n"))


def _request(ifname: str, request: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        sock.connect(str(socket_path(ifname)))
        sock.sendall(request.encode())
        reply = b""
        while not reply.endswith(b"\n\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise UapiError(errno.EPROTO, f"{ifname}: the reply ended early")
            reply += chunk
    return reply.decode()
