"""The TUN edge: a Linux TUN device opened by name, one IP packet per read and per write.

Facts from include/uapi/linux/if_tun.h, include/uapi/linux/sockios.h, drivers/net/tun.c and
wireguard-go's tun/tun_linux.go. Every failure is an OSError whose errno is the kernel's; the ones
`open_tun` raises carry a one-line reason an operator can act on (see `describe`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from collections.abc import Mapping
from types import TracebackType
from typing import Final

from wgpy.core.constants import DEFAULT_MTU

CLONE_DEVICE: Final = "/dev/net/tun"

TUNSETIFF: Final = 0x400454CA  # _IOW('T', 202, int)
TUNGETIFF: Final = 0x800454D2  # _IOR('T', 210, unsigned int)
IFF_TUN: Final = 0x0001
IFF_MULTI_QUEUE: Final = 0x0100
IFF_NO_PI: Final = 0x1000  # no 4-byte packet-information prefix: reads are bare IP packets
IFF_VNET_HDR: Final = 0x4000  # a virtio_net_hdr before each packet, for offloads
DEFAULT_FLAGS: Final = IFF_TUN | IFF_NO_PI

SIOCGIFMTU: Final = 0x8921
SIOCSIFMTU: Final = 0x8922

IFNAMSIZ: Final = 16
MAX_PACKET_SIZE: Final = 65535

# struct ifreq: the name, then a union whose largest member (struct ifmap) makes it 40 bytes on
# 64-bit Linux; ifr_flags is a short, ifr_mtu an int.
_IFREQ_FLAGS = struct.Struct("16sH22x")
_IFREQ_INT = struct.Struct("16si20x")

_INVALID_NAME = "invalid interface name (1 to 15 bytes, not '.' or '..', no '/', ':' or space)"
_NOT_PERMITTED = "not permitted (needs CAP_NET_ADMIN)"

# Why each step fails, by errno. The kernel answers TUNSETIFF with EBUSY when a TUN device of that
# name is attached to another file, and EINVAL when the name belongs to another kind of device
# (tun_set_iff in drivers/net/tun.c); `open_tun` checks names itself, so EINVAL means only that.
_OPEN_REASONS: Final[Mapping[int, str]] = {
    errno.ENOENT: f"no {CLONE_DEVICE}",
    errno.ENODEV: f"no {CLONE_DEVICE} (is the tun module loaded?)",
    errno.ENXIO: f"no {CLONE_DEVICE} (is the tun module loaded?)",
    errno.EPERM: _NOT_PERMITTED,
    errno.EACCES: _NOT_PERMITTED,
}
_SETIFF_REASONS: Final[Mapping[int, str]] = {
    errno.EPERM: _NOT_PERMITTED,
    errno.EBUSY: "interface name taken",
    errno.EINVAL: "interface name taken by a device that is not a TUN",
}
_MTU_REASONS: Final[Mapping[int, str]] = {
    errno.EPERM: _NOT_PERMITTED,
    errno.EINVAL: "MTU out of range",
    errno.ENODEV: "no such interface",
}


class Tun:
    """An open TUN device. Reads and writes move one IP packet each; the file is blocking."""

    def __init__(self, fd: int, name: str) -> None:
        self._fd = fd
        self.name = name

    def fileno(self) -> int:
        return self._fd

    def read(self, bufsize: int = MAX_PACKET_SIZE) -> bytes:
        """The next packet. Raises OSError(EBADFD) once the interface has been deleted."""
        return os.read(self._fd, bufsize)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read the next packet into `buffer` without copying; returns its length."""
        return os.readv(self._fd, [buffer])

    def write(self, packet: bytes | bytearray | memoryview) -> int:
        return os.write(self._fd, packet)

    def setblocking(self, blocking: bool) -> None:
        os.set_blocking(self._fd, blocking)

    def mtu(self) -> int:
        return get_mtu(self.name)

    def set_mtu(self, mtu: int) -> None:
        set_mtu(self.name, mtu)

    def exists(self) -> bool:
        """Whether the interface still exists, in whatever namespace it now lives.

        `ip link del` detaches the device from the file, after which the kernel answers every
        operation on it with EBADFD; the daemon ends when this turns false.
        """
        try:
            fcntl.ioctl(self._fd, TUNGETIFF, bytes(_IFREQ_FLAGS.size))
        except OSError as err:
            if err.errno == errno.EBADFD:
                return False
            raise
        return True

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> Tun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Tun(name={self.name!r}, fd={self._fd})"


def open_tun(name: str, flags: int = DEFAULT_FLAGS, mtu: int | None = DEFAULT_MTU) -> Tun:
    """Create (or attach to a persistent) TUN device `name` and set its MTU unless `mtu` is None.

    The device lives in the network namespace of the thread that calls this. `name` may hold a
    "%d" for the kernel to fill in; `Tun.name` is the name the kernel chose.
    """
    if not valid_name(name):
        raise OSError(errno.EINVAL, _INVALID_NAME, name)
    try:
        fd = os.open(CLONE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        raise _explained(err, name, _OPEN_REASONS) from err
    try:
        ifreq = fcntl.ioctl(fd, TUNSETIFF, _IFREQ_FLAGS.pack(name.encode(), flags))
    except OSError as err:
        os.close(fd)
        raise _explained(err, name, _SETIFF_REASONS) from err
    tun = Tun(fd, _ifreq_name(ifreq))
    if mtu is not None:
        try:
            tun.set_mtu(mtu)
        except OSError:
            tun.close()
            raise
    return tun


def valid_name(name: str) -> bool:
    """The kernel's rule for interface names (dev_valid_name in net/core/dev.c)."""
    return (
        0 < len(name.encode()) < IFNAMSIZ
        and name not in (".", "..")
        and not any(char in "/:" or char.isspace() for char in name)
    )


def get_mtu(name: str) -> int:
    """The MTU of interface `name`, in the calling thread's network namespace."""
    _, mtu = _IFREQ_INT.unpack(_ifreq_int_ioctl(name, SIOCGIFMTU, 0))
    return int(mtu)


def set_mtu(name: str, mtu: int) -> None:
    _ifreq_int_ioctl(name, SIOCSIFMTU, mtu)


def describe(err: OSError) -> str:
    """One line for the operator, such as "wg0: interface name taken"."""
    reason = err.strerror or os.strerror(err.errno or 0)
    return f"{err.filename}: {reason}" if err.filename else reason


def _ifreq_int_ioctl(name: str, request: int, value: int) -> bytes:
    # Interface ioctls go through any socket; an AF_INET datagram socket is always available.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return fcntl.ioctl(sock, request, _IFREQ_INT.pack(name.encode(), value))
    except OSError as err:
        raise _explained(err, name, _MTU_REASONS) from err


def _ifreq_name(ifreq: bytes) -> str:
    return ifreq[:IFNAMSIZ].split(b"\0", 1)[0].decode()


def _explained(err: OSError, name: str, reasons: Mapping[int, str]) -> OSError:
    """`err` with the same errno, its message replaced by the reason this step failed."""
    code = err.errno or 0
    return OSError(code, reasons.get(code, os.strerror(code)), name)
