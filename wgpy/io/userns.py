"""A user, network and mount namespace of the caller's own, as unshare(1) -r makes one: unshare(2),
then the caller's uid and gid mapped to themselves (setgroups denied, as an unprivileged process
must), mounts made private, so what is mounted inside never reaches the host.

The process keeps every capability in the new user namespace until it executes a program under a
uid other than 0 (capabilities(7)), so it can make a TUN, routes and mounts there, while COMMAND,
run later, has exactly the caller's identity and none. Python 3.11 has no os.unshare: libc's.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Final

CLONE_NEWNS: Final = 0x00020000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWNET: Final = 0x40000000
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MS_PRIVATE: Final = 0x40000

TUN_DEVICE: Final = Path("/dev/net/tun")
PROXY_HINT: Final = "use `wgpy proxy`, which needs neither"
_USERNS_CLONE = Path("/proc/sys/kernel/unprivileged_userns_clone")
_MAX_USER_NAMESPACES = Path("/proc/sys/user/max_user_namespaces")
_APPARMOR_RESTRICT = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")

_libc = ctypes.CDLL(None, use_errno=True)


def unavailable_reason() -> str | None:
    """Why this machine cannot give the caller such a namespace with a TUN in it, in one line
    naming the setting, or None."""
    if _sysctl(_MAX_USER_NAMESPACES) == "0":
        return f"user namespaces are disabled (user.max_user_namespaces = 0); {PROXY_HINT}"
    if os.geteuid() != 0:
        if _sysctl(_USERNS_CLONE) == "0":
            return (
                "unprivileged user namespaces are disabled "
                f"(kernel.unprivileged_userns_clone = 0); {PROXY_HINT}"
            )
        if _sysctl(_APPARMOR_RESTRICT) == "1":
            return (
                "AppArmor restricts unprivileged user namespaces "
                f"(kernel.apparmor_restrict_unprivileged_userns = 1); {PROXY_HINT}"
            )
    if not TUN_DEVICE.exists():
        return f"no {TUN_DEVICE} (is the tun module loaded?); {PROXY_HINT}"
    if not os.access(TUN_DEVICE, os.R_OK | os.W_OK):
        mode = TUN_DEVICE.stat().st_mode & 0o777
        return f"{TUN_DEVICE} is not accessible to uid {os.getuid()} (mode {mode:o}); {PROXY_HINT}"
    return None


def enter() -> None:
    """Move the calling process, which must be single-threaded, into new user, network and mount
    namespaces, mapped as its own uid and gid. Raises OSError."""
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS))
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None))


def bind_file(source: Path, target: Path) -> None:
    """Mount `source` over `target` in this mount namespace. Raises OSError."""
    _check(_libc.mount(bytes(source), bytes(target), None, MS_BIND, None))


def _sysctl(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _check(result: int) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
