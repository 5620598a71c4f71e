"""wgpy-quick against the real wg-quick, in network namespaces.

Differential: for every example in configs/, a namespace looks the same after `wgpy-quick up` as
an identical namespace after `wg-quick up` (addresses, links, routes in every table, rules, the
nftables ruleset, sysctls, what resolvconf was told, the device's configuration), and again
after `down`. wg-quick runs inside its namespace with wireguard-go as the device, from a copy
whose add_if always takes the userspace path, so that a kernel with the WireGuard module gives
the same reference as one without.

Neither tool touches the host's resolver: both find a stand-in resolvconf first on their PATH
that records what it is told, and host names resolve through the namespace's own /etc/hosts
(`ip netns exec` mounts /etc/netns/NAME/hosts over it).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from peers import end_processes, userspace_wg_quick

from wgpy.client import socket_path
from wgpy.lab.netns import (
    Namespace,
    can_ping,
    ip,
    ip_up,
    namespace,
    unique_ifname,
    veth_pair,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.conf"))
WGPY_QUICK = (sys.executable, "-m", "wgpy.cli.quick")
NEEDS = ("wg-quick", "wg", "wireguard-go", "nft", "bash")

# The uplink of a client namespace: the far end of its veth is its default gateway, and the veth's
# MTU differs from 1500 so that the automatic MTU (1472 - 80) shows which route it came from.
UPLINK_MTU = 1472
VPN_SERVER = "192.0.2.1"  # vpn.example.com in the examples
# A fixed secret for the IPv6 link-local address the kernel gives a TUN when it comes up: the
# address (which the firewall guards) is then the same in every namespace for the same name.
STABLE_SECRET = "fd00::5ec:7e7"
SYSCTLS = (
    "net.ipv4.conf.all.src_valid_mark",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
)
# Not operstate: a TUN's reads UP or UNKNOWN depending on whether its carrier ever changed, which
# is the device's doing (wgpy re-attaches its TUN to turn offloads on), not wg-quick's.
LINK_KEYS = ("ifname", "flags", "mtu", "qdisc", "group", "txqlen", "link_type", "ifalias")

FAKE_RESOLVCONF = """\
#!/bin/bash
# A stand-in for resolvconf(8): records what it is told instead of changing the resolver.
dir={dir}
echo "resolvconf $*" >> "$dir/log"
case $1 in
  -a) cat > "$dir/$2"; cat "$dir/$2" >> "$dir/log" ;;
  -d) rm -f "$dir/$2" ;;
  -l) cat "$dir/$2" 2>/dev/null ;;
