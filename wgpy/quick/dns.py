"""DNS through resolvconf(8), as linux.bash set_dns, unset_dns and save_config drive it.

`up` hands resolvconf a record named after the interface (`resolvconf -a NAME -m 0 -x`), `down`
takes it back (`resolvconf -d NAME -f`). Debian's resolvconf orders records by the patterns in
/etc/resolvconf/interface-order, so wg-quick names its record after the first `NAME*` pattern
there (`tun.wg0`); other implementations (openresolv, systemd's resolvconf link) get the bare
interface name.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

INTERFACE_ORDER = Path("/etc/resolvconf/interface-order")
RECORD_DIR = Path("/etc/resolvconf/run/interface")

_PATTERN = re.compile(r"([A-Za-z0-9-]+)\*")
_NAMESERVER = re.compile(r"nameserver ([a-zA-Z0-9_=+:%.-]+)")
_SEARCH = re.compile(r"search (.+)")


def find_resolvconf() -> str | None:
    return shutil.which("resolvconf")


def record_prefix(resolvconf: str | None, interface_order: Path = INTERFACE_ORDER) -> str:
    """resolvconf_iface_prefix: "tun." for Debian's resolvconf with a `tun*` pattern, else ""."""
    if resolvconf is None or Path(resolvconf).is_symlink() or not interface_order.is_file():
        return ""
    return prefix_from_interface_order(interface_order.read_text(errors="replace"))


def prefix_from_interface_order(text: str) -> str:
    for line in text.splitlines():
        if match := _PATTERN.fullmatch(line.strip()):
            return f"{match[1]}."
    return ""


def add_record(resolvconf: str, record: str, text: str) -> None:
    subprocess.run([resolvconf, "-a", record, "-m", "0", "-x"], input=text, text=True, check=True)


def delete_record(resolvconf: str, record: str) -> None:
    subprocess.run([resolvconf, "-d", record, "-f"], stdin=subprocess.DEVNULL, check=True)


def read_record(resolvconf: str | None, record: str) -> str:
    """The record as resolvconf lists it (`-l`, openresolv), or as Debian's keeps it on disk."""
    if resolvconf is not None:
        listed = subprocess.run(
            [resolvconf, "-l", record],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if listed.returncode == 0:
            return listed.stdout
    try:
        return (RECORD_DIR / record).read_text(errors="replace")
    except OSError:
        return ""


def parse_record(text: str) -> tuple[list[str], list[str]]:
    """The nameservers and search domains of a resolv.conf-style record."""
    nameservers: list[str] = []
    search: list[str] = []
    for line in text.splitlines():
        if match := _NAMESERVER.fullmatch(line):
            nameservers.append(match[1])
        elif match := _SEARCH.fullmatch(line):
            search += match[1].split()
    return nameservers, search
