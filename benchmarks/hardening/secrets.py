"""Secrets: private and preshared keys never leave wgpy unless asked for.

The audit looks everywhere a key could slip out: the daemon's log at LOG_LEVEL=debug through a
handshake, data, a `set` of both keys and rejected requests that carry keys; the repr() of every
object that holds one; the messages of errors raised on lines that contain one; `wgpy show`; and
the modes of the configuration socket and its directory. tests/unit/test_secrets.py and
tests/netns/test_secrets.py are the specification; this module counts what it finds for
docs/HARDENING.md.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import os
import re
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from benchmarks.hardening import Figure
from wgpy import client, config, uapi
from wgpy.cli import quick
from wgpy.config import Config, InterfaceConfig, PeerConfig
from wgpy.configure import get_reply
from wgpy.core import noise
from wgpy.core.device import Device, datagrams_of
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import generate_private_key, public_key
from wgpy.errors import ConfigError, UapiError
from wgpy.io import uapi_server
from wgpy.lab.netns import (
    STARTUP_TIMEOUT,
    WG_PORT,
    Namespace,
    can_ping,
    configure,
    one_peer_config,
    unique_ifname,
    veth_pair,
    wait_until,
)
from wgpy.quick.steps import ConfigureDevice, SaveConfig

AREA = "secrets"
INNER = ("192.0.2.1", "192.0.2.2")
WGPY = (sys.executable, "-m", "wgpy.cli.wgpy")
# wireguard-go binds the socket under umask 077 (ipc/uapi_linux.go UAPIOpen): 0777 & ~077. The
# execute bits mean nothing on a socket; connecting needs write permission, the owner's alone.
SOCKET_MODE = 0o600


# What a key looks like wherever it might leak.


def spellings(key: bytes) -> list[str]:
    """Every way wgpy or a tool writes a key: base64 (wg; with its '=' or without, as a line
    split at '=' leaves it), hex (the configuration protocol, either case), Python's bytes
    repr."""
    encoded = base64.b64encode(key).decode()
    return [encoded, encoded.rstrip("="), key.hex(), key.hex().upper(), repr(key)[2:-1]]


def leaked(text: str, secrets: list[bytes]) -> list[str]:
    """The spellings of `secrets` found in `text`."""
    return [spelling for key in secrets for spelling in spellings(key) if spelling in text]


# repr(): every object that holds a key.


@dataclass(frozen=True)
class Specimens:
    """Objects as a running device holds them, and the secrets they hold."""

    objects: dict[str, object]
    secrets: list[bytes]


def specimens() -> Specimens:
    """Two devices after a handshake in memory, mid-handshake state, and the configuration
    objects of the config file, the configuration protocol and wgpy-quick."""
    rng = os.urandom
    key_a, key_b, psk = generate_private_key(rng), generate_private_key(rng), rng(32)
    a, b = Device(rng, key_a), Device(rng, key_b)
    peer_b = a.add_peer(
        public_key(key_b), preshared_key=psk, endpoint=Endpoint("192.0.2.2", WG_PORT)
    )
    peer_a = b.add_peer(
        public_key(key_a), preshared_key=psk, endpoint=Endpoint("192.0.2.1", WG_PORT)
    )
    a.allowed_ips.insert(ipaddress.ip_network("10.0.0.2/32"), peer_b)
    initiation = datagrams_of(a.handle_tun_packet(_ipv4_to("10.0.0.2"), 1.0, 1e9))[0]
    in_flight = repr(peer_b.handshake)  # holds the initiator's Noise state
    response = datagrams_of(
        b.handle_datagram(initiation, Endpoint("192.0.2.1", WG_PORT), 1.0, 1e9)
    )[0]
    a.handle_datagram(response, Endpoint("192.0.2.2", WG_PORT), 1.0, 1e9)
    ephemeral = rng(32)
    initiator = noise.Initiator(key_a, public_key(key_b), psk, ephemeral)
    transport = noise.TransportKeys(rng(32), rng(32))
    interface = InterfaceConfig(private_key=key_a)
    peer_config = PeerConfig(public_key=public_key(key_b), preshared_key=psk)
    file = Config(interface, [peer_config])
    update = config.to_device_update(file, lambda host, port: (host, int(port)))
    state = uapi.parse_get(get_reply(a, WG_PORT, 0))
    objects: dict[str, object] = {
        "Device": a,
        "Peer": peer_b,
        "Peer (responder)": peer_a,
        "Keypair": peer_b.keypairs.current,
        "Handshake (initiation in flight)": in_flight,
        "Handshake": peer_b.handshake,
        "noise.Initiator": initiator,
        "noise.Responder": noise.Responder(key_b, ephemeral),
        "noise.TransportKeys": transport,
        "config.InterfaceConfig": interface,
        "config.PeerConfig": peer_config,
        "config.Config": file,
        "uapi.DeviceUpdate": update,
        "uapi.PeerUpdate": update.peers[0],
        "uapi.DeviceState": state,
        "uapi.PeerState": state.peers[0],
        "quick ConfigureDevice": ConfigureDevice("wg0", update),
        "quick SaveConfig": SaveConfig("wg0", "/etc/wireguard/wg0.conf", file),
    }
    secrets = [key_a, key_b, psk, ephemeral, transport.send, transport.receive]
    return Specimens(objects, secrets)


def repr_leaks(found: Specimens) -> dict[str, list[str]]:
    """The objects whose repr() shows a secret, with what it shows."""
    shown = {name: leaked(_repr(value), found.secrets) for name, value in found.objects.items()}
    return {name: spelled for name, spelled in shown.items() if spelled}


def _repr(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


def _ipv4_to(destination: str) -> bytes:
    source = ipaddress.IPv4Address("10.0.0.1").packed
    target = ipaddress.IPv4Address(destination).packed
    return bytes([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 253, 0, 0]) + source + target


# Error messages: lines that carry a key and are refused.


def config_lines_with_a_key(key: str) -> list[str]:
    """Configuration files, each refused on a line that carries the base64 `key`."""
    return [
        f"[Interface]\nPrivateKey {key}\n",  # the '=' forgotten
        f"[Interface]\n{key}\n",  # a key pasted on its own: split at its '=' padding
        f"{key}\n",
        f"[Interface]\nPrivateKey = {key}x\n",
        f"[Interface]\nPrivateKey = {key} {key}\n",
        f"[Interface]\nPresharedKey = {key}\n",
        f"PrivateKey = {key}\n",
        f"[Peer]\nPublicKey = {key}\nPresharedKey = {key[:-2]}\n",
    ]


def uapi_lines_with_a_key(hex_key: str) -> list[list[str]]:
    """Bodies of `set` requests, each refused on a line that carries the hex `hex_key`."""
    return [
        [f"private_key{hex_key}"],  # the '=' forgotten
        [hex_key],
        [f"{hex_key}=1"],
        [f"private_key={hex_key}0"],
        [f"private_key={hex_key[:-1]}z"],
        [f"preshared_key={hex_key}"],  # a peer key before any public_key
        [f"public_key={hex_key}", f"private_key={hex_key}"],
        [f"public_key={hex_key}", f"preshared_key={hex_key}1"],
    ]


def error_message_leaks() -> tuple[int, list[str]]:
    """How many refused inputs were tried, and the error messages that echo their key."""
    key = os.urandom(32)
    messages: list[str] = []
    for text in config_lines_with_a_key(base64.b64encode(key).decode()):
        messages.append(_refusal(partial(config.parse, text, file="wg0.conf")))
    for lines in uapi_lines_with_a_key(key.hex()):
        messages.append(_refusal(partial(uapi.parse_set, lines)))
    return len(messages), [message for message in messages if leaked(message, [key])]


def _refusal(parse: Callable[[], object]) -> str:
    try:
        parse()
    except (ConfigError, UapiError) as error:
        return str(error)
    return "accepted"


# The configuration socket.


def socket_modes(umask: int) -> tuple[int, int]:
    """The modes of the socket and of the directory wgpy creates for it, under `umask`."""
    with tempfile.TemporaryDirectory(prefix="wgpy-", dir="/tmp") as parent:
        directory = Path(parent) / "run"
        saved_umask, saved_dir = os.umask(umask), os.environ.get("WGPY_RUN_DIR")
        os.environ["WGPY_RUN_DIR"] = str(directory)
        try:
            with uapi_server.listen("wg0"):
                modes = (directory / "wg0.sock").stat().st_mode, directory.stat().st_mode
        finally:
            os.umask(saved_umask)
            _restore_environment("WGPY_RUN_DIR", saved_dir)
    return stat.S_IMODE(modes[0]), stat.S_IMODE(modes[1])


def _restore_environment(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


# wgpy-quick's warning.


QUICK_MODES = ((0o644, 0o755), (0o600, 0o755), (0o644, 0o750), (0o606, 0o703), (0o604, 0o701))


def quick_warnings() -> dict[tuple[int, int], bool]:
    """Whether `wgpy-quick strip` warns about a config file, by (file mode, directory mode)."""
    warned: dict[tuple[int, int], bool] = {}
    for file_mode, dir_mode in QUICK_MODES:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "wg0.conf"
            path.write_text("[Interface]\nListenPort = 51820\n")
            path.chmod(file_mode)
            Path(directory).chmod(dir_mode)
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as errors:
                quick.main(["strip", str(path)])
            warning = f"Warning: `{path}' is world accessible\n"
            warned[file_mode, dir_mode] = errors.getvalue() == warning
    return warned


def wg_quick_warns(file_mode: int, dir_mode: int) -> bool:
    """wg-quick's condition (src/wg-quick/linux.bash parse_options): the modes and 0007 share
    a bit."""
    return bool(file_mode & dir_mode & 0o007)


# The daemon's log.


@dataclass
class LogAudit:
    log: str
    secrets: list[bytes]
    refusals: int  # `set` requests refused, each carrying a key
    pinged: bool
    show: str  # `wgpy show IFNAME`
    show_never: str  # the same with WG_HIDE_KEYS=never
    socket_mode: int


@dataclass
class _Side:
    ns: Namespace
    ifname: str
    private: bytes
    inner: str

    @property
    def public(self) -> str:
        return base64.b64encode(public_key(self.private)).decode()


def audit_daemon_log() -> LogAudit:
    """Run two wgpy daemons at LOG_LEVEL=debug through a handshake, data, a `set` of one's
    private and preshared keys and refused requests that carry keys; return their log and what
    was shown."""
    psk = os.urandom(32)
    with veth_pair() as (ns_a, ns_b), tempfile.TemporaryFile() as log:
        a = _Side(ns_a, unique_ifname(), generate_private_key(os.urandom), INNER[0])
        b = _Side(ns_b, unique_ifname(), generate_private_key(os.urandom), INNER[1])
        with _daemon(a, log), _daemon(b, log):  # one file, one shared offset: lines interleave
            for own, other in ((a, b), (b, a)):
                _configure(own, other, psk)
            pinged = can_ping(a.ns, b.inner) and can_ping(b.ns, a.inner)
            _set_keys_again(a, b, psk)
            refusals = _refused_requests(a.ifname, psk)
            pinged = pinged and can_ping(a.ns, b.inner)
            show = _wgpy_show(a, hide=True)
            show_never = _wgpy_show(a, hide=False)
            socket_mode = stat.S_IMODE(client.socket_path(a.ifname).stat().st_mode)
        log.seek(0)
        text = log.read().decode(errors="replace")
    return LogAudit(text, [a.private, b.private, psk], refusals, pinged, show, show_never,
                    socket_mode)  # fmt: skip


@contextmanager
def _daemon(side: _Side, output: IO[bytes]) -> Iterator[None]:
    environment = {**os.environ, "LOG_LEVEL": "debug"}
    process = side.ns.popen(
        *WGPY, "-f", side.ifname, stdout=output, stderr=subprocess.STDOUT, env=environment
    )
    try:
        path = client.socket_path(side.ifname)
        wait_until(lambda: path.exists() or process.poll() is not None, STARTUP_TIMEOUT)
        if not path.exists() or process.poll() is not None:
            raise RuntimeError(f"wgpy did not start on {side.ifname}")
        yield
    finally:
        side.ns.stop(process)


def _configure(own: _Side, other: _Side, psk: bytes) -> None:
    private, preshared = base64.b64encode(own.private).decode(), base64.b64encode(psk).decode()
    endpoint = f"{other.ns.ipv4}:{WG_PORT}"
    config = one_peer_config(
        private, other.public, f"{other.inner}/32", endpoint, preshared_key=preshared
    )
    configure(own.ns, own.ifname, config, f"{own.inner}/24")


def _set_keys_again(a: _Side, b: _Side, psk: bytes) -> None:
    """`wgpy set` with private-key and preshared-key files, as an operator rotates them."""
    with tempfile.TemporaryDirectory() as directory:
        private_file, psk_file = Path(directory) / "private", Path(directory) / "psk"
        private_file.write_text(base64.b64encode(a.private).decode() + "\n")
        psk_file.write_text(base64.b64encode(psk).decode() + "\n")
        a.ns.run(*WGPY, "set", a.ifname, "private-key", str(private_file),
                 "peer", b.public, "preshared-key", str(psk_file))  # fmt: skip


def _refused_requests(ifname: str, psk: bytes) -> int:
    """Send `set` requests the daemon refuses, each carrying `psk`; returns how many."""
    bodies = uapi_lines_with_a_key(psk.hex())
    for lines in bodies:
        client.exchange(ifname, "set=1\n" + "".join(f"{line}\n" for line in lines) + "\n")
    return len(bodies)


def _wgpy_show(side: _Side, *, hide: bool) -> str:
    prefix = () if hide else ("env", "WG_HIDE_KEYS=never")
    return side.ns.run(*prefix, *WGPY, "show", side.ifname).stdout


# The figures.


def run(short: bool) -> list[Figure]:
    del short  # the audit is the same size either way: well under a minute
    found = specimens()
    reprs = repr_leaks(found)
    tried, echoed = error_message_leaks()
    audit = audit_daemon_log()
    modes = {umask: socket_modes(umask) for umask in (0o000, 0o022)}
    return [
        _log_figure(audit),
        Figure(
            AREA,
            "objects whose repr() shows a key",
            f"{len(reprs)} of {len(found.objects)}" + (f": {', '.join(reprs)}" if reprs else ""),
            not reprs,
            "Device, Peer, Keypair, Handshake, Noise state, config, UAPI and wgpy-quick objects",
        ),
        Figure(
            AREA,
            "error messages echoing a key",
            f"{len(echoed)} of {tried} refused config and UAPI lines",
            not echoed,
            "a refused line is located by file, line and key name, never shown",
        ),
        _show_figure(audit),
        _quick_figure(quick_warnings()),
        _socket_figure(audit.socket_mode, modes),
    ]


def _log_figure(audit: LogAudit) -> Figure:
    found = leaked(audit.log, audit.secrets)
    lines = audit.log.count("\n")
    rejected = len(re.findall("configuration rejected", audit.log))
    exercised = audit.pinged and rejected >= audit.refusals
    return Figure(
        AREA,
        "private keys found in daemon log at LOG_LEVEL=debug",
        f"{len(found)} ({lines} lines; handshake, data, set, {rejected} refusals logged)",
        not found and exercised,
        "neither private nor preshared keys, in base64 or hex",
    )


def _show_figure(audit: LogAudit) -> Figure:
    hidden = not leaked(audit.show, audit.secrets) and "(hidden)" in audit.show
    private_a, _, psk = audit.secrets
    shown = all(leaked(audit.show_never, [key]) for key in (private_a, psk))
    return Figure(
        AREA,
        "keys shown by `wgpy show`",
        f"{'(hidden)' if hidden else 'SHOWN'}; with WG_HIDE_KEYS=never: "
        f"{'shown' if shown else 'NOT SHOWN'}",
        hidden and shown,
        "as wg(8): hidden unless WG_HIDE_KEYS=never (wireguard-tools show.c masked_key)",
    )


def _quick_figure(warned: dict[tuple[int, int], bool]) -> Figure:
    return Figure(
        AREA,
        "wgpy-quick warns on a world-accessible config",
        ", ".join(
            f"{file:04o} in {directory:04o}: {'warns' if warns else 'silent'}"
            for (file, directory), warns in warned.items()
        ),
        all(warns == wg_quick_warns(*modes) for modes, warns in warned.items()),
        "exactly when wg-quick does: file mode & directory mode & 0007",
    )


def _socket_figure(live: int, modes: dict[int, tuple[int, int]]) -> Figure:
    value = f"live socket {live:04o}; " + "; ".join(
        f"umask {umask:03o}: socket {sock:04o}, directory {directory:04o}"
        for umask, (sock, directory) in modes.items()
    )
    held = live == SOCKET_MODE and all(mode == (SOCKET_MODE, 0o755) for mode in modes.values())
    return Figure(
        AREA,
        "configuration socket and directory modes",
        value,
        held,
        "owner-only socket in a 0755 directory whatever the umask, as wireguard-go's",
    )