esac
"""
pytestmark = pytest.mark.netns(*NEEDS)


@dataclass(frozen=True)
class Tools:
    """The two implementations under test, and what resolvconf was told while they ran."""

    bin: Path
    resolvconf_dir: Path

    def wg_quick(self, *args: str) -> tuple[str, ...]:
        env = f"WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go PATH={self.bin}:{os.environ['PATH']}"
        return ("env", *env.split(), str(self.bin / "wg-quick"), *args)

    def wgpy_quick(self, *args: str) -> tuple[str, ...]:
        return ("env", f"PATH={self.bin}:{os.environ['PATH']}", *WGPY_QUICK, *args)

    def resolvconf_log(self) -> str:
        log = self.resolvconf_dir / "log"
        return log.read_text() if log.exists() else ""


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    return make_tools(tmp_path)


def make_tools(root: Path) -> Tools:
    bin_dir, resolvconf_dir = root / "bin", root / "resolvconf"
    bin_dir.mkdir()
    resolvconf_dir.mkdir()
    userspace_wg_quick(bin_dir / "wg-quick")
    _executable(bin_dir / "resolvconf", FAKE_RESOLVCONF.format(dir=resolvconf_dir))
    return Tools(bin_dir, resolvconf_dir)


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


# Namespaces ---------------------------------------------------------------------------------------


@contextmanager
def hosts_file(ns: Namespace, text: str) -> Iterator[None]:
    """/etc/hosts as processes in `ns` see it (through `ip netns exec`)."""
    directory = Path("/etc/netns") / ns.name
    directory.mkdir(parents=True)
    try:
        (directory / "hosts").write_text(text)
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def client_namespace() -> Iterator[Namespace]:
    """A namespace whose default routes (IPv4 and IPv6) leave through a veth to a far end."""
    with veth_pair() as (client, far), hosts_file(client, f"{VPN_SERVER} vpn.example.com\n"):
        ip("-n", client.name, "link", "set", "veth0", "mtu", str(UPLINK_MTU))
        without_link_local(client, "veth0")
        ip("-n", client.name, "route", "add", "default", "via", far.ipv4)
        ip("-n", client.name, "-6", "route", "add", "default", "via", far.ipv6)
        client.run("sysctl", "-q", f"net.ipv6.conf.default.stable_secret={STABLE_SECRET}")
        yield client


def without_link_local(ns: Namespace, ifname: str) -> None:
    """Drop the IPv6 link-local address of `ifname`: it comes from a random MAC address, and its
    duplicate address detection ends at some moment during the test. Snapshots of two
    namespaces, or of one at two moments, then compare."""
    ip("-n", ns.name, "link", "set", ifname, "addrgenmode", "none")
    ip("-n", ns.name, "-6", "address", "flush", "dev", ifname, "scope", "link")


def snapshot(ns: Namespace) -> dict[str, Any]:
    """Everything wg-quick changes in a namespace, in a form two namespaces can be compared in."""
    links = _json(ns, "ip", "-j", "-d", "link", "show")
    return {
        "links": [{key: link.get(key) for key in LINK_KEYS} for link in links],
        "addresses": {
            link["ifname"]: [
                # "tentative" is IPv6 duplicate address detection still running: timing, not state.
                _without(a, "valid_life_time", "preferred_life_time", "tentative")
                for a in link["addr_info"]
            ]
            for link in _json(ns, "ip", "-j", "address", "show")
        },
        "routes": {
            family: sorted(
                map(
                    _canonical, _json(ns, "ip", family, "-j", "-d", "route", "show", "table", "all")
                )
            )
            for family in ("-4", "-6")
        },
        "rules": {family: _json(ns, "ip", family, "-j", "rule", "show") for family in ("-4", "-6")},
        "nftables": [
            item
            for item in _json(ns, "nft", "-j", "list", "ruleset")["nftables"]
            if "metainfo" not in item
        ],
        "sysctl": {key: ns.run("sysctl", "-n", key).stdout.strip() for key in SYSCTLS},
    }


def device_config(ns: Namespace, ifname: str, fixed_port: bool) -> list[str]:
    """`wg showconf` section by section, peers sorted (wireguard-go lists them in Go's map
    order), without the port the device picked at random unless the config fixed it."""
    text = ns.run("wg", "showconf", ifname).stdout
    lines = [line for line in text.splitlines() if fixed_port or not line.startswith("ListenPort")]
    interface, *peers = "\n".join(lines).split("\n\n")
    return [interface, *sorted(peers)]


def assert_same(expected: Any, actual: Any) -> None:
    """Assert two snapshots are equal, showing a unified diff where not (pytest truncates)."""
    old, new = (json.dumps(x, indent=1, sort_keys=True).splitlines() for x in (expected, actual))
    diff = "\n".join(difflib.unified_diff(old, new, "expected", "actual", lineterm=""))
    assert expected == actual, f"\n{diff}"


def _json(ns: Namespace, *cmd: str) -> Any:
    return json.loads(ns.run(*cmd).stdout or "[]")


def _without(item: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key not in keys}


def _canonical(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


# Running a tool -----------------------------------------------------------------------------------


@dataclass
class Run:
    before: dict[str, Any]
    up: dict[str, Any]
    device: list[str]
    down: dict[str, Any]
    resolvconf: str


def run_up_and_down(
    command: Callable[..., tuple[str, ...]], tools: Tools, text: str, ifname: str, tmp: Path
) -> Run:
    """In a fresh client namespace: up, look, down, look; and what resolvconf was told."""
    conf = _write_config(tmp, ifname, text)
    with client_namespace() as ns:
        before = snapshot(ns)
        ns.run(*command("up", str(conf)))
        up = snapshot(ns)
        device = device_config(ns, ifname, fixed_port="ListenPort" in text)
        ns.run(*command("down", str(conf)))
        down = snapshot(ns)
    _wait_for_socket_removal(ifname)
    resolvconf = tools.resolvconf_log()
    (tools.resolvconf_dir / "log").unlink(missing_ok=True)
    return Run(before, up, device, down, resolvconf)


def _write_config(directory: Path, ifname: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    directory.chmod(0o700)
    path = directory / f"{ifname}.conf"
    path.write_text(text)
    path.chmod(0o600)
    return path


def _wait_for_socket_removal(ifname: str) -> None:
    # The next run reuses the name; its device must find the configuration socket gone.
    assert wait_until(lambda: not socket_path(ifname).exists(), 5)


# The differential ---------------------------------------------------------------------------------


@pytest.mark.parametrize("example", CONFIGS, ids=lambda path: path.stem)
def test_up_and_down_leave_the_namespace_as_wg_quick_does(
    example: Path, tools: Tools, tmp_path: Path
) -> None:
    text, ifname = example.read_text(), unique_ifname("wq")
    reference = run_up_and_down(tools.wg_quick, tools, text, ifname, tmp_path / "reference")
    ours = run_up_and_down(tools.wgpy_quick, tools, text, ifname, tmp_path / "ours")

    assert reference.up != reference.before  # the example changes something
    assert_same(reference.before, ours.before)
    assert_same(reference.up, ours.up)
    assert ours.device == reference.device
    assert_same(reference.down, ours.down)
    assert ours.resolvconf == reference.resolvconf


def test_a_config_keyed_by_its_post_up_hook_comes_up_as_with_wg_quick(
    tools: Tools, tmp_path: Path
) -> None:
    # wg-quick(8)'s pattern for a key kept in a secret store: no PrivateKey line at all.
    example = (REPO / "configs/client-split.conf").read_text()
    key_line = next(line for line in example.splitlines() if line.startswith("PrivateKey"))
    private_key = key_line.partition("=")[2].strip()
    text = _with_interface_lines(
        example.replace(f"{key_line}\n", ""),
        f"PostUp = wg set %i private-key <(echo {private_key})",
    )
    ifname = unique_ifname("wq")
    reference = run_up_and_down(tools.wg_quick, tools, text, ifname, tmp_path / "reference")
    ours = run_up_and_down(tools.wgpy_quick, tools, text, ifname, tmp_path / "ours")

    assert f"PrivateKey = {private_key}" in reference.device[0]
    assert ours.device == reference.device
    assert_same(reference.up, ours.up)


# A VPN end to end -----------------------------------------------------------------------------

INTERNET_HOST = ("192.0.2.100", "fd00:3::100")


@contextmanager
def vpn_namespaces() -> Iterator[tuple[Namespace, Namespace, Namespace]]:
    """client -(eth0 198.18.0.2 / eth1 198.18.0.1)- server -(eth0 192.0.2.1 / eth0)- internet.

    The server is the client's default gateway and answers as vpn.example.com. The internet host
    has no route back to the client's network: it only answers what the server masquerades,
    which is what comes out of the tunnel (server.conf).
    """
    with namespace() as client, namespace() as server, namespace() as internet:
        _veth(client, "eth0", server, "eth1")
        _veth(server, "eth0", internet, "eth0")
        ip_up(client, "eth0", "198.18.0.2/24", "fd00:1::2/64")
        without_link_local(client, "eth0")
        ip_up(server, "eth1", "198.18.0.1/24", "fd00:1::1/64")
        ip_up(server, "eth0", f"{VPN_SERVER}/24", "fd00:3::1/64")
        ip_up(internet, "eth0", f"{INTERNET_HOST[0]}/24", f"{INTERNET_HOST[1]}/64")
        ip("-n", client.name, "route", "add", "default", "via", "198.18.0.1")
        ip("-n", client.name, "-6", "route", "add", "default", "via", "fd00:1::1")
        links = ((client, "eth0"), (server, "eth1"), (server, "eth0"), (internet, "eth0"))
        assert wait_until(lambda: all(_operational(ns, ifname) for ns, ifname in links), 10)
        with hosts_file(client, f"{VPN_SERVER} vpn.example.com\n"):
            yield client, server, internet


def _veth(a: Namespace, a_name: str, b: Namespace, b_name: str) -> None:
    ip("-n", a.name, "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b.name)


def _operational(ns: Namespace, ifname: str) -> bool:
    return " state UP " in ns.run("ip", "-o", "link", "show", ifname).stdout


def _tx_packets(ns: Namespace, ifname: str) -> int:
    (link,) = _json(ns, "ip", "-j", "-s", "link", "show", ifname)
    return int(link["stats64"]["tx"]["packets"])


def _routing(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot less its sysctls (src_valid_mark stays 1 after down, as wg-quick leaves it)."""
    return {key: value for key, value in snapshot.items() if key != "sysctl"}


