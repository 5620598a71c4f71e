"""`wgpy-quick up|down|save|strip CONFIG_FILE|INTERFACE`: wg-quick(8), with wgpy as the device."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from wgpy import __version__, resolver
from wgpy import config as wgconfig
from wgpy.errors import WgpyError
from wgpy.quick import QuickError, configfile, device, netlink, observe
from wgpy.quick.execute import Executor
from wgpy.quick.plan import plan_down, plan_up
from wgpy.quick.steps import SaveConfig
from wgpy.uapi import DeviceUpdate

USAGE = """\
Usage: wgpy-quick [ up | down | save | strip ] [ CONFIG_FILE | INTERFACE ]
       wgpy-quick --version

  CONFIG_FILE is a configuration file, whose filename is the interface name
  followed by `.conf'. Otherwise, INTERFACE is an interface name, with
  configuration found at /etc/wireguard/INTERFACE.conf. It is to be readable
  by wg(8)'s `setconf' sub-command, with the exception of the following additions
  to the [Interface] section, which are handled by wgpy-quick:

  - Address: may be specified one or more times and contains one or more
    IP addresses (with an optional CIDR mask) to be set for the interface.
  - DNS: an optional DNS server to use while the device is up.
  - MTU: an optional MTU for the interface; if unspecified, auto-calculated.
  - Table: an optional routing table to which routes will be added; if
    unspecified or `auto', the default table is used. If `off', no routes
    are added.
  - PreUp, PostUp, PreDown, PostDown: script snippets which will be executed
    by bash(1) at the corresponding phases of the link, most commonly used
    to configure DNS. The string `%i' is expanded to INTERFACE.
  - SaveConfig: if set to `true', the configuration is saved from the current
    state of the interface upon shutdown.

The interface is run by wgpy (`wgpy INTERFACE`). See wg-quick(8) for more info and examples.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 1 and args[0] in ("--help", "-h", "help"):
        print(USAGE, end="", file=sys.stderr)
        return 0
    if args == ["--version"]:
        print(f"wgpy-quick {__version__}")
        return 0
    if len(args) != 2 or args[0] not in COMMANDS:
        print(USAGE, end="", file=sys.stderr)
        return 1
    command, argument = args
    try:
        COMMANDS[command](argument)
    except OSError as error:
        print(f"wgpy-quick: {_describe(error)}", file=sys.stderr)
        return 1
    except (WgpyError, NetlinkError) as error:
        print(f"wgpy-quick: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def up(argument: str) -> None:
    path, ifname = _locate(argument)
    config = wgconfig.load(path)
    update = _device_update(config, path)
    _require_root()
    with IPRoute() as ipr:
        if netlink.link_index(ipr, ifname) is not None:
            raise QuickError(f"`{ifname}' already exists")
        host = observe.observe_host(ipr, update)
        steps = plan_up(ifname, config, update, host, file=str(path))
        Executor(ipr).up(steps)


def down(argument: str) -> None:
    with _running_interface(argument) as (ipr, ifname, path, config):
        running = observe.observe_running(ipr, ifname)
        Executor(ipr).down(plan_down(ifname, config, running, path=str(path)))


def save(argument: str) -> None:
    with _running_interface(argument) as (ipr, ifname, path, config):
        Executor(ipr).run(SaveConfig(ifname, str(path), config))


def strip(argument: str) -> None:
    path, _ = _locate(argument)
    print(wgconfig.strip(wgconfig.load(path)), end="")


COMMANDS: dict[str, Callable[[str], None]] = {"up": up, "down": down, "save": save, "strip": strip}


def _locate(argument: str) -> tuple[Path, str]:
    path, ifname = configfile.locate(argument)
    if configfile.world_accessible(path):
        print(f"Warning: `{path}' is world accessible", file=sys.stderr)
    return path, ifname


@contextmanager
def _running_interface(argument: str) -> Iterator[tuple[IPRoute, str, Path, wgconfig.Config]]:
    """What `down` and `save` start from: the interface `argument` names, which must be a
    running WireGuard interface, its file and configuration, and netlink (root only)."""
    path, ifname = _locate(argument)
    config = wgconfig.load(path)
    _require_root()
    with IPRoute() as ipr:
        _require_wireguard(ipr, ifname)
        yield ipr, ifname, path, config


def _require_root() -> None:
    if os.geteuid() != 0:
        raise QuickError("must be run as root")


def _require_wireguard(ipr: IPRoute, ifname: str) -> None:
    if netlink.link_index(ipr, ifname) is None or not device.is_running(ifname):
        raise QuickError(f"`{ifname}' is not a WireGuard interface")


def _describe(error: OSError) -> str:
    """`PATH: strerror`, as a shell names a file it cannot open, rather than `[Errno 13] ...`."""
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename is not None else reason


def _device_update(config: wgconfig.Config, path: Path) -> DeviceUpdate:
    """The `wg addconf` request, with every Endpoint resolved before anything changes."""
    return wgconfig.to_device_update(config, resolver.resolve, append=True, file=str(path))


if __name__ == "__main__":
    raise SystemExit(main())
