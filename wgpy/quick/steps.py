"""The steps of `wgpy-quick up` and `down`: what each does, how wg-quick spells it, its undo.

Each step prints as the command wireguard-tools' src/wg-quick/linux.bash runs for it, and knows
the step that reverses it (`Step.undo`), so that a failed `up` can be rolled back in reverse.
Steps whose effect disappears with the interface (addresses, routes, the device configuration)
undo nothing: deleting the interface undoes them all. Pure data; `execute` carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wgpy.config import Config, IPInterface
from wgpy.uapi import AllowedIP, DeviceUpdate, format_prefix

Family = Literal[4, 6]
Firewall = Literal["nftables", "iptables"]

MAIN_TABLE = 254


@dataclass(frozen=True)
class Rule:
    """A policy routing rule of the two shapes wg-quick adds, or one it finds and deletes."""

    family: Family
    table: int
    fwmark: int | None = None
    invert: bool = False  # "not fwmark"
    suppress_prefixlength: int | None = None
    priority: int | None = None  # None lets the kernel choose, as `ip rule add` does
    from_all: bool = True  # no selector besides fwmark: `ip rule` prints "from all"

    def __str__(self) -> str:
        words = [f"priority {self.priority}"] if self.priority is not None else []
        if self.fwmark is not None:
            words += ["not"] if self.invert else []
            words.append(f"fwmark {self.fwmark}")
        words.append(f"table {'main' if self.table == MAIN_TABLE else self.table}")
        if self.suppress_prefixlength is not None:
            words.append(f"suppress_prefixlength {self.suppress_prefixlength}")
        return " ".join(words)


class Step:
    """One thing `up` or `down` does; `str()` is the command wg-quick runs for it."""

    # Whether a failure may leave part of the step done, so that a rollback undoes it too.
    may_fail_halfway = False

    def undo(self) -> Step | None:
        """The step that reverses this one, or None if deleting the interface does."""
        return None


@dataclass(frozen=True)
class CreateInterface(Step):
    ifname: str

    def __str__(self) -> str:
        return f"wgpy {self.ifname}"

    def undo(self) -> Step:
        return DeleteInterface(self.ifname)


@dataclass(frozen=True)
class DeleteInterface(Step):
    ifname: str

    def __str__(self) -> str:
        return f"ip link delete dev {self.ifname}"


@dataclass(frozen=True)
class RunHook(Step):
    command: str  # with %i already replaced, run by bash

    def __str__(self) -> str:
        return self.command


@dataclass(frozen=True)
class ConfigureDevice(Step):
    ifname: str
    update: DeviceUpdate

    def __str__(self) -> str:
        return f"wg addconf {self.ifname} <(wgpy-quick strip {self.ifname})"


@dataclass(frozen=True)
class SetFwmark(Step):
    ifname: str
    fwmark: int

    def __str__(self) -> str:
        return f"wg set {self.ifname} fwmark {self.fwmark}"


@dataclass(frozen=True)
class AddAddress(Step):
    ifname: str
    address: IPInterface

    def __str__(self) -> str:
        return f"ip -{self.address.version} address add {self.address} dev {self.ifname}"


@dataclass(frozen=True)
class SetMtuUp(Step):
    ifname: str
    mtu: int

    def __str__(self) -> str:
        return f"ip link set mtu {self.mtu} up dev {self.ifname}"


@dataclass(frozen=True)
class SetDns(Step):
    # resolvconf, in the terminal's process group, may be ended by a Ctrl-C after it has
    # written the record; its undo (`resolvconf -d -f`) is harmless where it had not.
    may_fail_halfway = True

    resolvconf: str
    record: str  # the resolvconf record: the interface name behind its prefix
    nameservers: tuple[str, ...]
    search: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"resolvconf -a {self.record} -m 0 -x"

    def text(self) -> str:
        """What resolvconf reads on its standard input (linux.bash set_dns)."""
        lines = [f"nameserver {server}" for server in self.nameservers]
        lines += [f"search {' '.join(self.search)}"] if self.search else []
        return "".join(f"{line}\n" for line in lines)

    def undo(self) -> Step:
        return UnsetDns(self.resolvconf, self.record)


@dataclass(frozen=True)
class UnsetDns(Step):
    resolvconf: str
    record: str

    def __str__(self) -> str:
        return f"resolvconf -d {self.record} -f"


@dataclass(frozen=True)
class AddRoute(Step):
    ifname: str
    prefix: AllowedIP
    table: int | None = None  # None: main, and wg-quick leaves the table out of the command

    def __str__(self) -> str:
        table = f" table {self.table}" if self.table is not None else ""
        prefix = format_prefix(self.prefix)
        return f"ip -{self.prefix.version} route add {prefix} dev {self.ifname}{table}"


@dataclass(frozen=True)
class AddRule(Step):
    rule: Rule

    def __str__(self) -> str:
        return f"ip -{self.rule.family} rule add {self.rule}"

    def undo(self) -> Step:
        return DeleteRule(self.rule)


@dataclass(frozen=True)
class DeleteRule(Step):
    rule: Rule

    def __str__(self) -> str:
        return f"ip -{self.rule.family} rule delete {self.rule}"


@dataclass(frozen=True)
class SetSysctl(Step):
    key: str
    value: str

    def __str__(self) -> str:
        return f"sysctl -q {self.key}={self.value}"


@dataclass(frozen=True)
class AddFirewall(Step):
    """The table (or rules) of linux.bash add_default for one family: drop packets for the
    interface's addresses that come from elsewhere, and keep the mark on the tunnel's own UDP
    packets through conntrack. Guards the addresses the interface has when the step runs."""

    family: Family
    ifname: str
    mark: int
    backend: Firewall = "nftables"

    def __str__(self) -> str:
        if self.backend == "iptables":
            return f"{_iptables(self.family)}-restore -n  # wg-quick(8) rules for {self.ifname}"
        return f"nft -f -  # table {_nft_family(self.family)} wg-quick-{self.ifname}"

    def undo(self) -> Step:
        if self.backend == "iptables":
            return DeleteIptablesRules(self.family, self.ifname)
        return DeleteNftTable(_nft_family(self.family), f"wg-quick-{self.ifname}")


@dataclass(frozen=True)
class DeleteNftTable(Step):
    family: str  # as nft names it: ip, ip6, inet, ...
    name: str

    def __str__(self) -> str:
        return f"nft delete table {self.family} {self.name}"


@dataclass(frozen=True)
class DeleteIptablesRules(Step):
    """Delete every rule commented "wg-quick(8) rule for IFNAME" (linux.bash remove_firewall)."""

    family: Family
    ifname: str

    def __str__(self) -> str:
        return f"{_iptables(self.family)}-restore -n  # delete wg-quick(8) rules for {self.ifname}"


@dataclass(frozen=True)
class SaveConfig(Step):
    ifname: str
    path: str
    config: Config  # the file as read: its wg-quick keys are written back

    def __str__(self) -> str:
        return f"wg showconf {self.ifname}"


@dataclass(frozen=True)
class BestEffort(Step):
    """A step whose failure is reported but does not stop `down` (`|| true` in linux.bash)."""

    step: Step

    def __str__(self) -> str:
        return str(self.step)


def _nft_family(family: Family) -> str:
    return "ip" if family == 4 else "ip6"


def _iptables(family: Family) -> str:
    return "iptables" if family == 4 else "ip6tables"
