"""`wgpy show|showconf|set|setconf|addconf|syncconf`: wg(8), over the configuration socket.

A machine without wireguard-tools can manage wgpy and wireguard-go with these commands: they talk
the cross-platform configuration protocol over the unix socket RUN_DIR/IFNAME.sock (wgpy.client),
as `wg` does for a userspace interface. Arguments, output and error messages are wg's, byte for
byte, from wireguard-tools src/show.c, showconf.c, set.c, setconf.c, config.c (the argument
grammar, whose value parsers are wgpy.values and wgpy.resolver: this module only words their
errors as wg does) and terminal.c (colors only on a terminal). `wgpy` takes the place of wg's
program name in usage lines. Unlike wg on Linux, an interface without a socket is "No such file
or directory": wgpy knows no kernel interfaces.

The environment variables are wg's: WG_COLOR_MODE, WG_HIDE_KEYS and
WG_ENDPOINT_RESOLUTION_RETRIES; WGPY_RUN_DIR moves the sockets (default /var/run/wireguard).
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from wgpy import config, resolver, values
from wgpy.client import get_device, get_stats, list_interfaces, set_device
from wgpy.core import keys
from wgpy.core.endpoint import Endpoint
from wgpy.errors import ConfigError, UapiError, WgpyError
from wgpy.uapi import (
    ZERO_KEY,
    AllowedIP,
    DeviceState,
    DeviceStats,
    DeviceUpdate,
    IPAddress,
    PeerState,
    PeerStats,
    PeerUpdate,
    format_ip,
    format_prefix,
)

PROG: Final = "wgpy"

SHOW_USAGE: Final = (
    "Usage: {prog} {command} {{ <interface> | all | interfaces }} [public-key | private-key | "
    "listen-port | fwmark | peers | preshared-keys | endpoints | allowed-ips | latest-handshakes | "
    "transfer | persistent-keepalive | dump]"
)
SET_USAGE: Final = (
    "Usage: {prog} {command} <interface> [listen-port <port>] [fwmark <mark>] "
    "[private-key <file path>] [peer <base64 public key> [remove] [preshared-key <file path>] "
    "[endpoint <ip>:<port>] [persistent-keepalive <interval seconds>] "
    "[allowed-ips <ip1>/<cidr1>[,<ip2>/<cidr2>]...] ]..."
)
SHOWCONF_USAGE: Final = "Usage: {prog} {command} <interface>"
SETCONF_USAGE: Final = "Usage: {prog} {command} <interface> <configuration filename>"

# terminal.h. Without a terminal, terminal.c drops every escape sequence from the text.
RESET: Final = "\x1b[0m"
BOLD: Final = "\x1b[1m"
RED: Final = "\x1b[31m"
GREEN: Final = "\x1b[32m"
YELLOW: Final = "\x1b[33m"
CYAN: Final = "\x1b[36m"
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[^A-Za-z]*[A-Za-z]?")

T = TypeVar("T")


class CommandError(WgpyError):
    """What wg prints to stderr before it exits with status 1; the message is printed as is."""


def _strerror(error: OSError | UapiError) -> str:
    return os.strerror(error.errno or errno.EIO)


# show ---------------------------------------------------------------------------------------------


def inet_ntop(address: IPAddress) -> str:
    """An address as glibc's inet_ntop writes it, which for IPv6 is RFC 5952 except that
    IPv4-mapped (::ffff:0:0/96) and IPv4-compatible (::/96 but ::1) addresses end in dotted
    IPv4 (glibc resolv/inet_ntop.c inet_ntop6)."""
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    words = [int.from_bytes(address.packed[i : i + 2], "big") for i in range(0, 16, 2)]
    scope = f"%{address.scope_id}" if address.scope_id else ""
    if words[:5] == [0] * 5 and (words[5] == 0xFFFF or (words[5] == 0 and words[6] != 0)):
        mapped = "ffff:" if words[5] else ""
        return f"::{mapped}{ipaddress.IPv4Address(address.packed[12:])}{scope}"
    return str(address)


def format_endpoint(endpoint: Endpoint) -> str:
    host = inet_ntop(ipaddress.ip_address(endpoint.host))
    return f"[{host}]:{endpoint.port}" if ":" in host else f"{host}:{endpoint.port}"


def format_allowed_ip(prefix: AllowedIP, slash: str = "/") -> str:
    return f"{inet_ntop(prefix.network_address)}{slash}{prefix.prefixlen}"


def pretty_time(seconds: int) -> str:
    """show.c pretty_time: "1 year, 2 days, 1 hour, 5 seconds", units in cyan; "" for 0."""
    parts = []
    for unit, size in (("year", 365 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {CYAN}{unit}{'' if count == 1 else 's'}{RESET}")
    if seconds:
        parts.append(f"{seconds} {CYAN}second{'' if seconds == 1 else 's'}{RESET}")
    return ", ".join(parts)


def ago(timestamp: int, now: int) -> str:
    if now == timestamp:
        return "Now"
    if now < timestamp:
        return f"({RED}System clock wound backward; connection problems may ensue.{RESET})"
    return f"{pretty_time(now - timestamp)} ago"


def format_bytes(count: int) -> str:
    """show.c bytes: "1023 B", then two decimals of KiB, MiB, GiB, and TiB from 1 TiB on."""
    if count < 1024:
        return f"{count} {CYAN}B{RESET}"
    for exponent, unit in enumerate(("KiB", "MiB", "GiB"), start=1):
        if count < 1024 ** (exponent + 1):
            return f"{count / 1024**exponent:.2f} {CYAN}{unit}{RESET}"
    return f"{count / 1024**4:.2f} {CYAN}TiB{RESET}"


def _latest_handshake_first(peer: PeerState) -> tuple[bool, int, int]:
    # show.c peer_cmp: the most recent handshake first, peers without one last.
    seconds, nanoseconds = peer.last_handshake_time
    return (peer.last_handshake_time == (0, 0), -seconds, -nanoseconds)


def format_pretty(name: str, state: DeviceState, now: int, *, hide_keys: bool = True) -> str:
    """What `wg show IFNAME` prints, with terminal escapes; `now` is the wall clock in seconds."""

    def masked(key: bytes) -> str:
        return "(hidden)" if hide_keys else keys.to_base64(key)

    lines = [f"{RESET}{GREEN}{BOLD}interface{RESET}: {GREEN}{name}{RESET}"]
    if state.private_key is not None:
        lines.append(f"  {BOLD}public key{RESET}: {_public_key(state.private_key)}")
        lines.append(f"  {BOLD}private key{RESET}: {masked(state.private_key)}")
    if state.listen_port:
        lines.append(f"  {BOLD}listening port{RESET}: {state.listen_port}")
    if state.fwmark:
        lines.append(f"  {BOLD}fwmark{RESET}: 0x{state.fwmark:x}")
    for peer in sorted(state.peers, key=_latest_handshake_first):
        lines += [
            "",
            f"{YELLOW}{BOLD}peer{RESET}: {YELLOW}{keys.to_base64(peer.public_key)}{RESET}",
        ]
        if peer.preshared_key is not None:
            lines.append(f"  {BOLD}preshared key{RESET}: {masked(peer.preshared_key)}")
        if peer.endpoint is not None:
            lines.append(f"  {BOLD}endpoint{RESET}: {format_endpoint(peer.endpoint)}")
        slash = f"{CYAN}/{RESET}"
        allowed_ips = ", ".join(format_allowed_ip(prefix, slash) for prefix in peer.allowed_ips)
        lines.append(f"  {BOLD}allowed ips{RESET}: {allowed_ips or '(none)'}")
        if peer.last_handshake_time[0]:
            lines.append(
                f"  {BOLD}latest handshake{RESET}: {ago(peer.last_handshake_time[0], now)}"
            )
        if peer.rx_bytes or peer.tx_bytes:
            received, sent = format_bytes(peer.rx_bytes), format_bytes(peer.tx_bytes)
            lines.append(f"  {BOLD}transfer{RESET}: {received} received, {sent} sent")
        if peer.persistent_keepalive_interval:
            every = pretty_time(peer.persistent_keepalive_interval)
            lines.append(f"  {BOLD}persistent keepalive{RESET}: every {every}")
    return "\n".join(lines) + "\n"


def _public_key(private_key: bytes) -> str:
    return keys.to_base64(keys.public_key(private_key))


def _maybe_key(key: bytes | None) -> str:
    return "(none)" if key is None else keys.to_base64(key)


def _maybe_public_key(state: DeviceState) -> str:
    return "(none)" if state.private_key is None else _public_key(state.private_key)


def _fwmark(fwmark: int) -> str:
    return f"0x{fwmark:x}" if fwmark else "off"


def _endpoint(peer: PeerState) -> str:
    return "(none)" if peer.endpoint is None else format_endpoint(peer.endpoint)


def _allowed_ips(peer: PeerState, separator: str) -> str:
    return separator.join(map(format_allowed_ip, peer.allowed_ips)) or "(none)"


# show.c ugly_print: one line for a device value, or one line per peer (in the device's order)
# with the peer's public key, a tab and the value.
_DEVICE_FIELDS: Final[dict[str, Callable[[DeviceState], str]]] = {
    "public-key": _maybe_public_key,
    "private-key": lambda state: _maybe_key(state.private_key),
    "listen-port": lambda state: str(state.listen_port),
    "fwmark": lambda state: _fwmark(state.fwmark),
}
_PEER_FIELDS: Final[dict[str, Callable[[PeerState], str]]] = {
    "preshared-keys": lambda peer: _maybe_key(peer.preshared_key),
    "endpoints": _endpoint,
    "allowed-ips": lambda peer: _allowed_ips(peer, " "),
    "latest-handshakes": lambda peer: str(peer.last_handshake_time[0]),
    "transfer": lambda peer: f"{peer.rx_bytes}\t{peer.tx_bytes}",
    "persistent-keepalive": lambda peer: str(peer.persistent_keepalive_interval or "off"),
}
FIELDS: Final = frozenset({*_DEVICE_FIELDS, *_PEER_FIELDS, "peers", "dump"})


def format_field(field: str, state: DeviceState, name: str | None = None) -> str:
    """What `wg show IFNAME FIELD` prints for one of FIELDS; with `name` (for `show all`), each
    line starts with the name and a tab."""
    if field == "dump":
        lines = _dump(state)
    elif field == "peers":
        lines = [keys.to_base64(peer.public_key) for peer in state.peers]
    elif field in _DEVICE_FIELDS:
        lines = [_DEVICE_FIELDS[field](state)]
    else:
        value = _PEER_FIELDS[field]
        lines = [f"{keys.to_base64(peer.public_key)}\t{value(peer)}" for peer in state.peers]
    prefix = "" if name is None else f"{name}\t"
    return "".join(f"{prefix}{line}\n" for line in lines)


def _dump(state: DeviceState) -> list[str]:
    device = [
        _maybe_key(state.private_key),
        _maybe_public_key(state),
        str(state.listen_port),
        _fwmark(state.fwmark),
    ]
    peers = [
        [
            keys.to_base64(peer.public_key),
            _maybe_key(peer.preshared_key),
            _endpoint(peer),
            _allowed_ips(peer, ","),
            str(peer.last_handshake_time[0]),
            str(peer.rx_bytes),
            str(peer.tx_bytes),
            str(peer.persistent_keepalive_interval or "off"),
        ]
        for peer in state.peers
    ]
    return ["\t".join(fields) for fields in (device, *peers)]


def format_showconf(state: DeviceState) -> str:
    """What `wg showconf IFNAME` prints (showconf.c): the addresses as inet_ntop writes them, so
    not config.strip, which writes them as the configuration protocol does."""
    text = "[Interface]\n"
    if state.listen_port:
        text += f"ListenPort = {state.listen_port}\n"
    if state.fwmark:
        text += f"FwMark = 0x{state.fwmark:x}\n"
    if state.private_key is not None:
        text += f"PrivateKey = {keys.to_base64(state.private_key)}\n"
    return text + "\n" + "\n".join(map(_showconf_peer, state.peers))


def _showconf_peer(peer: PeerState) -> str:
    text = f"[Peer]\nPublicKey = {keys.to_base64(peer.public_key)}\n"
    if peer.preshared_key is not None:
        text += f"PresharedKey = {keys.to_base64(peer.preshared_key)}\n"
    if peer.allowed_ips:
        text += f"AllowedIPs = {', '.join(map(format_allowed_ip, peer.allowed_ips))}\n"
    if peer.endpoint is not None:
        text += f"Endpoint = {format_endpoint(peer.endpoint)}\n"
    if peer.persistent_keepalive_interval:
        text += f"PersistentKeepalive = {peer.persistent_keepalive_interval}\n"
    return text


def wall_clock() -> int:
    """The time `show` measures handshake ages against, as wg's time(NULL)."""
    return int(time.time())


