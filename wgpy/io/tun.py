"""The TUN edge: a Linux TUN device opened by name, one IP packet per read and per write.

Facts from include/uapi/linux/if_tun.h, include/uapi/linux/sockios.h, drivers/net/tun.c and
wireguard-go's tun/tun_linux.go. Every failure is an OSError whose errno is the kernel's; the ones
`open_tun` raises carry a one-line reason an operator can act on (see `describe`).

An interface may change namespace and name while its file is open: `ip link set wg0 netns
OTHER [name wg1]` moves it, and the file stays with the process that opened it (WireGuard's way
of putting a container behind a tunnel). So what is learnt about the interface comes through the
file, never from a name looked up where it was born: TUNGETIFF gives its name now, or EBADFD once
it is deleted wherever it lives; TUNGETDEVNETNS opens the namespace it is in now. An interface
ioctl (the MTU), or an rtnetlink request (the size of its super-packets), is made by that name
through a socket opened in that namespace, by a short-lived thread that enters it, so the
caller's threads stay where they are.

Nothing of that namespace is kept between two ioctls: a socket held there would keep the
namespace alive once deleted, and with it the interface (measured). For the same reason there is
no listener for link events there; wireguard-go's listens where it was born and hears nothing
after a move. Asking again when needed (the daemon does once a second) is simpler and sees the
same.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
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
TUNGETDEVNETNS: Final = 0x54E3  # _IO('T', 227), Linux 5.2 and later: opens the device's netns
IFF_TUN: Final = 0x0001
IFF_MULTI_QUEUE: Final = 0x0100
IFF_NO_PI: Final = 0x1000  # no 4-byte packet-information prefix: reads are bare IP packets
IFF_VNET_HDR: Final = 0x4000  # a virtio_net_hdr before each packet, for offloads
DEFAULT_FLAGS: Final = IFF_TUN | IFF_NO_PI

SIOCGIFMTU: Final = 0x8921
SIOCSIFMTU: Final = 0x8922
CLONE_NEWNET: Final = 0x40000000

# rtnetlink (include/uapi/linux/netlink.h, rtnetlink.h, if_link.h): what `ip link set` sends.
NETLINK_ROUTE: Final = 0
RTM_NEWLINK: Final = 16
NLMSG_ERROR: Final = 2
NLM_F_REQUEST: Final = 0x01
NLM_F_ACK: Final = 0x04
IFLA_IFNAME: Final = 3
IFLA_GSO_MAX_SEGS: Final = 40
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR = struct.Struct("=HH")
_NLMSGERR = struct.Struct("=i")

IFNAMSIZ: Final = 16
MAX_PACKET_SIZE: Final = 65535

# struct ifreq: the name, then a union whose largest member (struct ifmap) makes it 40 bytes on
# 64-bit Linux; ifr_flags is a short, ifr_mtu an int.
_IFREQ_FLAGS = struct.Struct("16sH22x")
_IFREQ_INT = struct.Struct("16si20x")

_libc = ctypes.CDLL(None, use_errno=True)  # for setns(2): os.setns is Python 3.12 and later

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
        self.name = name  # as created: a move may rename the interface (see `current_name`)

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

    def current_name(self) -> str:
        """The interface's name now, in the namespace it is in now."""
        return _ifreq_name(fcntl.ioctl(self._fd, TUNGETIFF, bytes(_IFREQ_FLAGS.size)))

    def mtu(self) -> int:
        _, mtu = _IFREQ_INT.unpack(self._ifreq_int_ioctl(SIOCGIFMTU, 0))
        return int(mtu)

    def set_mtu(self, mtu: int) -> None:
        self._ifreq_int_ioctl(SIOCSIFMTU, mtu)

    def set_gso_max_segs(self, segments: int) -> None:
        """Cap the segments of a super-packet the kernel hands over (TSO, USO) at `segments`:
        `ip link set dev NAME gso_max_segs SEGMENTS`, over rtnetlink in the interface's namespace
        now. Raises OSError with the kernel's errno when refused (EPERM without CAP_NET_ADMIN)."""
        with _socket_in_netns_of(
            self._fd, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE
        ) as sock:
            name = self.current_name()
            body = (
                _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                + _rtattr(IFLA_IFNAME, name.encode() + b"\0")
                + _rtattr(IFLA_GSO_MAX_SEGS, struct.pack("=I", segments))
            )
            header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_NEWLINK,
                                    NLM_F_REQUEST | NLM_F_ACK, 1, 0)  # fmt: skip
            sock.send(header + body)  # to the kernel: a netlink socket's default destination
            reply = sock.recv(4096)
        _, kind, _, _, _ = _NLMSGHDR.unpack_from(reply)
        error = -_NLMSGERR.unpack_from(reply, _NLMSGHDR.size)[0] if kind == NLMSG_ERROR else 0
        if error:
            raise OSError(error, os.strerror(error), name)

    def exists(self) -> bool:
        """Whether the interface still exists, in whatever namespace it now lives.

        `ip link del`, or the end of the namespace it is in, detaches the device from the file,
        after which the kernel answers every operation on it with EBADFD; the daemon ends when
        this turns false.
        """
        try:
            self.current_name()
        except OSError as err:
            if err.errno == errno.EBADFD:
                return False
            raise
        return True

    def _ifreq_int_ioctl(self, request: int, value: int) -> bytes:
        """An interface ioctl on the interface wherever it is: by its current name, through a
        socket of its current namespace. (A move between the two reads makes the name miss
        there, ENODEV, unless the move also renamed it to a name taken where it was.)"""
        with _socket_in_netns_of(self._fd) as sock:
            name = self.current_name()
            try:
                return fcntl.ioctl(sock, request, _IFREQ_INT.pack(name.encode(), value))
            except OSError as err:
                raise _explained(err, name, _MTU_REASONS) from err

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


