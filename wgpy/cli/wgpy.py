"""The `wgpy` command: key tools, the demo, and (as wg-quick expects of a userspace WireGuard)
`wgpy IFNAME` to run an interface."""

from __future__ import annotations

import sys

from wgpy import __version__
from wgpy.cli import daemon, keys, wg

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
  demo        a VPN between two network namespaces (--simulated: in memory)
  --version   print the version
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 1
    command, rest = args[0], args[1:]
    if command in ("--version", "version"):
        print(f"wgpy {__version__}")
        return 0
    if command in ("genkey", "genpsk", "pubkey"):
        return keys.run(command, rest)
    if command in wg.COMMANDS:
        return wg.run(command, rest)
    if command == "probe":
        from wgpy.cli import probe

        return probe.run(rest)
    if command == "capture":
        from wgpy.cli import capture

        return capture.run(rest)
    if command == "metrics":
        from wgpy.cli import metrics

        return metrics.run(rest)
    if command == "proxy":
        from wgpy.cli import proxy

        return proxy.run(rest)
    if command == "run":
        from wgpy.cli import run

        return run.run(rest)
    if command == "demo":
        from wgpy.demo import main as demo

        return demo(rest)
    return daemon.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