def _terminal(text: str) -> str:
    """terminal.c: escapes go out only to a terminal, or when WG_COLOR_MODE says so."""
    mode = os.environ.get("WG_COLOR_MODE")
    color = mode == "always" or (mode != "never" and sys.stdout.isatty())
    return text if color else without_escapes(text)


def without_escapes(text: str) -> str:
    """The text as terminal.c prints it when colors are off."""
    return _ESCAPE_SEQUENCE.sub("", text)


def _hide_keys() -> bool:
    return os.environ.get("WG_HIDE_KEYS") != "never"


def show_command(command: str, argv: Sequence[str]) -> int:
    argv = list(argv)
    usage = SHOW_USAGE.format(prog=PROG, command=command)
    if len(argv) > 2 or (argv[:1] == ["interfaces"] and len(argv) > 1):
        return _fail(usage)
    if not argv or argv[0] == "all":
        return _show_all(argv[1] if len(argv) > 1 else None, usage)
    if argv[0] == "interfaces":
        names = _listed_interfaces()
        if names is None:
            return 1
        _write(" ".join(names) + "\n" if names else "")
        return 0
    if len(argv) == 1 and argv[0] in ("-h", "--help", "help"):
        print(usage, file=sys.stderr)
        return 0
    ifname = argv[0]
    try:
        state = get_device(ifname)
    except (OSError, UapiError) as error:
        return _fail(f"Unable to access interface: {_strerror(error)}")
    if len(argv) == 1:
        _write(_terminal(format_pretty(ifname, state, wall_clock(), hide_keys=_hide_keys())))
        return 0
    if argv[1] == "--json":
        try:
            stats = get_stats(ifname)
        except (OSError, UapiError) as error:
            return _fail(f"Unable to read statistics: {_strerror(error)}")
        _write(json.dumps(format_json(ifname, state, stats, hide_keys=_hide_keys()), indent=2))
        _write("\n")
        return 0
    return _show_field(argv[1], state, None, usage)


