"""wg(8) configuration files, with wg-quick(8)'s additions to [Interface]. Pure, except `load`.

The reading rules are wireguard-tools' (src/config.c config_read_line and process_line,
src/wg-quick/linux.bash parse_options); the layout `serialize` writes is what `wg-quick save`
writes (linux.bash save_config around src/showconf.c).

- Section names and keys are case-insensitive; anything from '#' on is a comment (a ';' starts
  none: wg refuses such a line).
- In [Interface], wg-quick takes its own keys first (Address, DNS, MTU, Table, PreUp, PostUp,
  PreDown, PostDown, SaveConfig), trimming the key and value. The hook commands keep their '#'.
- wg reads every other line with *all* whitespace removed: `Allowed IPs = 10.0.0.0/8, fd00::/8`
  is `AllowedIPs=10.0.0.0/8,fd00::/8`.
- A repeated key overrides, except the lists (AllowedIPs, Address, DNS and the hooks), which grow.
- wg's values are read by wg's rules (wgpy.values): a port may be a service name, for one.

Unlike wg, an Endpoint's host stays unresolved until `to_device_update`, and two peers with one
public key are an error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike

from wgpy.core import keys
from wgpy.core.endpoint import Endpoint
from wgpy.errors import ConfigError
from wgpy.uapi import (
    ZERO_KEY,
    AllowedIP,
    DeviceState,
    DeviceUpdate,
    IPAddress,
    PeerUpdate,
    format_ip,
    format_prefix,
    shown_key,
)
from wgpy.values import (
    ASCII_SPACE,
    InvalidValue,
    parse_allowed_ip,
    parse_endpoint,
    parse_fwmark,
    parse_key,
    parse_number,
    parse_persistent_keepalive,
    parse_port,
    strip_spaces,
)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Resolve = Callable[[str, int], tuple[str, int]]


def _by_lower(names: str) -> dict[str, str]:
    return {name.lower(): name for name in names.split()}


_LIST_SEPARATORS = re.compile(f"[,{ASCII_SPACE}]+")  # ASCII_SPACE is bash's [[:space:]] too
# wg-quick: a DNS entry of digits and dots, or with a colon, is a server; the rest are domains.
_DNS_SERVER = re.compile(r"[0-9.]+|.*:.*")

_INTERFACE_KEYS = _by_lower("PrivateKey ListenPort FwMark")
_PEER_KEYS = _by_lower("PublicKey PresharedKey AllowedIPs Endpoint PersistentKeepalive")
_QUICK_KEYS = _by_lower("Address DNS MTU Table PreUp PostUp PreDown PostDown SaveConfig")
_HOOKS = {"PreUp": "pre_up", "PostUp": "post_up", "PreDown": "pre_down", "PostDown": "post_down"}


@dataclass(slots=True)
class InterfaceConfig:
    private_key: bytes | None = field(default=None, repr=False)
    listen_port: int | None = None
    fwmark: int | None = None  # 0 is "off"
    # wg-quick's keys
    address: list[IPInterface] = field(default_factory=list)
    dns: list[IPAddress] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    mtu: int | None = None
    table: str | None = None
    pre_up: list[str] = field(default_factory=list)
    post_up: list[str] = field(default_factory=list)
    pre_down: list[str] = field(default_factory=list)
    post_down: list[str] = field(default_factory=list)
    save_config: bool = False


@dataclass(slots=True)
class PeerConfig:
    public_key: bytes
    preshared_key: bytes | None = field(default=None, repr=False)
    allowed_ips: list[AllowedIP] = field(default_factory=list)
    endpoint: Endpoint | None = None  # the host may be a name, resolved by to_device_update
    persistent_keepalive: int | None = None  # 0 is "off"
    # Where the Endpoint line was, for an error when its name does not resolve.
    endpoint_line: int | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class Config:
    interface: InterfaceConfig = field(default_factory=InterfaceConfig)
    peers: list[PeerConfig] = field(default_factory=list)


# Reading ------------------------------------------------------------------------------------------


def load(path: str | PathLike[str], *, wg_only: bool = False) -> Config:
    # Bytes, then decoded: no newline translation (wg ends lines at "\n" only, and a "\r" is
    # space), and a byte that is not UTF-8 is found on its line.
    with open(path, "rb") as file:
        data = file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"not UTF-8 text: {error.reason}", file=str(path), line=line) from None
    return parse(text, file=str(path), wg_only=wg_only)


def parse(text: str, *, file: str = "<string>", wg_only: bool = False) -> Config:
    """Parse a configuration; every error is a ConfigError naming file, line and key.

    With `wg_only`, wg-quick's own keys (Address, DNS, ...) are unknown keys, as `wg setconf`
    treats them."""
    parser = _Parser(file, wg_only)
    for number, line in enumerate(text.split("\n"), start=1):
        parser.read_line(number, line)
    return parser.finish()


def require_private_key(config: Config, file: str | PathLike[str]) -> None:
    """Refuse `config` without a PrivateKey where no PostUp can set it (a tunnel, a proxy)."""
    if config.interface.private_key is None:
        raise ConfigError("missing in [Interface]", file=str(file), key="PrivateKey")


@dataclass(slots=True)
class _PeerSection:
    config: PeerConfig  # public_key stays b"" until a PublicKey line
    header_line: int
    key_line: int = 0


class _Parser:
    def __init__(self, file: str, wg_only: bool = False) -> None:
        self.file = file
        self.wg_only = wg_only
        self.interface = InterfaceConfig()
        self.peers: list[_PeerSection] = []
        self.section: str | None = None
        self.line = 0

    def error(self, message: str, key: str, line: int | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=line or self.line, key=key)

    def read_line(self, number: int, line: str) -> None:
        self.line = number
        uncommented = line.partition("#")[0]
        compact = strip_spaces(uncommented)
        if not compact:
            return
        if compact.startswith("["):
            self.start_section(compact)
        elif self.wg_only or not self.read_quick_line(line, uncommented):
            self.read_wg_line(compact)

    def read_quick_line(self, line: str, uncommented: str) -> bool:
        """Take a line with one of wg-quick's [Interface] keys; False leaves the line to wg."""
        key, sep, value = uncommented.partition("=")
        key = _QUICK_KEYS.get(key.strip(ASCII_SPACE).lower(), "")
        if self.section != "interface" or not key:
            return False
        if not sep:
            raise self.error("missing value", key)
        hook_command = line.partition("=")[2].strip(ASCII_SPACE)  # with its '#', if any
        self.read_value(key, self.set_quick_key, value.strip(ASCII_SPACE), hook_command)
        return True

    def read_wg_line(self, compact: str) -> None:
        if compact.startswith(";"):  # wg refuses it too: `Line unrecognized: `;...'`
            raise ConfigError(
                "Line unrecognized: comments start with '#', not ';'",
                file=self.file,
                line=self.line,
            )
        key, _, value = compact.partition("=")
        named = shown_key(key)  # not a line wg would echo, which may be a key that lost its '='
        if self.section is None:
            raise self.error("key outside a section", named)
        known = _INTERFACE_KEYS if self.section == "interface" else _PEER_KEYS
        if key.lower() not in known:
            raise self.error(f"unknown key in [{self.section.title()}]", named)
        key = known[key.lower()]
        if not value:
            raise self.error("missing value", key)
        setter = self.set_interface_key if self.section == "interface" else self.set_peer_key
        self.read_value(key, setter, value)

    def start_section(self, header: str) -> None:
        self.section = header[1:-1].lower() if header.endswith("]") else header
        if self.section == "peer":
            self.peers.append(_PeerSection(PeerConfig(public_key=b""), self.line))
        elif self.section != "interface":
            raise self.error("unknown section", header)

    def read_value(self, key: str, setter: Callable[..., None], *values: str) -> None:
        try:
            setter(key, *values)
        except ValueError as error:  # InvalidValue, or ipaddress's for wg-quick's keys
            raise self.error(str(error), key) from None

    def set_interface_key(self, key: str, value: str) -> None:
        if key == "PrivateKey":
            self.interface.private_key = parse_key(value)
        elif key == "ListenPort":
            self.interface.listen_port = parse_port(value)
        elif key == "FwMark":
            self.interface.fwmark = parse_fwmark(value)

    def set_peer_key(self, key: str, value: str) -> None:
        section = self.peers[-1]
        peer = section.config
        if key == "PublicKey":
            peer.public_key, section.key_line = parse_key(value), self.line
        elif key == "PresharedKey":
            peer.preshared_key = parse_key(value)
        elif key == "AllowedIPs":
            # config.c parse_allowedips; the device masks off a host part, and wg only warns.
            peer.allowed_ips += [parse_allowed_ip(item).network for item in value.split(",")]
        elif key == "Endpoint":
            peer.endpoint, peer.endpoint_line = _parse_endpoint(value), self.line
        elif key == "PersistentKeepalive":
            peer.persistent_keepalive = parse_persistent_keepalive(value)

    def set_quick_key(self, key: str, value: str, hook_command: str) -> None:
        interface = self.interface
        if key in _HOOKS:
            getattr(interface, _HOOKS[key]).append(hook_command)
        elif key == "Address":
            interface.address += [_parse_interface(item) for item in _split_list(value)]
        elif key == "DNS":
            for item in _split_list(value):
                if _DNS_SERVER.fullmatch(item):
                    interface.dns.append(ipaddress.ip_address(item))
                else:
                    interface.dns_search.append(item)
        elif key == "MTU":
            interface.mtu = parse_number(value, 0xFFFF, minimum=1) if value else None
        elif key == "Table":
            interface.table = value or None
        elif key == "SaveConfig":
            interface.save_config = _parse_bool(value)

    def finish(self) -> Config:
        seen: set[bytes] = set()
        for section in self.peers:
            public_key = section.config.public_key
            if not public_key:
                raise self.error("peer has no PublicKey", "PublicKey", section.header_line)
            if public_key in seen:
                raise self.error("duplicate peer public key", "PublicKey", section.key_line)
            seen.add(public_key)
        return Config(self.interface, [section.config for section in self.peers])


