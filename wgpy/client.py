"""The client of the configuration socket RUN_DIR/IFNAME.sock, as `wg` is one for a userspace
interface (wireguard-tools src/ipc-uapi-unix.h and ipc-uapi.h); the text it speaks is wgpy.uapi.

Every command that talks to a running interface does so here: `wgpy show|set|...`, wgpy-quick,
`wgpy capture`, `wgpy metrics`, the demo, the tests and the benchmarks. The server
(wgpy.io.uapi_server) listens at `socket_path` too, so both sides agree on where.

RUN_DIR is /var/run/wireguard, where wireguard-go and wg keep their sockets, unless WGPY_RUN_DIR
moves it (for wgpy only: wireguard-go and wg know no such variable). A user other than root, who
cannot write there, has it in their runtime directory instead ($XDG_RUNTIME_DIR/wireguard, or
/run/user/UID/wireguard, when that directory is theirs): where `wgpy proxy --name` and `wgpy run`
serve as that user, and where `wg` does not look. Connecting fails with wg's
errno (OSError); a refusal from the device raises UapiError with the errno it replied.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path
from typing import Final

from wgpy.errors import UapiError
from wgpy.uapi import (
    CaptureRequest,
    DeviceState,
    DeviceStats,
    DeviceUpdate,
    format_capture,
    format_set,
    parse_errno,
    parse_get,
    parse_stats,
)

DEFAULT_RUN_DIR: Final = Path("/var/run/wireguard")
USER_RUNTIME_DIRS: Final = Path("/run/user")  # pam_systemd's, one per uid
SOCKET_SUFFIX: Final = ".sock"
# How long one read or write may wait on the device (wg waits for ever).
TIMEOUT: Final = 10.0


def run_dir() -> Path:
    moved = os.environ.get("WGPY_RUN_DIR")
    if moved:
        return Path(moved)
    if os.geteuid() == 0:
        return DEFAULT_RUN_DIR
    for runtime in (os.environ.get("XDG_RUNTIME_DIR"), USER_RUNTIME_DIRS / str(os.geteuid())):
        if runtime and _owned(Path(runtime)):
            return Path(runtime) / "wireguard"
    return DEFAULT_RUN_DIR


def _owned(directory: Path) -> bool:
    """Whether `directory` is the caller's own (a runtime directory inherited from another user,
    as through su or setpriv, is not)."""
    try:
        return directory.stat().st_uid == os.geteuid()
    except OSError:
        return False


def socket_path(ifname: str) -> Path:
    return run_dir() / f"{ifname}{SOCKET_SUFFIX}"


def connect(ifname: str) -> socket.socket:
    """Connect as userspace_interface_file does: EINVAL for a name with a '/', EBADF for a file
    that is not a socket, and a socket that refuses the connection is removed (the process
    behind it is gone)."""
    if "/" in ifname:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    path = socket_path(ifname)
    if not stat.S_ISSOCK(os.stat(path).st_mode):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(str(path))
    except ConnectionRefusedError:
        sock.close()
        path.unlink(missing_ok=True)
        raise
    except OSError:
        sock.close()
        raise
    return sock


def list_interfaces() -> list[str]:
    """The interfaces with a live socket, in directory order (userspace_get_wireguard_interfaces);
    a stale socket found on the way is removed."""
    try:
        entries = os.listdir(run_dir())
    except FileNotFoundError:
        return []
    names = [entry[: -len(SOCKET_SUFFIX)] for entry in entries if entry.endswith(SOCKET_SUFFIX)]
    return [name for name in names if name and _is_live(name)]


def _is_live(ifname: str) -> bool:
    # userspace_has_wireguard_interface: a socket that does not refuse connections.
    try:
        if not stat.S_ISSOCK(os.stat(socket_path(ifname)).st_mode):
            return False
    except OSError:
        return False
    try:
        connect(ifname).close()
    except ConnectionRefusedError:
        return False
    except OSError:
        pass  # wg lists it all the same
    return True


def exchange(ifname: str, request: str) -> str:
    """Send one request and return its reply, which ends with its first empty line (or where
    the device hung up)."""
    with connect(ifname) as sock:
        sock.sendall(request.encode())
        return _read_status(sock).decode("utf-8", errors="replace")


def _read_status(sock: socket.socket) -> bytes:
    """What arrives up to and with the first empty line, and any more that came with it."""
    reply = b""
    while b"\n\n" not in reply and (chunk := sock.recv(65536)):
        reply += chunk
    return reply


def get_device(ifname: str) -> DeviceState:
    """The device's state (`get`); raises OSError, or UapiError with the errno it replied."""
    return parse_get(exchange(ifname, "get=1\n\n"))


def set_device(ifname: str, update: DeviceUpdate) -> None:
    """Apply `update` (`set`); raises OSError, or UapiError with the errno the device replied."""
    if status := parse_errno(exchange(ifname, format_set(update))):
        raise UapiError(status, f"{ifname} refused the configuration")


def get_stats(ifname: str) -> DeviceStats | None:
    """wgpy's statistics (the `stats=1` extension), or None from a device without them, such as
    wireguard-go, which hangs up on the request."""
    reply = exchange(ifname, "stats=1\n\n")
    return parse_stats(reply) if reply else None


def open_capture(ifname: str, request: CaptureRequest) -> tuple[socket.socket, bytes]:
    """The capture stream (wgpy's `capture=1` extension): the connected socket, and the first
    bytes of the stream. Raises OSError, or UapiError with the errno the daemon replied, which is
    EOPNOTSUPP from a daemon that hangs up on the request, as wireguard-go does."""
    sock = connect(ifname)
    try:
        sock.sendall(format_capture(request).encode())
        status, end, stream = _read_status(sock).partition(b"\n\n")
        if not end:
            raise UapiError(errno.EOPNOTSUPP, f"{ifname} does not offer capture")
        if code := parse_errno(status.decode("ascii", errors="replace")):
            raise UapiError(code, f"{ifname} refused to capture")
    except BaseException:
        sock.close()
        raise
    return sock, stream