def format_json(
    name: str, state: DeviceState, stats: DeviceStats | None, *, hide_keys: bool = True
) -> dict[str, object]:
    """Everything `wg show` knows, plus wgpy's statistics where the device has them."""
    per_peer = {peer.public_key: peer for peer in stats.peers} if stats else {}
    shown: dict[str, object] = {
        "interface": name,
        "public_key": keys.to_base64(keys.public_key(state.private_key))
        if state.private_key
        else None,
        "private_key": _secret(state.private_key, hide_keys),
        "listen_port": state.listen_port,
        "fwmark": state.fwmark or None,
    }
    if stats:
        shown |= {"drops": stats.drops, "cookie_replies_sent": stats.cookie_replies_sent}
    shown["peers"] = [
        _peer_json(peer, per_peer.get(peer.public_key), hide_keys) for peer in state.peers
    ]
    return shown


def _peer_json(peer: PeerState, stats: PeerStats | None, hide_keys: bool) -> dict[str, object]:
    seconds, nanoseconds = peer.last_handshake_time
    shown: dict[str, object] = {
        "public_key": keys.to_base64(peer.public_key),
        "preshared_key": _secret(peer.preshared_key, hide_keys),
        "endpoint": str(peer.endpoint) if peer.endpoint else None,
        "allowed_ips": [format_prefix(prefix) for prefix in peer.allowed_ips],
        "latest_handshake": seconds + nanoseconds / 1e9 if seconds else None,
        "transfer_rx": peer.rx_bytes,
        "transfer_tx": peer.tx_bytes,
        "persistent_keepalive": peer.persistent_keepalive_interval or None,
    }
    if stats:
        shown |= {
            "drops": stats.drops,
            "handshake_attempts": stats.handshake_attempts,
            "cookie_replies_received": stats.cookie_replies_received,
            "keypair_age": stats.keypair_age,
        }
    return shown


