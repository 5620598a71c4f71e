"""The wgpy daemon, as wg-quick drives a userspace WireGuard: start it, wait for it to stop.

`start` runs `wgpy IFNAME`, which returns once the TUN device and the configuration socket exist
(wireguard-go's contract). What `wg` does over that socket is wgpy.client's.
"""

from __future__ import annotations

import subprocess
import sys
import time

from wgpy import client
from wgpy.errors import UapiError
from wgpy.quick import QuickError


def start(ifname: str) -> None:
    """`wgpy IFNAME`: create the interface and serve its socket in the background."""
    command = [sys.executable, "-m", "wgpy.cli.wgpy", ifname]
    if subprocess.run(command, stdin=subprocess.DEVNULL, check=False).returncode != 0:
        raise QuickError(f"wgpy could not create {ifname} (see above)")


def is_running(ifname: str) -> bool:
    """Whether something serves IFNAME's configuration socket (`wg show interfaces`)."""
    try:
        client.get_device(ifname)
    except (OSError, UapiError):
        return False
    return True


def wait_until_stopped(ifname: str, timeout: float) -> bool:
    """Wait for the daemon to notice its interface is gone and remove its socket."""
    path = client.socket_path(ifname)
    deadline = time.monotonic() + timeout
    while path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
