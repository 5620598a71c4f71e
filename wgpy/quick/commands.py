"""wgpy-quick's commands: `up`, `down`, `save` and `strip` of a config file or an interface.

pyroute2 (~100 ms to import, wgpy-quick's largest wait but one) is imported only once `up` has
its daemon loading in parallel (device.Standby), or once `down` or `save` need it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from wgpy import config as wgconfig
from wgpy import resolver
from wgpy.quick import QuickError, configfile, device
from wgpy.uapi import DeviceUpdate

if TYPE_CHECKING:
    from pyroute2 import IPRoute


def up(argument: str) -> None:
    path, ifname = _locate(argument)
    config = wgconfig.load(path)
    update = _device_update(config, path)
    _require_root()
    with device.Standby(ifname) as daemon:
        from pyroute2 import IPRoute

        from wgpy.quick import netlink, observe
        from wgpy.quick.execute import Executor
        from wgpy.quick.plan import plan_up

        with IPRoute() as ipr:
            if netlink.link_index(ipr, ifname) is not None:
                raise QuickError(f"`{ifname}' already exists")
            host = observe.observe_host(ipr, update)
            steps = plan_up(ifname, config, update, host, file=str(path))
            # wgpy-quick exits next: a Ctrl-C after the last step must not claim to stop it.
            Executor(ipr, start_daemon=daemon.start).up(steps, ignore_signals_after=True)


def down(argument: str) -> None:
    from wgpy.quick import observe
    from wgpy.quick.execute import Executor
    from wgpy.quick.plan import plan_down

    with _running_interface(argument) as (ipr, ifname, path, config):
        running = observe.observe_running(ipr, ifname)
        plan = plan_down(ifname, config, running, path=str(path))
        Executor(ipr).down(plan, ignore_signals_after=True)


def save(argument: str) -> None:
    from wgpy.quick.execute import Executor
    from wgpy.quick.steps import SaveConfig

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
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        _require_wireguard(ipr, ifname)
        yield ipr, ifname, path, config


def _require_root() -> None:
    if os.geteuid() != 0:
        raise QuickError("must be run as root")


def _require_wireguard(ipr: IPRoute, ifname: str) -> None:
    from wgpy.quick import netlink

    if netlink.link_index(ipr, ifname) is None or not device.is_running(ifname):
        raise QuickError(f"`{ifname}' is not a WireGuard interface")


def _device_update(config: wgconfig.Config, path: Path) -> DeviceUpdate:
    """The `wg addconf` request, with every Endpoint resolved before anything changes."""
    return wgconfig.to_device_update(config, resolver.resolve, append=True, file=str(path))