def _secret(key: bytes | None, hide: bool) -> str | None:
    if key is None:
        return None
    return "(hidden)" if hide else keys.to_base64(key)


def _show_all(field: str | None, usage: str) -> int:
    names = _listed_interfaces()
    if names is None:
        return 1
    status = 1 if names else 0  # show.c: 1 unless some interface could be shown
    for index, name in enumerate(names):
        try:
            state = get_device(name)
        except (OSError, UapiError) as error:
            print(f"Unable to access interface {name}: {_strerror(error)}", file=sys.stderr)
            continue
        if field is not None:
            if _show_field(field, state, name, usage):
                return 1
        else:
            text = format_pretty(name, state, wall_clock(), hide_keys=_hide_keys())
            _write(_terminal(text) + ("\n" if index < len(names) - 1 else ""))
        status = 0
    return status


def _show_field(field: str, state: DeviceState, name: str | None, usage: str) -> int:
    if field not in FIELDS:
        return _fail(f"Invalid parameter: `{field}'\n{usage}")
    _write(format_field(field, state, name))
    return 0


def _listed_interfaces() -> list[str] | None:
    try:
        return list_interfaces()
    except OSError as error:
        print(f"Unable to list interfaces: {_strerror(error)}", file=sys.stderr)
        return None


def showconf_command(command: str, argv: Sequence[str]) -> int:
    if len(argv) != 1:
        return _fail(SHOWCONF_USAGE.format(prog=PROG, command=command))
    try:
        state = get_device(argv[0])
    except (OSError, UapiError) as error:
        return _fail(f"Unable to access interface: {_strerror(error)}")
    _write(format_showconf(state))
    return 0


