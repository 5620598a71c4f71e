"""Batches on the TUN: what one wake-up reads from it, and how a batch is written to it.

`PlainTun` moves one packet per system call, which any TUN allows. `OffloadTun` serves a TUN
with the virtio-net header and TSO on (see tun_offload.py): a read hands over up to 64 KiB of
one TCP flow, cut here into packets; a write takes the received packets coalesced into as few
super-packets as the GRO rules allow. Both make the file non-blocking: the caller waits for it
to become readable when `read` raises BlockingIOError. Both drain the file only when a poll says
that more than the first packet waits (see readiness.py).
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Final, Protocol

from wgpy.io.readiness import input_waiting
from wgpy.io.vnet.coalesce import coalesce
from wgpy.io.vnet.segment import (
    MAX_PACKET,
    NO_OFFLOAD,
    VNET_HDR_LEN,
    OffloadError,
    VnetHdr,
    segment,
)

log = logging.getLogger("wgpy")

# Packets one wake-up reads before handing them on: a bound on the work (and memory) per batch.
BATCH: Final = 64


class TunBatches(Protocol):
    def fileno(self) -> int: ...

    def read(self) -> list[bytes]:
        """Packets waiting in the TUN, about BATCH at most (none if what was read was dropped).
        Raises BlockingIOError when nothing is waiting, OSError(EBADFD) once the interface is
        gone."""
        ...

    def write(self, packets: Sequence[bytes]) -> None:
        """Hand `packets` to the kernel; one it refuses is logged and dropped."""
        ...


class _Tun(ABC):
    """What both share: the file, non-blocking, and a read that drains it: one system call's
    read, then more while the poll says more waits, up to about BATCH packets."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._waiting = input_waiting(fd)
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self._fd

    def read(self) -> list[bytes]:
        packets = self._read_one()
        if self._waiting():
            try:
                while len(packets) < BATCH:
                    packets += self._read_one()
            except BlockingIOError:
                pass
        return packets

    @abstractmethod
    def _read_one(self) -> list[bytes]:
        """The packets of one system call's read (none if what it read was dropped)."""


class PlainTun(_Tun):
    def _read_one(self) -> list[bytes]:
        return [os.read(self._fd, MAX_PACKET)]

    def write(self, packets: Sequence[bytes]) -> None:
        for packet in packets:
            try:
                os.write(self._fd, packet)
            except OSError as error:
                _refused(error, packet)


class OffloadTun(_Tun):
    """For a TUN with IFF_VNET_HDR and TSO on; `udp` when it takes USO too."""

    def __init__(self, fd: int, udp: bool) -> None:
        super().__init__(fd)
        self._udp = udp

    def write(self, packets: Sequence[bytes]) -> None:
        buffers: Sequence[bytes]
        if len(packets) == 1:  # Nothing to merge; the kernel checks a lone packet itself.
            buffers = (NO_OFFLOAD + packets[0],)
        else:
            buffers = coalesce(packets, udp=self._udp)
        for buffer in buffers:
            try:
                os.write(self._fd, buffer)
            except OSError as error:
                _refused(error, buffer)

    def _read_one(self) -> list[bytes]:
        data = os.read(self._fd, VNET_HDR_LEN + MAX_PACKET)
        if data[:VNET_HDR_LEN] == NO_OFFLOAD:  # One whole packet, checksummed, as ping's are.
            return [data[VNET_HDR_LEN:]]
        try:
            return segment(memoryview(data)[VNET_HDR_LEN:], VnetHdr.parse(data))
        except (OffloadError, IndexError, struct.error) as error:
            log.debug("TUN packet dropped: %s", error)
            return []


# What a TUN answers once its interface is deleted or its file closed. (A write to an interface
# that is merely down fails with EIO: that packet is lost, nothing more.)
INTERFACE_GONE: Final = frozenset({errno.EBADFD, errno.EBADF})


def _refused(error: OSError, data: bytes) -> None:
    """A write of `data` to the TUN failed with `error`: raised again if the interface is gone,
    else logged (the packet is dropped). (The writes call this only on an error: a ping's
    packet costs a Python call less.)"""
    if error.errno in INTERFACE_GONE:
        raise error
    log.debug("TUN write of %d bytes refused: %s", len(data), error)
