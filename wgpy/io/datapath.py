"""The data path: a thread between the TUN, the device and the UDP sockets, and where cores
allow, a writer thread for the TUN.

The thread waits until the TUN or a socket is readable, then carries one batch from each that
is: from the TUN, what one wake-up reads, through the device and out as datagrams; from a socket,
what one source sent (with UDP_GRO), through the device and out as packets written to the TUN
(and any datagrams, such as handshake replies).

With writers (writers.py: by default the TUN's, where four CPUs may run the daemon; or those
WGPY_WRITERS names), the writes to the TUN, or the sockets, are handed to a writer thread each,
and this thread goes on with the next batch while the kernel's work in the write (its TCP
receive, in a TUN write), which runs with the GIL released, uses another core. A batch under
HANDOVER_BYTES (a ping's packet, a few ACKs) is written here when the writer is idle: a
handover costs a wake-up, more than such a write. A writer per destination keeps the order,
and its queue is short: when it is full this thread waits, so nothing queues without bound.

The figures behind the rule, on the 2-core machine measured (quiet, 2026-12). py-spy, writers
off: of this thread's time receiving, 31-45% is the TUN write and 17-23% the open; sending, 29%
the seal and 24% the UDP_SEGMENT send, so the TUN's writes are the ones worth moving (a
seal/open worker would move less, with two handovers a batch). benchmarks/multicore.py, one
daemon serving two flows to two peers, 3 rounds: receiving, the TUN's writer took this thread
from 0.76 to 0.65 of a core, which raises what one daemon can do with free cores (its bound,
from the busiest thread: 4.5 against 3.95 Gbit/s), but cost 0.83 against 0.76 CPU-s/s in all;
with both cores busy (the peers and iperf3 ran on them), throughput fell: 2.92 against 3.01
Gbit/s receiving, 2.70 against 2.81 sending. benchmarks/throughput.py (2 rounds): wgpy<->wgpy
2.9/2.86 against 3.1/3.12 Gbit/s one flow each way, 4.39 against 4.26 CPU-s per GB; wgpy with
wireguard-go sending to it, 1.44 against 1.80 Gbit/s. So on 2 CPUs there are no writers; from 4
on, a core is left for the writer beside the data path and one other busy process. A writer
for the sockets (WGPY_WRITERS=tun,udp) cost more than it moved in every figure (2.51 against
2.70 Gbit/s sending): it is there by choice, for a daemon bound by its sending thread on a
machine with idle cores.

In 2026-11, with the GIL held for all the work, a thread per direction lost to one thread in
every figure (1.43 against 1.53-1.67 Gbit/s in one TCP flow): each handover of the GIL cost a
wake-up, and the other thread had little to do without the GIL.

The device is not thread-safe: every call into it holds `lock`, which the configuration socket
and the timers (in the interface's own thread) take too. Beyond the writers' short queues,
nothing queues here: when the thread falls behind, packets wait in the kernel's bounded
buffers, which drop when full.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Sequence, Set
from functools import partial
from time import monotonic, time

from wgpy.core.device import Action, Device, PeerWanted, SendDatagrams, WriteTun
from wgpy.core.endpoint import Endpoint, Local
from wgpy.io.busy_poll import first_ready, for_window, window_wanted
from wgpy.io.device_lock import DeviceLock
from wgpy.io.pktinfo import local_address
from wgpy.io.readiness import input_waiting
from wgpy.io.thread_name import name_this_thread
from wgpy.io.tun_batches import INTERFACE_GONE, TunBatches
from wgpy.io.udp_batches import Datagram, Received, UdpBatches
from wgpy.io.writers import TUN, UDP, Writer, writers_wanted

log = logging.getLogger("wgpy")

# The data path thread's name for the kernel (thread_name.py); its writers' are
# wgpy-tun-writer and wgpy-udp-writer.
DATA_THREAD = "wgpy-data"
# A batch smaller than this is written by the data path's thread when the writer is idle: a
# handover costs more than writing a few ACKs. (Hub sending two flows, 4 rounds: 0.377 CPU-s per
# Gbit/s with every batch but a lone packet handed over, 0.336 with this, 0.346 without writers;
# receiving, 0.358 and 0.333 against 0.402.)
HANDOVER_BYTES = 8192


class DataPath:
    def __init__(
        self,
        name: str,
        device: Device,
        lock: DeviceLock,
        tun: TunBatches,
        udp: UdpBatches,
        sockets: Sequence[socket.socket],
        on_interface_gone: Callable[[], None],
        writers: Set[str] | None = None,
        busy_poll: float | None = None,
    ) -> None:
        """`writers`: the destinations (writers.TUN, UDP) whose writes run on a writer thread
        (by default as writers.writers_wanted() says); `busy_poll`: the thread's busy polling
        window in seconds, 0 for none (by default as busy_poll.window_wanted() says)."""
        self.name = name
        self._device = device
        self._lock = lock
        self._tun = tun
        self._udp = udp
        self._sockets = list(sockets)
        self._socket_for = {sock.family: sock for sock in sockets}
        self._on_interface_gone = on_interface_gone
        self._thread: threading.Thread | None = None
        self._writers = writers_wanted() if writers is None else writers
        self._busy_poll = window_wanted() if busy_poll is None else busy_poll
        # While running, the TUN's and the sockets' writers, where they have one.
        self._tun_writer: Writer | None = None
        self._udp_writer: Writer | None = None
        self._stop_r, self._stop_w = os.pipe()
        self._stopping = False
        # Where an initiation from an unknown key is reported, when the device asks for peers.
        self.on_peer_wanted: Callable[[PeerWanted], None] = _ignore

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._stopping = False
        if TUN in self._writers:
            self._tun_writer = self._writer(TUN)
        if UDP in self._writers:
            self._udp_writer = self._writer(UDP)
        # A daemon thread: a process that ends without stop() (exec, a fatal error) is not held.
        self._thread = threading.Thread(target=self._serve, name=f"{self.name}-data", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; it wakes from any wait to see this."""
        assert self._thread is not None
        self._stopping = True
        os.write(self._stop_w, b"\0")
        self._thread.join()
        self._thread = None
        os.read(self._stop_r, 64)
        for writer in (self._tun_writer, self._udp_writer):
            if writer is not None:
                writer.stop()
        self._tun_writer = self._udp_writer = None

    def _writer(self, destination: str) -> Writer:
        writer = Writer(
            f"{self.name}-{destination}", self._writer_found_interface_gone,
            kernel_name=f"wgpy-{destination}-writer",
        )  # fmt: skip
        writer.start()
        return writer

    @property
    def writer_failures(self) -> int:
        """Writes that failed on the writers' threads so far (since the last start)."""
        return sum(w.failures for w in (self._tun_writer, self._udp_writer) if w is not None)

    def replace_sockets(self, sockets: Sequence[socket.socket]) -> None:
        """Move to new sockets (a new listen port); the caller closes the old ones after."""
        running = self.running
        if running:
            self.stop()
        self._sockets = list(sockets)
        self._socket_for = {sock.family: sock for sock in sockets}
        if running:
            self.start()

    def close(self) -> None:
        if self.running:
            self.stop()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def carry_out(self, actions: Sequence[Action]) -> None:
        """Write the packets the device returned to the TUN and send its datagrams, a batch per
        endpoint (and local address) in the order given; hand on what asks for a peer."""
        if len(actions) == 1:  # One batch, or a lone packet as in ping: see `_serve`.
            # Without a writer, straight to the write: a Python call less a pass.
            action = actions[0]
            if isinstance(action, WriteTun):
                if self._tun_writer is None:
                    self._tun.write(action.packets)
                else:
                    self._write_tun(action.packets)
            elif isinstance(action, SendDatagrams):
                if self._udp_writer is None:
                    self._send(action.datagrams, action.endpoint, action.local)
                else:
                    self._send_datagrams(action.datagrams, action.endpoint, action.local)
            else:
                self.on_peer_wanted(action)
            return
        packets: list[bytes] = []
        datagrams: dict[tuple[Endpoint, Local | None], list[bytes]] = {}
        for action in actions:
            if isinstance(action, WriteTun):
                packets += action.packets
            elif isinstance(action, SendDatagrams):
                datagrams.setdefault((action.endpoint, action.local), []).extend(action.datagrams)
            else:
                self.on_peer_wanted(action)
        if packets:
            self._write_tun(packets)
        for (endpoint, local), batch in datagrams.items():
            self._send_datagrams(batch, endpoint, local)

    def _write_tun(self, packets: Sequence[bytes]) -> None:
        """`packets` to the TUN: handed to its writer, but written here at once when they are
        few (see `_written_here`)."""
        writer = self._tun_writer
        if writer is None or _written_here(packets, writer):
            self._tun.write(packets)
        else:
            writer.hand_over(self._tun.write, packets)

    def _send_datagrams(
        self, datagrams: list[bytes], endpoint: Endpoint, local: Local | None
    ) -> None:
        """As `_write_tun`, to the sockets' writer."""
        writer = self._udp_writer
        if writer is None or _written_here(datagrams, writer):
            self._send(datagrams, endpoint, local)
        else:
            writer.hand_over(self._send, datagrams, endpoint, local)

    def _writer_found_interface_gone(self) -> None:
        if not self._stopping:
            self._on_interface_gone()

    # -- the thread ------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Until stopped, or the TUN is gone: wait for the TUN or a socket, then carry a batch
        from each that is readable. (poll is level-triggered: what one batch left behind makes
        the next poll return at once.)

        A batch of one takes the edges' paths for one packet (`carry_out`, tun_batches.py,
        udp_batches.py): after an idle gap the CPU's caches are cold, and every object a packet
        touches then costs tens of microseconds. Ping through wgpy<->wgpy, alternating: 0.814 ->
        0.766 ms a round trip when a batch of one first took these paths and the device's own
        (commit f9bd701), 0.927 -> 0.800 ms when the edges' paths were made shorter (c762ac8).
        The device now has one path for a batch of any size.

        A wake-up carries the sockets' batches before the TUN's (poll reports the files in the
        order registered). The kernel answers much of what is written to the TUN within the
        write: a TCP receiver's ACK for a super-packet, the data that a sender's ACKs let out.
        The TUN's read then takes that answer in the same wake-up, with whatever else waited,
        where the TUN first left it to a pass of its own. One TCP flow wgpy<->wgpy, two runs
        of 6 rounds of 2 GB, alternating (2026-12): the receiving daemon sealed and sent its
        ACKs in 16-36% fewer batches, the sending daemon received and opened them in 31-41%
        fewer, and both spent 4.90 -> 4.82 CPU-s per GB on a quiet machine (less in 5 pairs
        of 6), 4.77 -> 4.65 on a busy one. A ping's packet finds one file readable, and its
        path is the same.

        Before it blocks, the thread busy-polls (busy_poll.py): the answer to what a pass sent
        often comes within a window, and finds the thread awake instead of waking a CPU."""
        name_this_thread(DATA_THREAD)
        batch_from: dict[int, Callable[[], bool]] = {}
        for sock in self._sockets:
            batch_from[sock.fileno()] = partial(self._inbound_batch, sock, input_waiting(sock))
        batch_from[self._tun.fileno()] = self._outbound_batch
        poller = select.poll()
        for fd in (*batch_from, self._stop_r):
            poller.register(fd, select.POLLIN)
        poll_now = partial(poller.poll, 0)
        busy = for_window(self._busy_poll)
        while not self._stopping:
            for fd, _ in first_ready(poll_now, busy) or poller.poll():
                carry = batch_from.get(fd)
                if carry is not None and not carry():
                    return

    def _outbound_batch(self) -> bool:
        """Packets from the TUN through the device and out; False once the TUN is gone."""
        try:
            packets = self._tun.read()
        except BlockingIOError:
            return True
        except OSError as error:
            if not self._stopping:
                if error.errno in INTERFACE_GONE:
                    log.info("(%s) interface gone, shutting down", self.name)
                else:
                    log.error("(%s) TUN read failed, shutting down: %s", self.name, error)
                self._on_interface_gone()
            return False
        if packets:
            self._through_device(self._device.handle_tun_packets, packets)
        return True

    def _inbound_batch(self, sock: socket.socket, waiting: Callable[[], object]) -> bool:
        """Datagrams from `sock` through the device and out."""
        try:
            batches = self._udp.receive(sock, waiting)
        except BlockingIOError:
            return True
        except OSError as error:  # ICMP errors surface here (ECONNREFUSED and the like).
            log.debug("(%s) udp receive: %s", self.name, error)
            return True
        if len(batches) == 1 and len(batches[0][0]) == 1:
            (data,), source, local = batches[0]
            self._through_device(self._handle_one, data, source, local)
        elif any(datagrams for datagrams, _, _ in batches):
            self._through_device(self._handle_received, batches)
        return True

    def _handle_one(
        self, data: Datagram, source: Endpoint, local: Local | None, now: float, wall: float
    ) -> list[Action]:
        return self._device.handle_datagrams((data,), source, now, wall, local)

    def _handle_received(self, batches: list[Received], now: float, wall: float) -> list[Action]:
        actions: list[Action] = []
        for datagrams, source, local in batches:
            actions += self._device.handle_datagrams(datagrams, source, now, wall, local)
        return actions

    def _through_device(self, handle: Callable[..., list[Action]], *batch: object) -> None:
        """A batch through the device and out: `handle(*batch, now, wall)` under the lock, the
        I/O outside it. A failure costs the batch, never the thread."""
        lock = self._lock
        try:
            if not lock.take_if_free():
                lock.take()
            try:
                actions = handle(*batch, monotonic(), time())
            finally:
                lock.release()
            self.carry_out(actions)
        except OSError as error:
            if error.errno in INTERFACE_GONE:
                if not self._stopping:
                    self._on_interface_gone()
                return
            log.debug("(%s) %s", self.name, error)
        except Exception:
            log.exception("(%s) batch dropped in %s", self.name, handle.__name__)

    def _send(self, datagrams: list[bytes], endpoint: Endpoint, local: Local | None) -> None:
        sock = self._socket_for.get(socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET)
        if sock is None:
            log.debug("(%s) no socket for %s", self.name, endpoint)
            return
        try:
            if self._udp.send(sock, datagrams, endpoint, local):
                return
        except OSError as error:
            log.debug("(%s) send to %s: %s", self.name, endpoint, error)
            return
        assert local is not None  # False says `local` could not be sent from
        gone = local_address(local)
        log.info(
            "(%s) %s has left the host: to %s from the routing's pick", self.name, gone, endpoint
        )
        with self._lock:
            self._device.forget_local(local)


def _written_here(batch: Sequence[bytes], writer: Writer) -> bool:
    """Whether the data path's thread writes `batch` itself: a lone packet (a ping's), or fewer
    than HANDOVER_BYTES, when `writer` has written all it was handed (so the order holds)."""
    return (len(batch) == 1 or sum(map(len, batch)) < HANDOVER_BYTES) and writer.idle()


def _ignore(wanted: PeerWanted) -> None:
    pass
