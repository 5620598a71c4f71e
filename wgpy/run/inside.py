"""The namespace's side of `wgpy run`: in a forked child, a user, network and mount namespace of
the caller's (wgpy.io.userns); there loopback up, the TUN with the config's addresses and MTU, a
route for each AllowedIPs (a /0 is the default route), the config's DNS as resolv.conf mounted
over the host's, and an Interface serving the TUN with UDP sockets opened outside. COMMAND runs
there, as the caller; the interface stops when it ends, or when the caller's side goes.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from wgpy.config import Config
from wgpy.core.constants import DEFAULT_MTU
from wgpy.errors import WgpyError
from wgpy.io import socket_broker, userns
from wgpy.io.interface import Interface
from wgpy.io.tun import DEFAULT_FLAGS, IFF_VNET_HDR, Tun, open_tun
from wgpy.quick.netlink import add_address, add_route, link_index, set_mtu_up
from wgpy.quick.plan import allowed_ips, route_order
from wgpy.uapi import DeviceUpdate

log = logging.getLogger("wgpy")

RESOLV_CONF: Final = Path("/etc/resolv.conf")
# The namespace is the caller's own: its programs may bind any port and ping (as podman sets).
SYSCTLS: Final = {
    "/proc/sys/net/ipv4/ip_unprivileged_port_start": "0",
    "/proc/sys/net/ipv4/ping_group_range": "0 2147483647",
}
# What the caller's terminal sends to the whole process group: COMMAND's to act on. A handler
# that does nothing (not SIG_IGN, which COMMAND would inherit) keeps this process serving.
COMMAND_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
SOCKET_FAMILIES: Final = (socket.AF_INET, socket.AF_INET6)
SOCKET_TYPES: Final = (socket.SOCK_STREAM, socket.SOCK_DGRAM)


@dataclass(slots=True)
class Plan:
    """What the child makes: `update` is the config's device part, endpoints resolved outside."""

    name: str
    config: Config
    update: DeviceUpdate
    sockets: list[socket.socket]
    outside: socket.socket  # the broker that opens UDP sockets outside
    inside: socket.socket  # where the caller's side asks for sockets made here
    command: Sequence[str] | None
    configuration_socket: bool = True  # served at wgpy.client.socket_path(name)


def main(plan: Plan, ready: int) -> int:
    """The child's whole life: returns its exit status (COMMAND's, 128+N for a signal). Writes
    "ready PID" (COMMAND's pid, 0 without one) or one line of reason to the `ready` pipe."""
    for signum in COMMAND_SIGNALS:
        signal.signal(signum, lambda *_: None)
    try:
        interface = _set_up(plan)
    except (OSError, WgpyError, NetlinkError) as error:
        _tell(ready, _reason(error))
        return 1
    done = threading.Event()
    socket_broker.serve(plan.inside, _make_socket, on_end=done.set)
    try:
        command = _start_command(plan.command)
    except OSError as error:
        _tell(ready, f"{plan.command[0] if plan.command else ''}: {error.strerror}")
        interface.close()
        return 127 if isinstance(error, FileNotFoundError) else 126
    _tell(ready, f"ready {command.pid if command else 0}")
    if command is not None:
        threading.Thread(target=_set_when_ended, args=(command, done), daemon=True).start()
    threading.Thread(target=_stop_when_set, args=(done, interface), daemon=True).start()
    # As the daemon does (wgpy.cli.daemon): what is alive now lives as long as the process.
    gc.freeze()
    try:
        interface.run(stop_signals=())
    finally:
        interface.close()
    if command is not None:
        if command.poll() is None:  # the caller's side went first
            command.terminate()
        return exit_status(command.wait())
    return 0


def exit_status(returncode: int) -> int:
    """A shell's: the code, or 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _set_up(plan: Plan) -> Interface:
    userns.enter()
    for path, value in SYSCTLS.items():
        with contextlib.suppress(OSError):
            Path(path).write_text(value)
    interface = plan.config.interface
    tun = open_tun(plan.name, DEFAULT_FLAGS | IFF_VNET_HDR)
    try:
        _configure_links(plan, tun)
        if interface.dns:
            _mount_resolv_conf(plan.config)
        running = Interface(
            tun,
            sockets=plan.sockets,
            open_sockets=_opener(plan.outside),
            configuration_socket=plan.configuration_socket,
        )
    except BaseException:
        tun.close()
        raise
    try:
        plan.update.listen_port = None  # the sockets are bound already
        running.configure(plan.update)
    except BaseException:
        running.close()
        raise
    return running


def _configure_links(plan: Plan, tun: Tun) -> None:
    with IPRoute() as ipr:
        loopback = link_index(ipr, "lo")
        index = link_index(ipr, tun.name)
        assert loopback is not None and index is not None
        set_mtu_up(ipr, loopback, 65536)
        for address in plan.config.interface.address:
            add_address(ipr, index, address)
        set_mtu_up(ipr, index, plan.config.interface.mtu or DEFAULT_MTU)
        for prefix in route_order(allowed_ips(plan.config)):
            add_route(ipr, index, prefix)


def _mount_resolv_conf(config: Config) -> None:
    """The config's DNS as resolv.conf, over the host's in this mount namespace alone. The file
    mounted is unlinked at once: the mount keeps it, and nothing is left behind."""
    interface = config.interface
    lines = [f"nameserver {server}" for server in interface.dns]
    if interface.dns_search:
        lines.append(f"search {' '.join(interface.dns_search)}")
    with tempfile.NamedTemporaryFile("w", prefix="wgpy-resolv-", delete=False) as file:
        file.write("\n".join(lines) + "\n")
    source = Path(file.name)
    source.chmod(0o644)
    try:
        userns.bind_file(source, RESOLV_CONF.resolve())
    finally:
        source.unlink()


def _opener(outside: socket.socket) -> Any:
    broker = socket_broker.Broker(outside)

    def open_sockets(port: int, fwmark: int) -> list[socket.socket]:
        sockets = broker.request(udp=[port, fwmark])
        for sock in sockets:
            sock.setblocking(False)
        return sockets

    return open_sockets


def _make_socket(request: dict[str, Any]) -> list[socket.socket]:
    family, kind, protocol = request["socket"]
    if family not in SOCKET_FAMILIES or kind not in SOCKET_TYPES:
        raise OSError(22, f"no sockets of family {family}, type {kind} here")
    return [socket.socket(family, kind, protocol)]


def _start_command(command: Sequence[str] | None) -> subprocess.Popen[bytes] | None:
    """COMMAND with this process's identity (the caller's), environment, directory and stdio;
    signals reset to their defaults, as a shell would leave them."""
    if not command:
        return None
    # Found as a shell finds it: a directory of PATH the caller may not search is passed over.
    executable = shutil.which(command[0])
    if executable is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command[0])
    return subprocess.Popen(
        list(command), executable=executable, close_fds=True, restore_signals=True
    )


def _set_when_ended(command: subprocess.Popen[bytes], done: threading.Event) -> None:
    command.wait()
    done.set()


def _stop_when_set(done: threading.Event, interface: Interface) -> None:
    done.wait()
    interface.stop()


def _reason(error: Exception) -> str:
    if isinstance(error, OSError):
        return f"{error.filename + ': ' if error.filename else ''}{error.strerror or error}"
    if isinstance(error, NetlinkError):
        return f"netlink: {os.strerror(error.code)}"
    return str(error)


def _tell(ready: int, message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(ready, (message + "\n").encode())
    os.close(ready)
