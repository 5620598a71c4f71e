"""Carries out a plan, printing each step as wg-quick does (`[#] command` on standard error).

`up` is all or nothing: when a step fails, SIGINT or SIGTERM arrives, or the log's reader goes
away (a closed pipe), the steps done so far are undone in reverse (linux.bash does the same with
`trap del_if`); a signal waits for the step under way to end (wgpy.quick.interrupt). `down` goes
on past the steps wg-quick runs with `|| true`, stops at any other failure, and finishes before
it honours a signal.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from wgpy import client
from wgpy.config import serialize
from wgpy.errors import UapiError
from wgpy.quick import QuickError, configfile, device, dns, netlink, nftables, observe, steps
from wgpy.quick.firewall import GuardTable
from wgpy.quick.interrupt import (
    Interrupted,
    ignored_from_now,
    signal_name,
    signals_deferred,
    signals_ignored,
)
from wgpy.quick.plan import saved_config
from wgpy.uapi import DeviceUpdate

# How long `down` waits for the daemon to see its interface gone and remove its socket, so that
# an `up` right after it finds the name free.
DAEMON_EXIT_TIMEOUT = 5.0
_EXPECTED = (OSError, NetlinkError, subprocess.CalledProcessError, UapiError, QuickError)


class StepFailed(QuickError):
    def __init__(self, step: steps.Step, reason: str) -> None:
        self.step = step
        super().__init__(f"{step}: {reason}")


class Executor:
    def __init__(
        self,
        ipr: IPRoute,
        log: TextIO = sys.stderr,
        start_daemon: Callable[[str], None] = device.start,
    ) -> None:
        self.ipr = ipr
        self.log = log
        self.start_daemon = start_daemon
        self.log_closed = False
        self._handlers: dict[type[steps.Step], Callable[[Any], None]] = {
            steps.CreateInterface: self._create_interface,
            steps.DeleteInterface: self._delete_interface,
            steps.RunHook: self._run_hook,
            steps.ConfigureDevice: self._configure_device,
            steps.SetFwmark: self._set_fwmark,
            steps.AddAddress: self._add_address,
            steps.SetMtuUp: self._set_mtu_up,
            steps.SetDns: self._set_dns,
            steps.UnsetDns: self._unset_dns,
            steps.AddRoute: self._add_route,
            steps.AddRule: self._add_rule,
            steps.DeleteRule: self._delete_rule,
            steps.SetSysctl: self._set_sysctl,
            steps.AddFirewall: self._add_firewall,
            steps.DeleteNftTable: self._delete_nft_table,
            steps.DeleteIptablesRules: self._delete_iptables_rules,
            steps.SaveConfig: self._save_config,
        }

    def up(self, plan: Sequence[steps.Step], ignore_signals_after: bool = False) -> None:
        """Run every step; on a failure, a signal or a closed log, undo the steps done, then
        raise (Interrupted for a signal or a closed log). With `ignore_signals_after`, for a
        program that exits once up is done, a signal after the last step changes nothing."""
        undo: list[steps.Step] = []
        try:
            with signals_deferred() as pending:
                for step in plan:
                    inverse = step.undo()
                    try:
                        self.run(step)
                    except StepFailed:
                        if step.may_fail_halfway and inverse is not None:
                            undo.append(inverse)
                        self._stop_if_asked(pending)  # a hook failed on the same Ctrl-C: say so
                        raise
                    if inverse is not None:
                        undo.append(inverse)
                    self._stop_if_asked(pending)
                if ignore_signals_after:
                    ignored_from_now()
        except BaseException as error:
            with signals_ignored():
                self._roll_back(reversed(undo))
            if isinstance(error, Interrupted):
                raise Interrupted(error.reason, "rolled back") from None
            raise

    def down(self, plan: Sequence[steps.Step], ignore_signals_after: bool = False) -> None:
        with signals_deferred() as pending:
            for step in plan:
                if isinstance(step, steps.BestEffort):
                    self._try(step.step)
                else:
                    self.run(step)
            if ignore_signals_after and not pending:
                ignored_from_now()
        if pending:
            raise Interrupted(signal_name(pending[0]), "taken down first")

    def run(self, step: steps.Step) -> None:
        self._say(f"[#] {step}")
        try:
            self._handlers[type(step)](step)
        except _EXPECTED as error:
            raise StepFailed(step, _reason(error)) from error

    def _stop_if_asked(self, pending: list[int]) -> None:
        if pending:
            raise Interrupted(signal_name(pending[0]))
        if self.log_closed:
            raise Interrupted("its output was closed")

    def _say(self, line: str) -> None:
        """Log a line; once the log's reader is gone, log no more (and `up` stops)."""
        if self.log_closed:
            return
        try:
            print(line, file=self.log, flush=True)
        except BrokenPipeError:
            self.log_closed = True

    def _roll_back(self, done: Iterable[steps.Step]) -> None:
        for step in done:
            self._try(step)

    def _try(self, step: steps.Step) -> None:
        try:
            self.run(step)
        except StepFailed as failure:
            self._say(f"[!] {failure}")

    # The steps ------------------------------------------------------------------------------------

    def _create_interface(self, step: steps.CreateInterface) -> None:
        self.start_daemon(step.ifname)

    def _delete_interface(self, step: steps.DeleteInterface) -> None:
        netlink.delete_link(self.ipr, self._index(step.ifname))
        device.wait_until_stopped(step.ifname, DAEMON_EXIT_TIMEOUT)

    def _run_hook(self, step: steps.RunHook) -> None:
        # execute_hooks runs `(eval "$hook")` inside wg-quick's `set -e -o pipefail` and extglob.
        command = ["bash", "-O", "extglob", "-e", "-o", "pipefail", "-c", step.command]
        subprocess.run(command, check=True)

    def _configure_device(self, step: steps.ConfigureDevice) -> None:
        client.set_device(step.ifname, step.update)

    def _set_fwmark(self, step: steps.SetFwmark) -> None:
        client.set_device(step.ifname, DeviceUpdate(fwmark=step.fwmark))

    def _add_address(self, step: steps.AddAddress) -> None:
        netlink.add_address(self.ipr, self._index(step.ifname), step.address)

    def _set_mtu_up(self, step: steps.SetMtuUp) -> None:
        netlink.set_mtu_up(self.ipr, self._index(step.ifname), step.mtu)

    def _set_dns(self, step: steps.SetDns) -> None:
        dns.add_record(step.resolvconf, step.record, step.text())

    def _unset_dns(self, step: steps.UnsetDns) -> None:
        dns.delete_record(step.resolvconf, step.record)

    def _add_route(self, step: steps.AddRoute) -> None:
        table = steps.MAIN_TABLE if step.table is None else step.table
        netlink.add_route(self.ipr, self._index(step.ifname), step.prefix, table)

    def _add_rule(self, step: steps.AddRule) -> None:
        netlink.add_rule(self.ipr, step.rule)

    def _delete_rule(self, step: steps.DeleteRule) -> None:
        netlink.delete_rule(self.ipr, step.rule)

    def _set_sysctl(self, step: steps.SetSysctl) -> None:
        (observe.SYSCTL / step.key.replace(".", "/")).write_text(f"{step.value}\n")

    def _add_firewall(self, step: steps.AddFirewall) -> None:
        messages = netlink.addresses(self.ipr, self._index(step.ifname), step.family)
        addresses = tuple(netlink.interface_of(message).ip for message in messages)
        guard = GuardTable(step.family, step.ifname, addresses, step.mark)
        if step.backend == "nftables":
            nftables.apply(guard)
        else:
            _iptables_restore(step.family, guard.iptables_script())

    def _delete_nft_table(self, step: steps.DeleteNftTable) -> None:
        nftables.delete_table(step.family, step.name)

    def _delete_iptables_rules(self, step: steps.DeleteIptablesRules) -> None:
        script = observe.iptables_removal(step.family, step.ifname)
        if script is not None:
            _iptables_restore(step.family, script)

    def _save_config(self, step: steps.SaveConfig) -> None:
        index = self._index(step.ifname)
        # Leave out what the kernel adds by itself (the IPv6 link-local address of a TUN).
        addresses = [
            netlink.interface_of(message)
            for message in netlink.addresses(self.ipr, index)
            if not message.get_attr("IFA_PROTO")
        ]
        resolvconf = dns.find_resolvconf()
        record = dns.record_prefix(resolvconf) + step.ifname
        nameservers, search = dns.parse_record(dns.read_record(resolvconf, record))
        mtu = netlink.link_mtu(self.ipr, index) or 0
        saved = saved_config(
            step.config, client.get_device(step.ifname), addresses, nameservers, search, mtu
        )
        configfile.write_atomically(Path(step.path), serialize(saved))

    def _index(self, ifname: str) -> int:
        index = netlink.link_index(self.ipr, ifname)
        if index is None:
            raise QuickError(f"`{ifname}' does not exist")
        return index


def _iptables_restore(family: int, script: str) -> None:
    command = "iptables-restore" if family == 4 else "ip6tables-restore"
    subprocess.run([command, "-n"], input=script, text=True, check=True)


def _reason(error: BaseException) -> str:
    if isinstance(error, NetlinkError):
        return str(error.args[1]) if len(error.args) > 1 else str(error)
    if isinstance(error, subprocess.CalledProcessError):
        return f"exited with status {error.returncode}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
