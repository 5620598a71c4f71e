"""`wgpy run [--name NAME] [-p [ADDR:]PORT:PORT[/udp]]... CONFIG [--] COMMAND [ARGS...]`: COMMAND
with its whole network through the tunnel CONFIG describes, as any user, on Linux's own stack.

wgpy opens its UDP socket here, then makes a user, network and mount namespace of the caller's
with the TUN, the config's Address, MTU, a route for each AllowedIPs and its DNS as resolv.conf,
and runs COMMAND there as the caller, with its environment, directory and stdio. wgpy exits with
COMMAND's status (128+N for signal N); signals sent to wgpy are passed on to COMMAND. `-p`
publishes a port of the namespace here (127.0.0.1 unless ADDR is given). `wgpy show NAME` works
meanwhile (NAME defaults to CONFIG's file name without .conf); as a user other than root the
configuration socket is under $XDG_RUNTIME_DIR/wireguard, where `wg` does not look.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Final

from wgpy import config as wgconfig
from wgpy.cli import argparse_exit_returned, failed
from wgpy.cli.daemon import configure_logging
from wgpy.errors import ConfigError
from wgpy.io import busy_poll, userns
from wgpy.io.tun import valid_name
from wgpy.io.writers import writers_wanted
from wgpy.proxy.spec import Forward, SpecError, parse_local_forward
from wgpy.resolver import resolve as resolve_endpoint
from wgpy.run.session import FORWARDED, RunError, Session, start, wait_forwarding_signals

PROG: Final = "wgpy run"
DEFAULT_NAME: Final = "wgrun"
_PUBLISH = re.compile(r"(?P<listen>.*:)?(?P<port>[^:]+):(?P<to>[^:/]+)(?:/(?P<transport>\w+))?")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", help="the interface's name (default: CONFIG's)")
    parser.add_argument("-p", "--publish", action="append", default=[],
                        metavar="[ADDR:]PORT:PORT[/udp]",
                        help="publish a port of the namespace on ADDR:PORT here")  # fmt: skip
    parser.add_argument("config", metavar="CONFIG", help="a wg-quick configuration file")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                        help="the command and its arguments (default: $SHELL)")  # fmt: skip
    return parser


@argparse_exit_returned
def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    configure_logging(os.environ.get("LOG_LEVEL", "error"), sys.stderr)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    command = command or [os.environ.get("SHELL", "/bin/sh")]
    name = args.name or interface_name(args.config)
    try:
        if (reason := userns.unavailable_reason()) is not None:
            raise RunError(reason)
        if not valid_name(name):
            raise RunError(f"invalid interface name {name!r}: give --name")
        publish = [parse_publish(value) for value in args.publish]
        config = wgconfig.load(args.config)
        wgconfig.require_private_key(config, args.config)  # no PostUp could set it
        update = wgconfig.to_device_update(config, resolve_endpoint, file=args.config)
        # What the interface in the namespace reads from the environment, checked here.
        busy_poll.window_wanted(os.environ)
        writers_wanted(os.environ)
    except (RunError, SpecError, ConfigError, OSError, ValueError) as error:
        return failed(PROG, error)
    # Blocked here and so in every thread: wait_forwarding_signals takes them one by one.
    signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
    try:
        session = start(config, update, name, command)
    except RunError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return error.status
    dns = [str(server) for server in config.interface.dns]
    try:
        publisher = Publisher(session, publish, dns) if publish else None
    except OSError as error:
        session.close()  # COMMAND is ended with the namespace
        return failed(PROG, error)
    try:
        return wait_forwarding_signals(session)
    finally:
        if publisher is not None:
            publisher.stop()


def interface_name(config_path: str) -> str:
    """wg-quick's: the file's name without .conf, where it is a valid interface name."""
    stem = Path(config_path).name.removesuffix(".conf")
    return stem if valid_name(stem) else DEFAULT_NAME


def parse_publish(value: str) -> Forward:
    """`[ADDR:]PORT:PORT[/udp]` as a forward from ADDR:PORT here to 127.0.0.1:PORT inside."""
    match = _PUBLISH.fullmatch(value)
    transport = (match and match["transport"]) or "tcp"
    if match is None or transport not in ("tcp", "udp"):
        raise SpecError(f"-p {value!r}: not [ADDR:]PORT:PORT[/udp]")
    listen = match["listen"] or ""
    try:
        return parse_local_forward(f"{transport}:{listen}{match['port']}:127.0.0.1:{match['to']}")
    except SpecError:
        raise SpecError(f"-p {value!r}: not [ADDR:]PORT:PORT[/udp]") from None


class Publisher:
    """-p's forwards (wgpy.proxy's -L) over the namespace's sockets, on a loop of their own.
    Raises OSError if one cannot listen."""

    def __init__(self, session: Session, forwards: list[Forward], dns: list[str]) -> None:
        from wgpy.proxy.namespace_network import NamespaceNetwork
        from wgpy.proxy.service import Proxy, ProxySpec

        network = NamespaceNetwork(session.broker, dns)
        self._proxy = Proxy(network, ProxySpec(local_forwards=forwards))
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._serve, name="publish", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self.stop()
            code = self._error.errno or errno.EADDRINUSE
            raise OSError(code, f"-p: {os.strerror(code)}")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._proxy.start())
        except OSError as error:
            self._error = error
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._proxy.stop(grace=0), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
