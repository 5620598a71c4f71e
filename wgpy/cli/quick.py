"""`wgpy-quick up|down|save|strip CONFIG_FILE|INTERFACE`: wg-quick(8), with wgpy as the device.

Thin: the commands live in wgpy.quick.commands, imported once SIGINT and SIGTERM are handled, so
that a Ctrl-C while they load is reported as any other (wgpy.quick.interrupt).
"""

from __future__ import annotations

import os
import sys

from wgpy import __version__
from wgpy.errors import WgpyError
from wgpy.quick.interrupt import Interrupted, signals_raise

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
    if len(args) != 2 or args[0] not in ("up", "down", "save", "strip"):
        print(USAGE, end="", file=sys.stderr)
        return 1
    command, argument = args
    try:
        with signals_raise():
            from wgpy.quick.commands import COMMANDS

            COMMANDS[command](argument)
    except Interrupted as interrupt:
        _report(str(interrupt))
        return 130
    except OSError as error:
        _report(_describe(error))
        return 1
    except (WgpyError, _netlink_error()) as error:
        _report(str(error))
        return 1
    return 0


def _report(message: str) -> None:
    """wgpy-quick's last line, on standard error if anyone still reads it."""
    try:
        print(f"wgpy-quick: {message}", file=sys.stderr, flush=True)
    except BrokenPipeError:
        # Or Python would complain at exit, to no one, that it could not flush the stream.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


def _netlink_error() -> type[Exception]:
    """pyroute2's NetlinkError, imported only when an error is being reported."""
    from pyroute2.netlink.exceptions import NetlinkError

    error: type[Exception] = NetlinkError
    return error


def _describe(error: OSError) -> str:
    """`PATH: strerror`, as a shell names a file it cannot open, rather than `[Errno 13] ...`."""
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename is not None else reason


if __name__ == "__main__":
    raise SystemExit(main())
