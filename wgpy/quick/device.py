"""The wgpy daemon, as wg-quick drives a userspace WireGuard: start it, wait for it to stop.

`start` runs `wgpy IFNAME`, which returns once the TUN device and the configuration socket exist
(wireguard-go's contract). What `wg` does over that socket is wgpy.client's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from wgpy import client
from wgpy.cli import STANDBY_VARIABLE
from wgpy.errors import UapiError
from wgpy.quick import QuickError

COMMAND = (sys.executable, "-m", "wgpy.cli.wgpy")


def start(ifname: str) -> None:
    """`wgpy IFNAME`: create the interface and serve its socket in the background."""
    if subprocess.run([*COMMAND, ifname], stdin=subprocess.DEVNULL, check=False).returncode:
        raise QuickError(f"wgpy could not create {ifname} (see above)")


class Standby:
    """`wgpy IFNAME` started ahead (STANDBY_VARIABLE): its interpreter loads the daemon while
    wgpy-quick reads the config and the host, in parallel, and creates nothing until `start`.
    Closed unstarted (on any error), it ends having done nothing."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        environment = {**os.environ, STANDBY_VARIABLE: "1"}
        # In a process group of its own: a Ctrl-C at the terminal is wgpy-quick's to handle, and
        # must not end `wgpy IFNAME` while its daemon comes up.
        self.process = subprocess.Popen(
            [*COMMAND, ifname], stdin=subprocess.PIPE, env=environment, process_group=0
        )

    def start(self, ifname: str) -> None:
        """Create the interface and serve its socket, as `start` does."""
        assert ifname == self.ifname and self.process.stdin is not None
        self.process.stdin.write(b"start\n")
        self.process.stdin.close()
        if self.process.wait():
            raise QuickError(f"wgpy could not create {ifname} (see above)")

    def close(self) -> None:
        """End an unstarted standby at once: it has created nothing, and needs not finish
        loading what it will never run."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.terminate()
            self.process.stdin.close()
        self.process.wait()

    def __enter__(self) -> Standby:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
