"""The `wgpy` command: key tools, the demo, and (as wg-quick expects of a userspace WireGuard)
`wgpy IFNAME` to run an interface.

Each command's module is imported only when it runs: `wgpy IFNAME` is on the path of every
`wg-quick up`, and what it does not import it does not wait for.
"""

from __future__ import annotations

import sys
from importlib import import_module

from wgpy import __version__
from wgpy.cli import Run

USAGE = """\
Usage: wgpy [-f/--foreground] IFNAME
       wgpy <command> [<args>]

  IFNAME      create the interface and serve /var/run/wireguard/IFNAME.sock
              (as wireguard-go; -f stays in the foreground)
  show, showconf, set, setconf, addconf, syncconf
              as wg(8), over the interface's configuration socket
  probe       handshake with a WireGuard server over plain UDP, report what came back
  capture     write an interface's decrypted packets as pcapng (and optionally a key log)
  metrics     serve an interface's status as Prometheus text on a local address
  proxy       SOCKS5, HTTP and port forwards into a tunnel, as any user, no TUN
  run         CONFIG -- COMMAND: COMMAND's network through a tunnel, as any user
  genkey      print a new private key
  genpsk      print a new preshared key
  pubkey      read a private key on stdin, print its public key
  demo        a full-tunnel VPN in three network namespaces (--simulated: in memory)
  install-files
              install the systemd units, man pages and bash completions
  --version   print the version
"""

KEY_COMMANDS = ("genkey", "genpsk", "pubkey")
WG_COMMANDS = ("show", "showconf", "set", "setconf", "addconf", "syncconf")
# Each of wgpy's own commands, and the function that runs it with its arguments.
OWN_COMMANDS = {
    "probe": ("wgpy.cli.probe", "run"),
    "capture": ("wgpy.cli.capture", "run"),
    "metrics": ("wgpy.cli.metrics", "run"),
    "proxy": ("wgpy.cli.proxy", "run"),
    "run": ("wgpy.cli.run", "run"),
    "demo": ("wgpy.demo", "main"),
    "install-files": ("wgpy.cli.install", "run"),
}
COMMANDS = (*KEY_COMMANDS, *WG_COMMANDS, *OWN_COMMANDS, "help", "version")
DAEMON_OPTIONS = ("-f", "--foreground")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 1
    command, rest = args[0], args[1:]
    if command in ("--version", "version"):
        from wgpy import compiled
        from wgpy.io import accel

        print(f"wgpy {__version__}, data path {accel.path()}, user-space stack "
              f"{compiled.stack_path()}")  # fmt: skip
        return 0
    if command in KEY_COMMANDS:
        from wgpy.cli import keys

        return keys.run(command, rest)
    if command in WG_COMMANDS:
        from wgpy.cli import wg

        return wg.run(command, rest)
    if command in OWN_COMMANDS:
        module, function = OWN_COMMANDS[command]
        run: Run = getattr(import_module(module), function)
        return run(rest)
    return _interface(args)


def _interface(args: list[str]) -> int:
    """`wgpy [-f] IFNAME`, wireguard-go's contract: any name is an interface's, but an unknown
    option is refused rather than taken for a name."""
    names = args[1:] if args[0] in DAEMON_OPTIONS else args
    if unknown := [name for name in names if name.startswith("-")]:
        print(f"wgpy: unknown option `{unknown[0]}'\n{USAGE}", end="", file=sys.stderr)
        return 1
    if len(names) == 1 and (command := _one_edit_from_a_command(names[0])) is not None:
        warning = f"`{names[0]}' is taken as an interface name; did you mean {command}?"
        print(f"wgpy: {warning}", file=sys.stderr)
    from wgpy.cli import daemon

    return daemon.run(args)


def _one_edit_from_a_command(name: str) -> str | None:
    return next((command for command in COMMANDS if one_edit_apart(name, command)), None)


def one_edit_apart(a: str, b: str) -> bool:
    """Whether one insertion, deletion, substitution or swap of neighbours turns `a` into `b`."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    start = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    if len(a) != len(b):
        return a[start:] == b[start + 1 :] or a[start + 1 :] == b[start:]
    swapped = a[start : start + 2] == b[start : start + 2][::-1]
    return a[start + 1 :] == b[start + 1 :] or (swapped and a[start + 2 :] == b[start + 2 :])


if __name__ == "__main__":
    raise SystemExit(main())
