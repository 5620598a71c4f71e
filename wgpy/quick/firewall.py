"""The firewall of a full tunnel, as linux.bash add_default and remove_firewall write it. Pure.

For each family with a /0 in table auto, wg-quick adds a table `wg-quick-IFNAME` that

- drops packets for the interface's own addresses arriving on another interface, unless their
  source is local (chain preraw), so nobody on the LAN can reach the tunnel's addresses;
- copies the fwmark of the tunnel's own UDP packets into conntrack on the way out (postmangle)
  and back onto the replies on the way in (premangle), so the replies take the same route.

Where nftables is missing it writes the same rules for iptables-restore, tagged with a comment so
that `down` finds them again.
"""

from __future__ import annotations

from dataclasses import dataclass

from wgpy.quick.steps import Family
from wgpy.uapi import IPAddress, format_ip

PRERAW_PRIORITY = -300  # NF_IP_PRI_RAW
MANGLE_PRIORITY = -150  # NF_IP_PRI_MANGLE
RTN_LOCAL = 2  # what `fib saddr type` yields for a local source address
IPPROTO_UDP = 17


@dataclass(frozen=True)
class GuardTable:
    family: Family
    ifname: str
    addresses: tuple[IPAddress, ...]  # the interface's addresses of this family, in dump order
    mark: int

    @property
    def name(self) -> str:
        return f"wg-quick-{self.ifname}"

    @property
    def nft_family(self) -> str:
        return "ip" if self.family == 4 else "ip6"

    def nft_script(self) -> str:
        """The input of `nft -f` in add_default, byte for byte."""
        pf, table = self.nft_family, f"{self.nft_family} {self.name}"
        lines = [
            f"add table {table}",
            f"add chain {table} preraw {{ type filter hook prerouting priority -300; }}",
            f"add chain {table} premangle {{ type filter hook prerouting priority -150; }}",
            f"add chain {table} postmangle {{ type filter hook postrouting priority -150; }}",
        ]
        lines += [
            f'add rule {table} preraw iifname != "{self.ifname}" {pf} daddr {format_ip(address)}'
            " fib saddr type != local drop"
            for address in self.addresses
        ]
        lines += [
            f"add rule {table} postmangle meta l4proto udp mark {self.mark} ct mark set mark ",
            f"add rule {table} premangle meta l4proto udp meta mark set ct mark ",
        ]
        return "".join(f"{line}\n" for line in lines)

    def iptables_script(self) -> str:
        """The input of `iptables-restore -n` (or ip6tables-) in add_default, byte for byte."""
        marker = comment(self.ifname)
        lines = ["*raw"]
        lines += [
            f"-I PREROUTING ! -i {self.ifname} -d {format_ip(address)} -m addrtype"
            f" ! --src-type LOCAL -j DROP {marker}"
            for address in self.addresses
        ]
        lines += [
            "COMMIT",
            "*mangle",
            f"-I POSTROUTING -m mark --mark {self.mark} -p udp -j CONNMARK --save-mark {marker}",
            f"-I PREROUTING -p udp -j CONNMARK --restore-mark {marker}",
            "COMMIT",
        ]
        return "".join(f"{line}\n" for line in lines)


def comment(ifname: str) -> str:
    return f'-m comment --comment "wg-quick(8) rule for {ifname}"'


def iptables_removal(saved: str, ifname: str) -> str | None:
    """remove_firewall: from `iptables-save` output, the script that deletes this interface's
    rules (its table headers, COMMITs and each of its -A lines as -D), or None if it has none."""
    marker = comment(ifname)
    lines = []
    found = False
    for line in saved.splitlines():
        rule = line.startswith("-A ") and marker in line
        if not (line.startswith("*") or line == "COMMIT" or rule):
            continue
        found = found or rule
        lines.append("-D" + line[2:] if rule else line)
    return "".join(f"{line}\n" for line in lines) if found else None