def _parse_bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(f"neither true nor false: {value!r}")
    return value.lower() == "true"


def _parse_endpoint(value: str) -> Endpoint:
    host, port = parse_endpoint(value)
    # No address or host name has a bracket, and one left in could not be written back.
    if not host or "[" in host or "]" in host:
        raise InvalidValue(f"endpoint is not host:port: {value!r}")
    return Endpoint(host, parse_port(port))


def _parse_interface(item: str) -> IPInterface:
    return ipaddress.ip_interface(item)


def _split_list(value: str) -> list[str]:
    # wg-quick splits on commas, then bash splits words on whitespace.
    return [item for item in _LIST_SEPARATORS.split(value) if item]


# Writing ------------------------------------------------------------------------------------------


def serialize(config: Config) -> str:
    """The file `wg-quick save` writes: wg-quick's keys, then what `wg showconf` prints."""
    interface = config.interface
    lines = ["[Interface]"]
    lines += [f"Address = {address}" for address in interface.address]
    lines += [f"DNS = {format_ip(server)}" for server in interface.dns]
    lines += [f"DNS = {domain}" for domain in interface.dns_search]
    if interface.mtu is not None:
        lines.append(f"MTU = {interface.mtu}")
    if interface.table is not None:
        lines.append(f"Table = {interface.table}")
    if interface.save_config:
        lines.append("SaveConfig = true")
    for key, attribute in _HOOKS.items():
        lines += [f"{key} = {command}" for command in getattr(interface, attribute)]
    lines += _wg_interface_lines(interface)
    for peer in config.peers:
        lines += ["", *_peer_lines(peer)]
    return "\n".join(lines) + "\n"