# set: config.c config_read_cmd, in wg's words for a value it refuses ------------------------------


def parse_set_arguments(args: Sequence[str]) -> DeviceUpdate:
    """The request `wg set IFNAME ARGS...` sends. Reads key files and resolves host names.

    Device options come before the first `peer`; each `peer` starts a new peer block. Raises
    CommandError with wg's message for the first argument that fails.
    """
    update = DeviceUpdate()
    peer: PeerUpdate | None = None
    index = 0
    while index < len(args):
        option = args[index]
        value = args[index + 1] if index + 1 < len(args) else None
        if option == "remove" and peer is not None:
            peer.remove = True
            index += 1
            continue
        options = _DEVICE_OPTIONS if peer is None else _PEER_OPTIONS
        if value is None:
            raise CommandError(f"Invalid argument: {option}")
        if option == "peer":
            peer = PeerUpdate(public_key=parse_key(value))
            update.peers.append(peer)
        elif option == "allowed-ips" and peer is not None:
            set_allowed_ips(peer, value)
        elif option in options:
            field, parse = options[option]
            setattr(update if peer is None else peer, field, parse(value))
        else:
            raise CommandError(f"Invalid argument: {option}")
        index += 2
    return update


def _worded(parse: Callable[[str], T], value: str, message: str) -> T:
    """`parse(value)`, or CommandError with wg's `message` about it ("{}" is the value)."""
    try:
        return parse(value)
    except values.InvalidValue:
        raise CommandError(message.format(value)) from None