@pytest.mark.netns(*NEEDS, "ping", "iptables", "ip6tables")
@pytest.mark.parametrize("server_tool", ["wg-quick", "wgpy-quick"])
def test_a_full_tunnel_client_reaches_the_internet_only_through_the_server(
    server_tool: str, tools: Tools, tmp_path: Path
) -> None:
    server_if, client_if = unique_ifname("wqs"), unique_ifname("wqc")
    server_conf = _write_config(tmp_path, server_if, (REPO / "configs/server.conf").read_text())
    client_conf = _write_config(
        tmp_path, client_if, (REPO / "configs/client-full.conf").read_text()
    )
    server_command = tools.wg_quick if server_tool == "wg-quick" else tools.wgpy_quick
    with vpn_namespaces() as (client, server, _):
        server.run(*server_command("up", str(server_conf)))
        before = snapshot(client)
        assert not any(can_ping(client, host, deadline=1) for host in INTERNET_HOST)

        client.run(*tools.wgpy_quick("up", str(client_conf)))
        sent_before = _tx_packets(client, client_if)
        assert all(can_ping(client, host) for host in INTERNET_HOST)
        assert _tx_packets(client, client_if) >= sent_before + len(INTERNET_HOST)
        for host in INTERNET_HOST:
            assert f"dev {client_if} " in client.run("ip", "route", "get", host).stdout
        # The tunnel's own packets carry its fwmark, and go to the server outside the tunnel.
        outside = client.run("ip", "route", "get", VPN_SERVER, "mark", "51820").stdout
        assert "dev eth0 " in outside

        client.run(*tools.wgpy_quick("down", str(client_conf)))
        assert_same(_routing(before), _routing(snapshot(client)))
        assert not any(can_ping(client, host, deadline=1) for host in INTERNET_HOST)
        server.run(*server_command("down", str(server_conf)))
    for ifname in (server_if, client_if):
        _wait_for_socket_removal(ifname)


