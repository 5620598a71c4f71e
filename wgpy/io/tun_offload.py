"""Offloads on the TUN: the virtio-net header, TSO and checksum offload (and USO where the kernel
has it), so that one read hands over a whole TCP send burst and one write takes a coalesced one.

Facts from include/uapi/linux/if_tun.h and drivers/net/tun.c (tun_set_iff, set_offload) and from
wireguard-go's tun/tun_linux.go (CreateTUN, initFromFlags), which asks for the same offloads.
"""

from __future__ import annotations

import fcntl
import logging
import struct
from dataclasses import dataclass
from typing import Final

from wgpy.core.constants import TRANSPORT_MIN_SIZE
from wgpy.io.tun import IFF_VNET_HDR, TUNGETIFF, Tun, open_tun
from wgpy.io.udp_batches import datagrams_per_send

log = logging.getLogger("wgpy")

TUNSETPERSIST: Final = 0x400454CB  # _IOW('T', 203, int)
TUNSETOFFLOAD: Final = 0x400454D0  # _IOW('T', 208, unsigned int)

TUN_F_CSUM: Final = 0x01  # we finish checksums left partial
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04
TUN_F_USO4: Final = 0x20  # Linux 6.2 and later
TUN_F_USO6: Final = 0x40
TCP_OFFLOADS: Final = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
UDP_OFFLOADS: Final = TUN_F_USO4 | TUN_F_USO6

_IFREQ_FLAGS = struct.Struct("16sH22x")


@dataclass(frozen=True)
class TunOffloads:
    """What the TUN does for us once every packet carries a virtio-net header."""

    udp: bool  # UDP super-packets (USO) both ways, besides TCP ones


def enable_offloads(tun: Tun) -> tuple[Tun, TunOffloads | None]:
    """`tun` with TSO and checksum offload on, and USO where the kernel has it.

    A TUN opened without IFF_VNET_HDR is attached to a new file with it (see `_reattach`), so the
    Tun returned may be a new one, and `tun` closed. Where the kernel refuses, the TUN comes back
    without the header and with None: the caller keeps to one plain packet per read and write.
    """
    if not flags(tun) & IFF_VNET_HDR:
        tun = _reattach(tun, flags(tun) | IFF_VNET_HDR)
    try:
        if not flags(tun) & IFF_VNET_HDR:
            raise OSError("the TUN would not take IFF_VNET_HDR")
        fcntl.ioctl(tun.fileno(), TUNSETOFFLOAD, TCP_OFFLOADS)
    except OSError as error:
        log.info("(%s) TUN offloads refused (%s): one packet per read and write", tun.name, error)
        if flags(tun) & IFF_VNET_HDR:
            tun = _reattach(tun, flags(tun) & ~IFF_VNET_HDR)
        return tun, None
    try:
        fcntl.ioctl(tun.fileno(), TUNSETOFFLOAD, TCP_OFFLOADS | UDP_OFFLOADS)
    except OSError:
        return tun, TunOffloads(udp=False)
    return tun, TunOffloads(udp=True)


def fit_super_packets_to_sends(tun: Tun, mtu: int) -> int | None:
    """Cap the TUN's super-packets at the segments one UDP_SEGMENT send carries once sealed
    (gso_max_segs), so that each goes out in one send and arrives in one UDP_GRO receive. At the
    default 64 KiB, a 1420-byte MTU's TCP super-packet is 47 segments, which went out as 45 and 2
    in two sends, received in two receives: per super-packet, a send and a receive (with their
    system calls and Python) more than needed. Measured in one TCP flow between two wgpy
    daemons: both daemons' CPU per GB 4.70 -> 4.44 s (three runs each, alternating).

    A full segment is sealed into a datagram of its MTU plus the transport header and tag. The
    segments of the super-packet become datagrams of that size, the last maybe shorter: the cap
    is how many of them one send takes. Returns the cap, or None where the kernel refused it
    (an old one, or without CAP_NET_ADMIN): the super-packets then stay as they were."""
    segments = datagrams_per_send(mtu + TRANSPORT_MIN_SIZE)
    try:
        tun.set_gso_max_segs(segments)
    except OSError as error:
        log.debug("(%s) super-packets not capped at %d segments: %s", tun.name, segments, error)
        return None
    return segments


def flags(tun: Tun) -> int:
    """The IFF_* flags the TUN was attached with."""
    ifreq = fcntl.ioctl(tun.fileno(), TUNGETIFF, bytes(_IFREQ_FLAGS.size))
    return int(_IFREQ_FLAGS.unpack(ifreq)[1])


def _reattach(tun: Tun, new_flags: int) -> Tun:
    """The same interface attached to a new file opened with `new_flags`.

    Flags such as IFF_VNET_HDR are chosen when a file is attached (TUNSETIFF), and a single-queue
    TUN takes one file at a time. So the interface is made persistent for a moment, which keeps
    it (with its addresses and routes) while the old file closes, and the new file attaches to it
    by name; the kernel then takes the new file's flags (tun_set_iff). If that fails, a file
    with the old flags is attached instead, so the interface is not left without one.
    """
    name, old_flags = tun.name, flags(tun)
    try:
        fcntl.ioctl(tun.fileno(), TUNSETPERSIST, 1)
    except OSError as error:
        log.info("(%s) cannot reattach the TUN: %s", name, error)
        return tun
    tun.close()
    try:
        reattached = open_tun(name, new_flags, mtu=None)
    except OSError as error:
        log.info("(%s) TUN flags %#x refused: %s", name, new_flags, error)
        reattached = open_tun(name, old_flags, mtu=None)
    fcntl.ioctl(reattached.fileno(), TUNSETPERSIST, 0)
    return reattached
