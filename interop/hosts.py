"""The hosts a scenario runs WireGuard on, one class per implementation.

A host makes and removes WireGuard interfaces and runs shell commands; everything else (keys,
addresses, `wg setconf`) is the same for every implementation and lives in interop/links.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from interop._harness import (
    NOBODY,
    UNPRIVILEGED,
    Namespace,
    listened_ports,
    listening,
    wait_until,
)
from interop.errors import ScenarioFailure
from interop.shell import NamespaceShell, Shell
from interop.vm import Guest
from wgpy.client import socket_path

STARTUP_TIMEOUT = 15.0
REPO = Path(__file__).resolve().parents[1]


class Host(Protocol):
    """A machine (a namespace or the guest) running one WireGuard implementation."""

    implementation: str
    shell: Shell
    # The interface this host reaches the wgpy side through, and its (IPv4, IPv6) on it.
    underlay_ifname: str
    underlay: tuple[str, str]

    def add_interface(self, ifname: str) -> None: ...

    def remove_interface(self, ifname: str) -> None: ...

    def diagnostics(self, ifname: str) -> str:
        """What to show when a scenario using `ifname` fails: logs, console."""
        ...


class KernelHost:
    """Linux's WireGuard module, in the guest."""

    implementation = "kernel"

    def __init__(self, guest: Guest, underlay_ifname: str, underlay: tuple[str, str]) -> None:
        self.guest = guest
        self.shell: Shell = guest
        self.underlay_ifname = underlay_ifname
        self.underlay = underlay

    def add_interface(self, ifname: str) -> None:
        self.guest.run(f"ip link add {ifname} type wireguard").check(f"creating {ifname}")

    def remove_interface(self, ifname: str) -> None:
        self.guest.run(f"ip link del {ifname}")

    def diagnostics(self, ifname: str) -> str:
        return self.guest.console_report()


class DaemonHost:
    """A userspace implementation: one process per interface, in a namespace, logging to a file."""

    implementation = ""

    def __init__(
        self, ns: Namespace, busybox_dir: Path, logs: Path, underlay_ifname: str,
        underlay: tuple[str, str],
    ) -> None:  # fmt: skip
        self.ns = ns
        self.shell: Shell = NamespaceShell(ns, busybox_dir)
        self.underlay_ifname = underlay_ifname
        self.underlay = underlay
        self._logs = logs
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def command(self, ifname: str) -> list[str]:
        """The command that serves `ifname` in the foreground."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        # wireguard-go and wgpy both read LOG_LEVEL; debug shows handshakes and drops.
        return {**os.environ, "LOG_LEVEL": "debug"}

    def add_interface(self, ifname: str) -> None:
        uapi_socket = socket_path(ifname)
        env = self.environment()
        with open(self.log_path(ifname), "wb") as log:
            process = self.ns.popen(*self.command(ifname), stdout=log, stderr=log, env=env)
        self._processes[ifname] = process
        wait_until(lambda: uapi_socket.exists() or process.poll() is not None, STARTUP_TIMEOUT)
        if not uapi_socket.exists():
            self.remove_interface(ifname)
            raise ScenarioFailure(
                f"{self.implementation} did not start {ifname}:\n{self.log_tail(ifname)}"
            )

    def remove_interface(self, ifname: str) -> None:
        process = self._processes.pop(ifname, None)
        if process is not None:
            self.ns.stop(process)
            self.ns.processes.remove(process)

    def pid(self, ifname: str) -> int | None:
        """The pid of the process serving `ifname` (`ip netns exec` execs it), if it runs."""
        process = self._processes.get(ifname)
        return process.pid if process is not None and process.poll() is None else None

    def log_path(self, ifname: str) -> Path:
        return self._logs / f"{self.implementation}-{ifname}.log"

    def log_tail(self, ifname: str, lines: int = 40) -> str:
        path = self.log_path(ifname)
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def diagnostics(self, ifname: str) -> str:
        tail = self.log_tail(ifname)
        return f"--- {self.implementation} log of {ifname} (last lines) ---\n{tail}"


class WireguardGoHost(DaemonHost):
    implementation = "wireguard-go"

    def command(self, ifname: str) -> list[str]:
        return ["wireguard-go", "--foreground", ifname]


class WgpyHost(DaemonHost):
    implementation = "wgpy"

    def command(self, ifname: str) -> list[str]:
        return [sys.executable, "-m", "wgpy.cli.wgpy", "--foreground", ifname]

    def environment(self) -> dict[str, str]:
        # This checkout's wgpy, whether or not it is installed.
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        return {**super().environment(), "PYTHONPATH": path}


class ProxyHost(WgpyHost):
    """`wgpy proxy` on wgpy's user-space stack, as nobody with every capability dropped: no TUN
    and no interface, the tunnel ends in the proxy's own TCP/IP stack. It takes its WireGuard
    side from a wg-quick file (Address included), so it starts once configured (`start`), not at
    `add_interface`; `--name` serves its configuration socket in its runtime directory."""

    implementation = "wgpy proxy"

    def __init__(
        self, ns: Namespace, busybox_dir: Path, logs: Path, underlay_ifname: str,
        underlay: tuple[str, str], options: Sequence[str],
    ) -> None:  # fmt: skip
        super().__init__(ns, busybox_dir, logs, underlay_ifname, underlay)
        self.options = tuple(options)  # its listeners and forwards
        self._runtime: dict[str, Path] = {}

    def add_interface(self, ifname: str) -> None:
        """Nothing yet: the proxy needs its whole configuration to start."""

    def start(self, ifname: str, config: str) -> None:
        """Run the proxy with the wg-quick file `config` until its listeners stand."""
        runtime = self._runtime[ifname] = self._runtime_directory(ifname)
        path = runtime / f"{ifname}.conf"
        path.write_text(config)
        path.chmod(0o600)
        os.chown(path, NOBODY, NOBODY)
        command = [
            *UNPRIVILEGED, sys.executable, "-m", "wgpy.cli.wgpy", "proxy", str(path),
            "--stack", "userspace", "--name", ifname, *self.options,
        ]  # fmt: skip
        env = {**self.environment(), "XDG_RUNTIME_DIR": str(runtime)}
        with open(self.log_path(ifname), "wb") as log:
            process = self.ns.popen(*command, stdout=log, stderr=log, env=env)
        self._processes[ifname] = process
        ports = listened_ports(self.options)
        wait_until(lambda: process.poll() is not None or listening(self.ns, ports), STARTUP_TIMEOUT)
        if process.poll() is not None or not listening(self.ns, ports):
            self.remove_interface(ifname)
            raise ScenarioFailure(f"wgpy proxy did not start:\n{self.log_tail(ifname)}")

    def remove_interface(self, ifname: str) -> None:
        super().remove_interface(ifname)
        runtime = self._runtime.pop(ifname, None)
        if runtime is not None:
            shutil.rmtree(runtime, ignore_errors=True)

    def _runtime_directory(self, ifname: str) -> Path:
        """nobody's own (0700), as a login makes XDG_RUNTIME_DIR: it holds the config, whose
        private key no one else may read, and the configuration socket."""
        runtime = Path(tempfile.mkdtemp(prefix=f"wgpy-interop-{ifname}-"))
        os.chown(runtime, NOBODY, NOBODY)
        return runtime