# Failures -----------------------------------------------------------------------------------------


def _with_interface_lines(text: str, *lines: str) -> str:
    """An example config with more lines at the end of its [Interface] section."""
    return text.replace("\n[Peer]", "".join(f"{line}\n" for line in lines) + "\n[Peer]", 1)


def run_failing_up(
    command: Callable[..., tuple[str, ...]], tools: Tools, text: str, ifname: str, tmp: Path
) -> tuple[dict[str, Any], dict[str, Any], str]:
    conf = _write_config(tmp, ifname, text)
    with client_namespace() as ns:
        before = snapshot(ns)
        assert ns.run(*command("up", str(conf)), check=False).returncode != 0
        after = snapshot(ns)
    _wait_for_socket_removal(ifname)
    resolvconf = tools.resolvconf_log()
    (tools.resolvconf_dir / "log").unlink(missing_ok=True)
    return before, after, resolvconf


def test_a_failing_post_up_hook_undoes_everything_as_wg_quick_does(
    tools: Tools, tmp_path: Path
) -> None:
    text = _with_interface_lines((REPO / "configs/client-full.conf").read_text(), "PostUp = false")
    ifname = unique_ifname("wq")
    _, reference, reference_dns = run_failing_up(
        tools.wg_quick, tools, text, ifname, tmp_path / "r"
    )
    before, ours, our_dns = run_failing_up(tools.wgpy_quick, tools, text, ifname, tmp_path / "o")

    assert_same(reference, ours)
    assert_same(_routing(before), _routing(ours))
    assert our_dns == reference_dns
    assert our_dns.splitlines()[-1] == f"resolvconf -d {ifname} -f"


