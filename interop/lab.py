"""The network all scenarios of a run share, built once.

    namespace W (wgpy under test)            namespace P (wireguard-go or wgpy as the peer)
      veth0 198.18.0.1  fd00:1::1   <----->    veth0 198.18.0.2  fd00:1::2
      tap   198.18.1.1  fd00:1:1::1 <----->    guest eth0 198.18.1.2  fd00:1:1::2 (kernel peer)

Every scenario makes its own WireGuard interfaces (unique names, fresh keys and ports) and removes
them when it ends, so the namespaces and the guest (which takes seconds to boot) are reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

from interop._harness import Namespace, ip, veth_pair, wait_until
from interop.errors import ScenarioFailure
from interop.guest import Image
from interop.hosts import (
    DaemonHost,
    Host,
    KernelHost,
    ProxyHost,
    WgpyHost,
    WireguardGoHost,
)
from interop.shell import NamespaceShell
from interop.vm import Guest

PEERS = ("kernel", "wireguard-go", "wgpy")
HostT = TypeVar("HostT", bound=DaemonHost)
VETH = "veth0"
TAP = "tap0"
GUEST_UNDERLAY_IFNAME = "eth0"
# (IPv4, IPv6) with prefix lengths: the wgpy side of the tap, and the guest's side.
TAP_LOCAL = ("198.18.1.1/24", "fd00:1:1::1/64")
TAP_GUEST = ("198.18.1.2/24", "fd00:1:1::2/64")
# Namespaces: IPv6 addresses usable at once; the primary address's removal promotes a secondary
# one (roaming swaps the primary).
SYSCTLS = (
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv4.conf.all.promote_secondaries=1",
    "net.ipv4.conf.default.promote_secondaries=1",
)


def _bare(prefix: str) -> str:
    return prefix.split("/")[0]


class Lab:
    """Namespaces W and P joined by a veth pair; the guest on a tap in W, booted when first used."""

    def __init__(self, image: Image, workdir: Path) -> None:
        self.image = image
        self.workdir = workdir
        self._stack = ExitStack()
        self.w: Namespace
        self.p: Namespace
        self._guest: Guest | None = None
        self._boots = 0
        self.guest_boot_seconds = 0.0

    def __enter__(self) -> Lab:
        with ExitStack() as stack:
            self.w, self.p = stack.enter_context(veth_pair())
            for ns in (self.w, self.p):
                ns.run("sysctl", "-q", "-w", *SYSCTLS)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._guest is not None:
            self._guest.stop()
        self._stack.close()

    @property
    def guest(self) -> Guest | None:
        return self._guest

    def hosts(self, peer: str) -> tuple[WgpyHost, Host]:
        """The wgpy under test in W, and the host of `peer` it faces."""
        local = self._daemons(WgpyHost, self.w, *self._local_underlay(peer))
        if peer == "kernel":
            guest = self._running_guest()
            return local, KernelHost(guest, GUEST_UNDERLAY_IFNAME, _addresses(TAP_GUEST))
        userspace = {"wireguard-go": WireguardGoHost, "wgpy": WgpyHost}[peer]
        return local, self._daemons(userspace, self.p, VETH, (self.p.ipv4, self.p.ipv6))

    def proxy_host(self, peer: str, options: Sequence[str]) -> ProxyHost:
        """`wgpy proxy` with `options` in W, facing `peer` (see ProxyHost)."""
        ifname, underlay = self._local_underlay(peer)
        return ProxyHost(self.w, self.image.bin_dir, self.workdir, ifname, underlay, options)

    def _local_underlay(self, peer: str) -> tuple[str, tuple[str, str]]:
        """Where W reaches `peer`: the tap to the guest, or the veth pair to P."""
        if peer == "kernel":
            return TAP, _addresses(TAP_LOCAL)
        return VETH, (self.w.ipv4, self.w.ipv6)

    def _daemons(
        self, kind: type[HostT], ns: Namespace, ifname: str, underlay: tuple[str, str]
    ) -> HostT:
        return kind(ns, self.image.bin_dir, self.workdir, ifname, underlay)

    def local_shell(self) -> NamespaceShell:
        return NamespaceShell(self.w, self.image.bin_dir)

    def _running_guest(self) -> Guest:
        """The guest, booted (again, if it died in an earlier scenario) and reachable from W."""
        if self._guest is not None and self._guest.alive():
            return self._guest
        if self._guest is not None:
            self._guest.stop()
            ip("-n", self.w.name, "link", "del", TAP)
        self._boots += 1
        self._guest = Guest(self.w, TAP, self.image, self.workdir, f"guest-{self._boots}")
        self.guest_boot_seconds = self._guest.boot()
        self._connect_guest(self._guest)
        return self._guest

    def _connect_guest(self, guest: Guest) -> None:
        for prefix in TAP_LOCAL:
            ip("-n", self.w.name, "address", "add", prefix, "dev", TAP)
        ip("-n", self.w.name, "link", "set", TAP, "up")
        guest.run(
            f"ip link set {GUEST_UNDERLAY_IFNAME} up\n"
            + "".join(f"ip address add {p} dev {GUEST_UNDERLAY_IFNAME}\n" for p in TAP_GUEST)
        ).check("configuring the guest's network")
        shell = self.local_shell()

        def reachable() -> bool:
            return all(
                shell.run(f"ping -c 1 -W 1 {_bare(prefix)}").status == 0 for prefix in TAP_GUEST
            )

        if not wait_until(reachable, 30.0, interval=0.5):
            raise ScenarioFailure("the guest does not answer pings on its tap link")


def _addresses(prefixes: tuple[str, str]) -> tuple[str, str]:
    return _bare(prefixes[0]), _bare(prefixes[1])
