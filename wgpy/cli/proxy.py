"""`wgpy proxy CONFIG [options]`: SOCKS5, HTTP and port forwards into a WireGuard tunnel, as any
user, with no TUN and no capabilities.

CONFIG is a wg-quick file: Address, DNS and MTU configure the user-space stack; keys only wg-quick
acts on (Table, the hooks, SaveConfig) are warned about and ignored. Listeners bind 127.0.0.1
unless an address is given, and a non-loopback one is refused without --socks5-auth. SIGTERM and
SIGINT close the listeners and give open connections 5 seconds to end. LOG_LEVEL=verbose logs
each connection opened and closed, with its bytes.

`--stack kernel` serves over Linux's stack in a namespace of the caller's with a TUN (as `wgpy
run` makes one): the listeners here, the connections made inside. `userspace` serves over
wgpy.tunnel's stack, which needs no namespace and no TUN. `auto` (the default) takes kernel
where this machine allows it, and says which at LOG_LEVEL=verbose. `host` serves over this
machine's own network, no tunnel at all (the proxy alone, for measuring and testing it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import stat
import sys
import warnings
from collections.abc import AsyncIterator
from functools import partial
from typing import Final

from wgpy import config as wgconfig
from wgpy.cli import argparse_exit_returned, failed
from wgpy.cli.daemon import configure_logging
from wgpy.errors import ConfigError
from wgpy.io import busy_poll, userns
from wgpy.proxy.network import HostNetwork, Network
from wgpy.proxy.relay import CLOSE_GRACE
from wgpy.proxy.service import Proxy, ProxySpec
from wgpy.proxy.spec import (
    SpecError,
    exposure_refusal,
    parse_credentials,
    parse_listen,
    parse_local_forward,
    parse_remote_forward,
)
from wgpy.proxy.upstream import CONNECT_TIMEOUT

PROG: Final = "wgpy proxy"
STACKS: Final = ("auto", "userspace", "kernel", "host")
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
# The TUN's name inside the kernel stack's namespace, which is the proxy's alone.
KERNEL_STACK_NAME: Final = "wgpy"
log = logging.getLogger("wgpy")


class CommandError(Exception):
    """What the command prints, after "wgpy proxy: ", before it exits with status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("config", metavar="CONFIG", help="a wg-quick configuration file")
    add = parser.add_argument
    add("--socks5", action="append", default=[], metavar="[ADDR:]PORT", help="a SOCKS5 listener")
    add("--socks5-auth", metavar="FILE", help="user:password lines (RFC 1929); mode 0600")
    add("--http", action="append", default=[], metavar="[ADDR:]PORT", help="an HTTP proxy")
    add("-L", dest="local", action="append", default=[], metavar="tcp|udp:[ADDR:]PORT:HOST:PORT",
        help="a local port forwarded to HOST:PORT in the tunnel")  # fmt: skip
    add("-R", dest="remote", action="append", default=[], metavar="tcp|udp:PORT:HOST:PORT",
        help="a port on the tunnel address forwarded to HOST:PORT from this machine")  # fmt: skip
    add("--name", help="serve the configuration socket under this interface name")
    add("--stack", choices=STACKS, default="auto", help="whose network stack (default: auto)")
    add("--connect-timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
        help=f"for a destination to answer (default: {CONNECT_TIMEOUT:g})")  # fmt: skip
    return parser


