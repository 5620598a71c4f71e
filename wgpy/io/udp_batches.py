"""Batches on the UDP sockets: many datagrams per system call each way.

Sending, UDP_SEGMENT (Linux 4.18) takes a run of datagrams of one size (the last may be shorter)
to one endpoint as a single buffer, which the kernel cuts; receiving, UDP_GRO (Linux 5.0) hands
over many datagrams from one source as one buffer, with their size in a control message. Facts
from include/uapi/linux/udp.h, net/ipv4/udp.c (udp_send_skb, udp_cmsg_recv) and wireguard-go's
conn/bind_std.go and conn/gso_linux.go, which batch the same way.

Either way the address a datagram arrived on comes with it, and a send names the address to
leave from, beside UDP_SEGMENT where there is one (pktinfo.py).
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from wgpy.core.endpoint import Endpoint, Local
from wgpy.io.pktinfo import IN6_PKTINFO_SIZE, SOURCE_GONE, local_in

log = logging.getLogger("wgpy")

SOL_UDP: Final = 17
UDP_SEGMENT: Final = 103
UDP_GRO: Final = 104

# The most datagrams one send may carry: the kernel's UDP_MAX_SEGMENTS, 1 << 6 in the kernels
# that introduced UDP_SEGMENT (include/linux/udp.h), raised to 1 << 7 later.
MAX_SEGMENTS: Final = 64
# The payload of the largest IPv4 datagram (65535 less the IPv4 and UDP headers); a send also
# carries no more than this over IPv6, for simplicity.
MAX_SEND: Final = 65535 - 20 - 8
RECEIVE_BUFFER: Final = 1 << 16
# Datagrams one wake-up takes from a socket (over several receives) before handing them on: a
# UDP_GRO receive often holds fewer than a full 64 KiB, and bigger batches make bigger writes
# to the TUN.
RECEIVE_BATCH: Final = 64
# How long a send waits for room in a full socket buffer before the datagrams are dropped.
SEND_TIMEOUT_MS: Final = 1000
_SEGMENT_SIZE = struct.Struct("=H")
_GRO_SIZE = struct.Struct("=i")
# Room for what a receive reports: UDP_GRO's size and the larger (IPv6) of the packet infos.
_CONTROL_SPACE: Final = socket.CMSG_SPACE(_GRO_SIZE.size) + socket.CMSG_SPACE(IN6_PKTINFO_SIZE)
_MSG_TRUNC: Final = int(socket.MSG_TRUNC)  # a plain int: IntFlag's & is a Python call a receive

# A received datagram: the bytes a receive returned, or a view into them when it held several.
Datagram = bytes | memoryview
# Datagrams from one source to one local address, as receives hand them over.
Received = tuple[list[Datagram], Endpoint, Local | None]


def datagrams_per_send(size: int) -> int:
    """How many datagrams of `size` bytes one UDP_SEGMENT send carries at most."""
    return max(1, min(MAX_SEGMENTS, MAX_SEND // max(size, 1)))


def supports_gso(sock: socket.socket) -> bool:
    """Whether the kernel knows UDP_SEGMENT (wireguard-go asks the same way)."""
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def enable_gro(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def gso_runs(datagrams: Sequence[bytes], limit: int = MAX_SEND) -> Iterator[Sequence[bytes]]:
    """`datagrams` cut into runs one UDP_SEGMENT send can carry: each datagram the size of the
    run's first but the last, which may be shorter, at most MAX_SEGMENTS and `limit` bytes."""
    start = 0
    while start < len(datagrams):
        size = len(datagrams[start])
        # A sealed super-packet: datagrams of one size, the last maybe shorter. Their lengths
        # are checked at once; the loop below takes any other batch a datagram at a time.
        end = min(len(datagrams), start + MAX_SEGMENTS, start + limit // max(size, 1))
        if end - start > 1 and _one_size(datagrams, start, end, size, limit):
            yield datagrams[start:end]
            start = end
            continue
        end, total = start + 1, size
        while end < len(datagrams) and end - start < MAX_SEGMENTS:
            length = len(datagrams[end])
            if length > size or total + length > limit:
                break
            end, total = end + 1, total + length
            if length < size:
                break
        yield datagrams[start:end]
        start = end


def _one_size(datagrams: Sequence[bytes], start: int, end: int, size: int, limit: int) -> bool:
    """Whether `gso_runs`' loop would take datagrams[start:end] as a run, all of `size` bytes
    but the last, which may be shorter: they are, and the run ends there."""
    lengths = list(map(len, datagrams[start:end]))
    if lengths[:-1].count(size) < len(lengths) - 1 or lengths[-1] > size:
        return False
    if lengths[-1] < size or end == len(datagrams) or end - start == MAX_SEGMENTS:
        return True
    following = len(datagrams[end])
    return following > size or size * len(lengths) + following > limit


def gro_size(control: list[tuple[int, int, bytes]]) -> int | None:
    """The size of the datagrams a UDP_GRO receive coalesced, from its control messages; None
    when they say none (one datagram, its whole buffer)."""
    for level, kind, data in control:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= _GRO_SIZE.size:
            return _GRO_SIZE.unpack_from(data)[0] or None
    return None


def split_gro(buffer: bytes, size: int | None) -> list[Datagram]:
    """The datagrams in `buffer` as one UDP_GRO receive returned it: all of `size` (gro_size)
    but the last, which may be shorter; one datagram without a size."""
    if size is None or size >= len(buffer):
        return [buffer]
    view = memoryview(buffer)
    return [view[start : start + size] for start in range(0, len(buffer), size)]


class UdpBatches:
    """Sends and receives batches on non-blocking sockets; with `gso` or `gro` off, one datagram
    a system call that way. One thread's: receives remember the last one's source."""

    def __init__(self, gso: bool, gro: bool) -> None:
        self.gso = gso
        self.gro = gro
        # The last receive's address and control messages, and what was read from them: the
        # next datagram is mostly from the same peer to the same local address, and then needs
        # no parsing (after an idle gap, a ping's datagram costs ~15 us less cold, cold-cache
        # microbenchmark in the commit message).
        self._address: object = None
        self._source = Endpoint("", 0)
        self._control: object = None
        self._size: int | None = None
        self._local: Local | None = None

    def send(
        self,
        sock: socket.socket,
        datagrams: Sequence[bytes],
        endpoint: Endpoint,
        local: Local | None = None,
    ) -> bool:
        """Send `datagrams` in order, from `local` if given. A full socket buffer is waited for,
        up to SEND_TIMEOUT_MS; then, or on another error, OSError is raised and the rest are not
        sent. Returns False when `local`'s address has left the host and the datagrams left
        from the routing table's choice instead (the kernel's send4 and send6 do the same)."""
        if local is None:
            self._send(sock, datagrams, endpoint, [])
            return True
        try:
            if len(datagrams) == 1:  # a ping's: a Python call less than through _send
                _transmit(sock, datagrams, [local], endpoint)
            else:
                self._send(sock, datagrams, endpoint, [local])
        except OSError as error:
            if error.errno not in SOURCE_GONE:
                raise
            # The first send fails, so all go again (a race with the address leaving could
            # repeat a few, which the peer's replay window drops). If this fails as well, the
            # address was not to blame: the error is this one's and `local` is kept.
            self._send(sock, datagrams, endpoint, [])
            return False
        return True

    def _send(
        self,
        sock: socket.socket,
        datagrams: Sequence[bytes],
        endpoint: Endpoint,
        sticky: list[Local],
    ) -> None:
        """`send`, with `sticky` the control message naming the source, or none."""
        if len(datagrams) == 1:
            if sticky:
                _transmit(sock, datagrams, sticky, endpoint)
                return
            try:  # sendto: the shortest way through CPython for the lone datagram of a ping
                sock.sendto(datagrams[0], endpoint)
            except BlockingIOError:
                _transmit(sock, datagrams, [], endpoint)
            return
        if not self.gso:
            for data in datagrams:
                _transmit(sock, [data], sticky, endpoint)
            return
        for run in gso_runs(datagrams):
            if len(run) == 1:
                _transmit(sock, run, sticky, endpoint)
                continue
            # The datagrams go as one buffer in pieces (an iovec), which the kernel then cuts.
            control = [(SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(len(run[0]))), *sticky]
            try:
                _transmit(sock, run, control, endpoint)
            except OSError as error:
                # EIO: the route's device cannot checksum for segmentation (wireguard-go's
                # errShouldDisableUDPGSO). Fall back to one datagram a call from now on.
                if error.errno != errno.EIO:
                    raise
                log.info("UDP segmentation offload failed (%s): turned off", error)
                self.gso = False
                self._send(sock, run, endpoint, sticky)

    def receive(self, sock: socket.socket, waiting: Callable[[], object]) -> list[Received]:
        """What is waiting on the socket, RECEIVE_BATCH datagrams or a few more at most, as runs
        from one source to one local address each: the batches to hand on. After the first
        receive, the socket is drained only if `waiting()` (readiness.input_waiting) says more
        waits. Raises BlockingIOError when nothing is waiting, OSError when the first receive
        fails (as an ICMP error may make it)."""
        batches = [self.receive_one(sock)]
        count = len(batches[0][0])
        if not waiting():
            return batches
        while count < RECEIVE_BATCH:
            try:
                datagrams, source, local = self.receive_one(sock)
            except OSError:  # BlockingIOError, or an error the next call reports
                break
            last = batches[-1]
            if source == last[1] and local == last[2]:
                last[0].extend(datagrams)
            else:
                batches.append((datagrams, source, local))
            count += len(datagrams)
        return batches

    def receive_one(self, sock: socket.socket) -> Received:
        """The datagrams one receive returns, all from one source to one local address. Raises
        BlockingIOError when none is waiting."""
        data, control, flags, address = sock.recvmsg(RECEIVE_BUFFER, _CONTROL_SPACE)
        if address != self._address:
            # The source is (host, port): IPv6's flowinfo and scope_id stay behind.
            self._address, self._source = address, Endpoint(address[0], address[1])
        if control != self._control:
            self._control, self._size = control, gro_size(control)
            self._local = local_in(control)
        if flags & _MSG_TRUNC:
            log.debug("UDP receive truncated: %d bytes dropped", len(data))
            return [], self._source, None
        if self._size is None or self._size >= len(data):
            return [data], self._source, self._local
        return split_gro(data, self._size), self._source, self._local


def _transmit(
    sock: socket.socket,
    buffers: Sequence[bytes],
    control: list[tuple[int, int, bytes]],
    endpoint: Endpoint,
) -> None:
    while True:
        try:
            sock.sendmsg(buffers, control, 0, endpoint)
            return
        except BlockingIOError:
            poller = select.poll()
            poller.register(sock, select.POLLOUT)
            if not poller.poll(SEND_TIMEOUT_MS):
                raise