def test_up_refuses_an_interface_that_exists_and_touches_nothing(
    tools: Tools, tmp_path: Path
) -> None:
    ifname = unique_ifname("wq")
    conf = _write_config(tmp_path, ifname, (REPO / "configs/client-full.conf").read_text())
    with client_namespace() as ns:
        ip("-n", ns.name, "link", "add", ifname, "type", "veth", "peer", "name", f"{ifname}p")
        before = snapshot(ns)
        result = ns.run(*tools.wgpy_quick("up", str(conf)), check=False)
        assert result.returncode == 1
        assert f"`{ifname}' already exists" in result.stderr
        assert_same(before, snapshot(ns))
    assert tools.resolvconf_log() == ""
    assert not socket_path(ifname).exists()


BAD_LINES = {
    "unknown key": ("Colour = blue", "Colour: unknown key in [Interface]"),
    "bad address": ("Address = 198.19.8.2/33", "Address: "),
    "bad key": ("PrivateKey = c2hvcnQ=", "PrivateKey: "),
    "bad fwmark": ("FwMark = mark", "FwMark: "),
}


@pytest.mark.parametrize("line, error", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_up_with_a_bad_config_names_file_line_and_key_and_applies_nothing(
    line: str, error: str, tools: Tools, tmp_path: Path
) -> None:
    ifname = unique_ifname("wq")
    text = _with_interface_lines((REPO / "configs/client-split.conf").read_text(), line)
    conf = _write_config(tmp_path, ifname, text)
    number = text.splitlines().index(line) + 1
    with client_namespace() as ns:
        before = snapshot(ns)
        result = ns.run(*tools.wgpy_quick("up", str(conf)), check=False)
        assert result.returncode == 1
        assert result.stderr.startswith(f"wgpy-quick: {conf}:{number}: {error}")
        assert_same(before, snapshot(ns))
    assert not socket_path(ifname).exists()


# save ---------------------------------------------------------------------------------------------


def test_save_writes_the_running_config_as_wg_quick_save_does(tools: Tools, tmp_path: Path) -> None:
    text = _with_interface_lines(
        (REPO / "configs/client-full.conf").read_text(),
        "ListenPort = 51821",
        "MTU = 1400",
        "PostUp = true",
        "PreDown = true",
    )
    ifname = unique_ifname("wq")
    reference, ours = (
        _saved(command, text, ifname, tmp_path / name)
        for command, name in ((tools.wg_quick, "reference"), (tools.wgpy_quick, "ours"))
    )
    # wgpy-quick also writes back the search domain, and leaves out the link-local address the
    # kernel gave the TUN (wg-quick, written for kernel WireGuard, saves it as an Address).
    expected = [line for line in reference.splitlines() if not line.startswith("Address = fe80:")]
    expected.insert(expected.index("DNS = fd00:8::1") + 1, "DNS = corp.example")
    assert ours.splitlines() == expected


def _saved(command: Callable[..., tuple[str, ...]], text: str, ifname: str, tmp: Path) -> str:
    conf = _write_config(tmp, ifname, text)
    with client_namespace() as ns:
        ns.run(*command("up", str(conf)))
        ns.run(*command("save", str(conf)))
        saved = conf.read_text()
        assert conf.stat().st_mode & 0o777 == 0o600
        assert list(tmp.iterdir()) == [conf]
        ns.run(*command("down", str(conf)))
    _wait_for_socket_removal(ifname)
    return saved


def test_save_config_on_down_keeps_what_changed_while_up(tools: Tools, tmp_path: Path) -> None:
    ifname = unique_ifname("wq")
    text = _with_interface_lines((REPO / "configs/psk.conf").read_text(), "SaveConfig = true")
    conf = _write_config(tmp_path, ifname, text)
    server_key = "hpVWQU+/sVq3wjDycxiVWgoadwkYVoumsYjjMDcal1w="
    with client_namespace() as ns:
        ns.run(*tools.wgpy_quick("up", str(conf)))
        ns.run("wg", "set", ifname, "peer", server_key, "persistent-keepalive", "42")
        ns.run(*tools.wgpy_quick("down", str(conf)))
    _wait_for_socket_removal(ifname)
    saved = conf.read_text()
    assert "PersistentKeepalive = 42" in saved
    assert "SaveConfig = true" in saved
    assert conf.stat().st_mode & 0o777 == 0o600


# Interruptions ------------------------------------------------------------------------------------

# The `[#]` lines of a full-tunnel `up` (client-full.conf): an interruption comes after each.
FULL_TUNNEL_STEPS = 16


@dataclass
class Interruption:
    """How `up` is cut short: a signal after `delay` seconds or after the n-th `[#]` line, or the
    reader of its log going away after that line."""

    after_line: int = 0
    delay: float = 0.0
    signum: int = signal.SIGINT
    close_log: bool = False


INTERRUPTIONS = {
    **{f"ctrl-c at {delay}s": Interruption(delay=delay) for delay in (0.0, 0.05, 0.1, 0.2)},
    **{f"ctrl-c after line {n}": Interruption(after_line=n) for n in range(1, FULL_TUNNEL_STEPS)},
    **{f"sigterm after line {n}": Interruption(n, signum=signal.SIGTERM) for n in (1, 2, 7)},
    **{f"log closed after line {n}": Interruption(n, close_log=True) for n in (1, 2, 5, 9)},
}


def interrupted_up(ns: Namespace, command: tuple[str, ...], how: Interruption) -> tuple[int, str]:
    """Run `command` as a terminal runs it (its own process group, which a Ctrl-C signals
    whole), interrupt it as `how` says; its exit status and what it printed."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, *command],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stderr is not None
    with process.stderr as log:
        lines = [log.readline() for _ in range(how.after_line)]
        time.sleep(how.delay)
        if how.close_log:
            log.close()
            return process.wait(30), "".join(lines)
        with suppress(ProcessLookupError):
            if how.signum == signal.SIGINT:
                os.killpg(process.pid, signal.SIGINT)
            else:
                process.send_signal(how.signum)
        rest = log.read()
    return process.wait(30), "".join(lines) + rest


@pytest.mark.parametrize("how", INTERRUPTIONS.values(), ids=INTERRUPTIONS.keys())
def test_an_interrupted_up_rolls_back_completely_and_says_so_in_one_line(
    how: Interruption, tools: Tools, tmp_path: Path
) -> None:
    ifname = unique_ifname("wqi")
    conf = _write_config(tmp_path, ifname, (REPO / "configs/client-full.conf").read_text())
    with client_namespace() as ns, _daemons_ended(ns):
        before = snapshot(ns)
        status, printed = interrupted_up(ns, tools.wgpy_quick("up", str(conf)), how)
        if status == 0:  # Every step was done before the interruption came: up stands.
            assert printed.count("[#] ") == FULL_TUNNEL_STEPS, printed
            ns.run(*tools.wgpy_quick("down", str(conf)))
        elif not _before_wgpy_ran(status, printed, how.signum):
            assert "Traceback" not in printed
            assert status == 130, printed
            if not how.close_log:
                name = signal.Signals(how.signum).name
                assert printed.splitlines()[-1] in (
                    f"wgpy-quick: interrupted by {name}; rolled back",
                    f"wgpy-quick: interrupted by {name}; nothing was changed",
                ), printed
        assert_same(_routing(before), _routing(snapshot(ns)))
    _wait_for_socket_removal(ifname)
    assert not [path.name for path in tools.resolvconf_dir.iterdir() if path.name != "log"]


@contextmanager
def _daemons_ended(ns: Namespace) -> Iterator[None]:
    """Should the test fail with a daemon left running, end it with the namespace."""
    try:
        yield
    finally:
        end_processes(ns)


def _before_wgpy_ran(status: int, printed: str, signum: int) -> bool:
    """Whether the signal came before wgpy-quick's `main` ran, which handles it first thing:
    while Python started or loaded the modules. Then the signal's default action ends the
    process, silently or after the interpreter's report of the KeyboardInterrupt it raised; in
    `site`, the interpreter gives up starting."""
    if printed.startswith("Fatal Python error: init_import_site"):
        return True
    return status == -signum and ", in main\n" not in printed