def strip(config: Config) -> str:
    """What `wg-quick strip` prints: only the part wg understands, for `wg setconf`."""
    interface = config.interface
    lines = ["[Interface]", *_wg_interface_lines(interface)]
    for peer in config.peers:
        lines += ["", *_peer_lines(peer)]
    return "\n".join(lines) + "\n"


def _wg_interface_lines(interface: InterfaceConfig) -> list[str]:
    lines = []
    if interface.listen_port is not None:
        lines.append(f"ListenPort = {interface.listen_port}")
    if interface.fwmark is not None:
        lines.append(f"FwMark = {f'0x{interface.fwmark:x}' if interface.fwmark else 'off'}")
    if interface.private_key is not None:
        lines.append(f"PrivateKey = {keys.to_base64(interface.private_key)}")
    return lines


def _peer_lines(peer: PeerConfig) -> list[str]:
    lines = ["[Peer]", f"PublicKey = {keys.to_base64(peer.public_key)}"]
    if peer.preshared_key is not None:
        lines.append(f"PresharedKey = {keys.to_base64(peer.preshared_key)}")
    if peer.allowed_ips:
        lines.append(f"AllowedIPs = {', '.join(map(format_prefix, peer.allowed_ips))}")
    if peer.endpoint is not None:
        lines.append(f"Endpoint = {peer.endpoint}")
    if peer.persistent_keepalive is not None:
        lines.append(f"PersistentKeepalive = {peer.persistent_keepalive or 'off'}")
    return lines