@argparse_exit_returned
def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    configure_logging(os.environ.get("LOG_LEVEL", "error"), sys.stderr)
    try:
        spec = proxy_spec(args)
        config = wgconfig.load(args.config)
        wgconfig.require_private_key(config, args.config)
        window = busy_poll.window_wanted(os.environ)
    except (CommandError, SpecError, ConfigError, OSError, ValueError) as error:
        return failed(PROG, error)
    _warn_unused(args.config, config)
    raise_open_files_limit()
    try:
        with asyncio.Runner(loop_factory=partial(busy_poll.event_loop, window)) as runner:
            runner.run(serve(args.config, args.stack, args.name, spec))
    except (CommandError, ConfigError, OSError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    return 0


def proxy_spec(args: argparse.Namespace) -> ProxySpec:
    spec = ProxySpec(
        socks5=[parse_listen("--socks5", value) for value in args.socks5],
        http=[parse_listen("--http", value) for value in args.http],
        local_forwards=[parse_local_forward(value) for value in args.local],
        remote_forwards=[parse_remote_forward(value) for value in args.remote],
        credentials=read_credentials(args.socks5_auth) if args.socks5_auth else None,
        connect_timeout=args.connect_timeout,
    )
    if not (spec.socks5 or spec.http or spec.local_forwards or spec.remote_forwards):
        raise CommandError("nothing to serve: give --socks5, --http, -L or -R")
    listens = spec.socks5 + spec.http + [forward.listen for forward in spec.local_forwards]
    refusal = exposure_refusal(listens, authenticated=spec.credentials is not None)
    if refusal is not None:
        raise CommandError(refusal)
    return spec


def read_credentials(path: str) -> dict[str, str]:
    """The --socks5-auth file, refused unless only its owner may read it (mode 0600 or 0400)."""
    try:
        with open(path, encoding="utf-8") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            if mode & 0o077:
                raise CommandError(
                    f"--socks5-auth {path}: mode {mode:04o} lets others read the passwords; "
                    f"chmod 600 {path}"
                )
            return parse_credentials(file.read(), path)
    except OSError as error:
        raise CommandError(f"--socks5-auth {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"--socks5-auth {path}: not UTF-8 text") from None


def raise_open_files_limit() -> None:
    """The soft limit on open files up to the hard one (as Go programs do at start): each relayed
    connection holds two, and the usual soft limit of 1,024 would cap a proxy near 500."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _warn_unused(path: str, config: wgconfig.Config) -> None:
    interface = config.interface
    unused = [
        key
        for key, present in [
            ("Table", interface.table is not None),
            ("PreUp", bool(interface.pre_up)),
            ("PostUp", bool(interface.post_up)),
            ("PreDown", bool(interface.pre_down)),
            ("PostDown", bool(interface.post_down)),
            ("SaveConfig", interface.save_config),
        ]
        if present
    ]
    if unused:
        print(f"{PROG}: {path}: {', '.join(unused)} do not apply to a proxy: ignored",
              file=sys.stderr)  # fmt: skip


def choose_stack(stack: str) -> str:
    """`auto` made kernel or userspace, as this machine allows."""
    if stack != "auto":
        return stack
    reason = userns.unavailable_reason()
    log.info("--stack auto: %s", "kernel" if reason is None else f"userspace, as {reason}")
    return "kernel" if reason is None else "userspace"


@contextlib.asynccontextmanager
async def open_network(config_path: str, stack: str, name: str | None) -> AsyncIterator[Network]:
    """The network the proxy serves over: Linux's in a namespace (`kernel`), the tunnel's
    user-space stack (`userspace`), or this machine's (`host`)."""
    stack = choose_stack(stack)
    if stack == "host":
        yield HostNetwork()
        return
    if stack == "kernel":
        async with kernel_network(config_path, name) as network:
            yield network
        return
    from wgpy import tunnel

    with warnings.catch_warnings():  # run() already named the keys that do not apply, once
        warnings.simplefilter("ignore", tunnel.NotAppliedWarning)
        opening = tunnel.open(config_path, name=name)
    async with opening as network:
        yield network


@contextlib.asynccontextmanager
async def kernel_network(config_path: str, name: str | None) -> AsyncIterator[Network]:
    """A namespace as `wgpy run` makes one, with no command, for as long as the proxy serves."""
    from wgpy.proxy.namespace_network import NamespaceNetwork
    from wgpy.resolver import resolve as resolve_endpoint
    from wgpy.run.session import RunError, start

    loop = asyncio.get_running_loop()
    config = wgconfig.load(config_path)  # checked by run() before
    update = await loop.run_in_executor(
        None, lambda: wgconfig.to_device_update(config, resolve_endpoint, file=config_path)
    )
    try:
        session = start(config, update, name or KERNEL_STACK_NAME, None, name is not None)
    except RunError as error:
        raise CommandError(f"--stack kernel: {error}") from None
    try:
        yield NamespaceNetwork(session.broker, [str(server) for server in config.interface.dns])
    finally:
        await loop.run_in_executor(None, session.close)


async def serve(config_path: str, stack: str, name: str | None, spec: ProxySpec) -> None:
    """Serves until SIGTERM or SIGINT, then stops as the module's docstring says."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stopping.set)
    async with open_network(config_path, stack, name) as network:
        proxy = Proxy(network, spec)
        await proxy.start()
        # As the daemon does (wgpy.cli.daemon): what is alive now lives as long as the process,
        # out of the cyclic collector's walks (a full one was ~10 ms of the loop held).
        gc.freeze()
        await stopping.wait()
        await proxy.stop(CLOSE_GRACE)