def describe(err: OSError) -> str:
    """One line for the operator, such as "wg0: interface name taken"."""
    reason = err.strerror or os.strerror(err.errno or 0)
    return f"{err.filename}: {reason}" if err.filename else reason


def _socket_in_netns_of(
    tun_fd: int,
    family: int = socket.AF_INET,
    kind: int = socket.SOCK_DGRAM,
    protocol: int = 0,
) -> socket.socket:
    """A socket in the namespace the TUN's interface is in now: by default one for interface
    ioctls (any socket takes them; an AF_INET datagram socket is always available). Where that
    namespace is the calling thread's own, no thread is needed, nor the CAP_SYS_ADMIN that
    entering another one takes."""
    try:
        netns = fcntl.ioctl(tun_fd, TUNGETDEVNETNS)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        # Before Linux 5.2: the caller's namespace, where a moved interface is not found.
        return socket.socket(family, kind, protocol)
    try:
        if _same_file(os.fstat(netns), os.stat("/proc/thread-self/ns/net")):
            return socket.socket(family, kind, protocol)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tun-netns") as thread:
            return thread.submit(_socket_entering, netns, family, kind, protocol).result()
    finally:
        os.close(netns)


def _socket_entering(netns: int, family: int, kind: int, protocol: int) -> socket.socket:
    """In a thread of its own, which ends after: enter `netns` and open a socket there (a
    socket belongs to the namespace it was opened in for good)."""
    if _libc.setns(netns, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot enter the interface's namespace: {os.strerror(code)}")
    return socket.socket(family, kind, protocol)


def _rtattr(kind: int, value: bytes) -> bytes:
    """A netlink attribute: its length and type, the value, padded to 4 bytes."""
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, kind) + value + bytes(-length % 4)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _ifreq_name(ifreq: bytes) -> str:
    return ifreq[:IFNAMSIZ].split(b"\0", 1)[0].decode()


def _explained(err: OSError, name: str, reasons: Mapping[int, str]) -> OSError:
    """`err` with the same errno, its message replaced by the reason this step failed."""
    code = err.errno or 0
    return OSError(code, reasons.get(code, os.strerror(code)), name)