# To and from a device -----------------------------------------------------------------------------


def to_device_update(
    config: Config, resolve: Resolve, *, append: bool = False, file: str | None = None
) -> DeviceUpdate:
    """The `set` request of `wg setconf`, or of `wg addconf` with `append`.

    setconf replaces all peers and sets the private key, listen port and fwmark even when the file
    leaves them out (config.c config_read_init: an absent ListenPort asks for a new random port);
    both give each peer replace_allowed_ips. `resolve(host, port)` turns each Endpoint into an
    IP address and port; a ValueError from it becomes a ConfigError at the Endpoint's line of
    `file`.
    """
    interface = config.interface
    private_key = interface.private_key
    fwmark = interface.fwmark
    listen_port = interface.listen_port
    if not append:
        private_key = private_key or ZERO_KEY
        fwmark = fwmark or 0
        listen_port = listen_port or 0
    if private_key is not None and private_key != ZERO_KEY:
        private_key = keys.clamp(private_key)  # as the device stores it
    return DeviceUpdate(
        private_key=private_key,
        listen_port=listen_port,
        fwmark=fwmark,
        replace_peers=not append,
        peers=[_peer_update(peer, resolve, file) for peer in config.peers],
    )


def _peer_update(peer: PeerConfig, resolve: Resolve, file: str | None) -> PeerUpdate:
    endpoint = None
    if peer.endpoint is not None:
        try:
            address, port = resolve(*peer.endpoint)
        except ValueError as error:
            line = peer.endpoint_line
            raise ConfigError(str(error), file=file, line=line, key="Endpoint") from None
        endpoint = Endpoint(format_ip(ipaddress.ip_address(address)), port)
    return PeerUpdate(
        public_key=peer.public_key,
        preshared_key=peer.preshared_key,
        endpoint=endpoint,
        persistent_keepalive_interval=peer.persistent_keepalive,
        replace_allowed_ips=True,
        allowed_ips=list(peer.allowed_ips),
    )


def from_device_state(state: DeviceState) -> Config:
    """The configuration `wg showconf` prints for a device: unset and zero values left out."""
    interface = InterfaceConfig(
        private_key=state.private_key if state.private_key != ZERO_KEY else None,
        listen_port=state.listen_port or None,
        fwmark=state.fwmark or None,
    )
    peers = [
        PeerConfig(
            public_key=peer.public_key,
            preshared_key=peer.preshared_key if peer.preshared_key != ZERO_KEY else None,
            allowed_ips=list(peer.allowed_ips),
            endpoint=peer.endpoint,
            persistent_keepalive=peer.persistent_keepalive_interval or None,
        )
        for peer in state.peers
    ]
    return Config(interface, peers)