def parse_key(value: str) -> bytes:
    return _worded(values.parse_key, value, "Key is not the correct length or format: `{}'")


def _parse_port(value: str) -> int:
    try:
        return values.parse_port(value)
    except values.InvalidValue as error:
        raise CommandError(str(error)) from None  # already wg's words, getaddrinfo's among them


def _parse_fwmark(value: str) -> int:
    return _worded(values.parse_fwmark, value, "Fwmark is neither 0/off nor 0-0xffffffff: `{}'")


def _parse_persistent_keepalive(value: str) -> int:
    return _worded(
        values.parse_persistent_keepalive,
        value,
        "Persistent keepalive interval is neither 0/off nor 1-65535: `{}'",
    )


def read_key_file(path: str) -> bytes:
    """config.c parse_keyfile: 44 characters of base64, then only whitespace; an empty file
    (such as /dev/null) is the all-zero key, which removes the key."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise CommandError(f"fopen: {_strerror(error)}") from None
    if not data:
        return ZERO_KEY
    key_text = data[: values.KEY_BASE64_LEN].decode("latin-1")
    if len(key_text) < values.KEY_BASE64_LEN:
        raise CommandError("Invalid length key in key file")
    trailing = data[values.KEY_BASE64_LEN :].decode("latin-1").lstrip(values.ASCII_SPACE)
    if trailing:
        raise CommandError(f"Found trailing character in key file: `{trailing[0]}'")
    return parse_key(key_text)


def set_allowed_ips(peer: PeerUpdate, value: str) -> None:
    """config.c parse_allowedips on `value` with all whitespace removed.

    The list replaces the peer's allowed IPs, unless an entry starts with '+' (add it) or '-'
    (remove it): then every entry is a change (wireguard-tools since 2025).
    """
    value = values.strip_spaces(value)
    peer.replace_allowed_ips = True
    if not value:
        return
    for entry in value.split(","):
        sign = entry[:1] if entry[:1] in ("+", "-") else ""
        if sign:
            peer.replace_allowed_ips = False
        peer.change_allowed_ip(_parse_allowed_ip(entry[len(sign) :]), remove=sign == "-")


def _parse_allowed_ip(entry: str) -> AllowedIP:
    try:
        written = values.parse_allowed_ip(entry)
    except values.InvalidAddress as error:
        raise CommandError(f"Unable to parse IP address: `{error.text}'") from None
    except values.InvalidValue:
        raise CommandError(f"AllowedIP is not in the correct format: `{entry}'") from None
    if written.ip != written.network.network_address:  # the device masks it off
        print(f"Warning: AllowedIP has nonzero host part: {entry}", file=sys.stderr)
    return written.network


def parse_endpoint(value: str) -> Endpoint:
    """config.c parse_endpoint: "[host]:port" or "host:port", the host resolved here."""
    if not value:
        raise CommandError("Unable to parse empty endpoint")
    try:
        host, port = values.parse_endpoint(value)
    except values.UnmatchedBrace:
        raise CommandError(f"Unable to find matching brace of endpoint: `{value}'") from None
    except values.InvalidValue:
        raise CommandError(f"Unable to find port of endpoint: `{value}'") from None
    try:
        address, port_number = resolver.resolve(host, port, shown_as=value)
    except resolver.ResolutionError as error:
        raise CommandError(str(error)) from None
    return Endpoint(format_ip(ipaddress.ip_address(address)), port_number)


# The options of config_read_cmd: the field each sets, and how it reads the value.
_DEVICE_OPTIONS: Final[dict[str, tuple[str, Callable[[str], object]]]] = {
    "listen-port": ("listen_port", _parse_port),
    "fwmark": ("fwmark", _parse_fwmark),
    "private-key": ("private_key", read_key_file),
}
_PEER_OPTIONS: Final[dict[str, tuple[str, Callable[[str], object]]]] = {
    "endpoint": ("endpoint", parse_endpoint),
    "persistent-keepalive": ("persistent_keepalive_interval", _parse_persistent_keepalive),
    "preshared-key": ("preshared_key", read_key_file),
}


def set_command(command: str, argv: Sequence[str]) -> int:
    if len(argv) < 2:
        return _fail(SET_USAGE.format(prog=PROG, command=command))
    update = parse_set_arguments(argv[1:])
    return _apply(argv[0], update)


def _apply(ifname: str, update: DeviceUpdate) -> int:
    try:
        set_device(ifname, update)
    except (OSError, UapiError) as error:
        return _fail(f"Unable to modify interface: {_strerror(error)}")
    return 0


# setconf, addconf, syncconf -----------------------------------------------------------------------


def setconf_command(command: str, argv: Sequence[str]) -> int:
    """setconf replaces the whole configuration, addconf adds to it, and syncconf changes only
    what differs from the file (setconf.c)."""
    if len(argv) != 2:
        return _fail(SETCONF_USAGE.format(prog=PROG, command=command))
    ifname, path = argv
    update = load_update(path, append=command == "addconf")
    if command == "syncconf" and update.peers:
        try:
            current = get_device(ifname)
        except (OSError, UapiError) as error:
            return _fail(f"Unable to retrieve current interface configuration: {_strerror(error)}")
        update = sync_update(update, current)
    return _apply(ifname, update)


def load_update(path: str, *, append: bool) -> DeviceUpdate:
    """The `set` request for the configuration file at `path` (endpoints resolved)."""
    try:
        parsed = config.load(path, wg_only=True)
        update = config.to_device_update(parsed, resolver.resolve, append=append, file=path)
    except OSError as error:
        raise CommandError(f"fopen: {_strerror(error)}") from None
    except ConfigError as error:
        raise CommandError(f"{error}\nConfiguration parsing error") from None
    return update


def sync_update(update: DeviceUpdate, current: DeviceState) -> DeviceUpdate:
    """setconf.c sync_conf: rather than replacing all peers, remove those the file lacks and
    leave the others be, except to clear a preshared key or persistent keepalive that the file
    no longer has (wireguard-tools since 2025). With no peers on either side, `update` stands."""
    if not update.peers or not current.peers:
        return update
    running = {peer.public_key: peer for peer in current.peers}
    peers = [_keep_in_sync(peer, running.get(peer.public_key)) for peer in update.peers]
    # sync_conf walks the peers by public key and puts each removal in front.
    gone = sorted(running.keys() - {peer.public_key for peer in peers}, reverse=True)
    removals = [PeerUpdate(public_key, remove=True) for public_key in gone]
    return dataclasses.replace(update, replace_peers=False, peers=[*removals, *peers])


def _keep_in_sync(peer: PeerUpdate, running: PeerState | None) -> PeerUpdate:
    peer = dataclasses.replace(peer)
    if running is not None and running.preshared_key is not None and peer.preshared_key is None:
        peer.preshared_key = ZERO_KEY
    keepalive = running is not None and running.persistent_keepalive_interval
    if keepalive and peer.persistent_keepalive_interval is None:
        peer.persistent_keepalive_interval = 0
    return peer


# Dispatch -----------------------------------------------------------------------------------------

COMMANDS: Final[dict[str, Callable[[str, Sequence[str]], int]]] = {
    "show": show_command,
    "showconf": showconf_command,
    "set": set_command,
    "setconf": setconf_command,
    "addconf": setconf_command,
    "syncconf": setconf_command,
}


def run(command: str, argv: list[str]) -> int:
    """Run `wgpy COMMAND ARGV...` for one of COMMANDS; return the exit status."""
    action = COMMANDS.get(command)
    if action is None:
        raise ValueError(f"not a wg command: {command!r}")
    try:
        return action(command, argv)
    except CommandError as error:
        return _fail(str(error))


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
