"""`wgpy install-files`: the systemd units, man pages and bash completions, where the system
looks for them (wgpy.system_files)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wgpy import system_files
from wgpy.errors import WgpyError

NEXT_STEPS = (
    "Then: systemctl daemon-reload; "
    "systemctl enable --now wgpy-quick@wg0 (for /etc/wireguard/wg0.conf)"
)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="wgpy install-files",
        description="Install wgpy's systemd units, man pages and bash completions.",
    )
    parser.add_argument(
        "--prefix",
        type=Path,
        default=system_files.DEFAULT_PREFIX,
        help="where systemd, man and bash-completion look (default: %(default)s)",
    )
    parser.add_argument(
        "--destdir",
        type=Path,
        help="a staging root to write under, as make's DESTDIR (for packagers)",
    )
    parser.add_argument("--uninstall", action="store_true", help="remove them instead")
    args = parser.parse_args(argv)
    try:
        if args.uninstall:
            paths = system_files.uninstall(args.prefix, args.destdir)
        else:
            bindir = system_files.commands_directory()
            paths = system_files.install(args.prefix, bindir, args.destdir)
    except WgpyError as error:
        print(f"wgpy install-files: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"wgpy install-files: {error.filename}: {error.strerror}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{'removed' if args.uninstall else 'installed'} {path}")
    if not args.uninstall:
        print(NEXT_STEPS)
    return 0
