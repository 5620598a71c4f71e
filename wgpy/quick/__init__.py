"""wgpy-quick: wg-quick(8) for wgpy, one plan of steps at a time.

`wgpy-quick up` takes the steps of wireguard-tools' src/wg-quick/linux.bash in its order. The
steps are planned first, purely, from the parsed config and a look at the host (`plan`), then
carried out by a thin executor (`execute`) that undoes what it did if any step fails:

    commands    up, down, save and strip, from an argument to a plan carried out
    configfile  which file and interface an argument names; `save`'s atomic write
    plan        the steps of up and down, and what each one undoes (pure)
    firewall    the nftables table and iptables rules that guard a full tunnel (pure)
    observe     what the plan needs to know about the host, read through pyroute2
    execute     carries out a plan: netlink, nftables, resolvconf, hooks, the device
    netlink     rtnetlink messages as iproute2 sends them (addresses, routes, rules, links)
    nftables    the guard table over nfnetlink, in one batch
    dns         resolvconf, as wg-quick drives it
    device      the wgpy daemon: start it, wait for it to stop (wgpy.client talks to it)
    interrupt   SIGINT and SIGTERM: before any change, between steps, during a rollback
"""

from __future__ import annotations

from wgpy.errors import WgpyError


class QuickError(WgpyError):
    """`wgpy-quick` cannot go on; the message says why, in wg-quick's words where it has some."""
