"""The data path: a thread per direction between the TUN, the device and the UDP sockets.

Outbound, one thread reads what the TUN has (a batch), hands it to the device and sends the
datagrams it returns. Inbound, one thread per UDP socket receives what one source sent (a batch,
with UDP_GRO), hands it to the device, writes the packets it returns to the TUN and sends any
datagrams. Every system call releases the GIL, so one direction runs while the other waits on
the kernel.

The device is not thread-safe: every call into it holds `lock`, which the configuration socket
and the timers (in the interface's own thread) take too. Nothing queues between the threads: a
thread that falls behind leaves packets in the kernel's bounded buffers, which drop when full.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial

from wgpy.device import Action, Device, SendDatagram, WriteTun
from wgpy.io.tun_batches import INTERFACE_GONE, TunBatches
from wgpy.io.udp import Endpoint as UdpEndpoint
from wgpy.io.udp_offload import UdpBatches
from wgpy.peer import Endpoint

log = logging.getLogger("wgpy")


class DataPath:
    def __init__(
        self,
        name: str,
        device: Device,
        lock: threading.Lock,
        tun: TunBatches,
        udp: UdpBatches,
        sockets: Sequence[socket.socket],
        on_interface_gone: Callable[[], None],
    ) -> None:
        self.name = name
        self._device = device
        self._lock = lock
        self._tun = tun
        self._udp = udp
        self._sockets = list(sockets)
        self._on_interface_gone = on_interface_gone
        self._threads: list[threading.Thread] = []
        self._stop_r, self._stop_w = os.pipe()
        self._stopping = False

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def start(self) -> None:
        self._stopping = False
        self._threads = [self._thread(self._outbound, "outbound")]
        for sock in self._sockets:
            self._threads.append(self._thread(partial(self._inbound, sock), sock.family.name))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop every thread and wait for it; the threads wake from any wait to see this."""
        self._stopping = True
        os.write(self._stop_w, b"\0")
        for thread in self._threads:
            thread.join()
        self._threads = []
        os.read(self._stop_r, 64)

    def replace_sockets(self, sockets: Sequence[socket.socket]) -> None:
        """Move to new sockets (a new listen port); the caller closes the old ones after."""
        running = self.running
        if running:
            self.stop()
        self._sockets = list(sockets)
        if running:
            self.start()

    def close(self) -> None:
        if self.running:
            self.stop()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def carry_out(self, actions: Sequence[Action]) -> None:
        """Write the packets the device returned to the TUN and send its datagrams, a batch per
        endpoint in the order given."""
        packets: list[bytes] = []
        datagrams: dict[Endpoint, list[bytes]] = {}
        for action in actions:
            if isinstance(action, WriteTun):
                packets.append(action.packet)
            else:
                assert isinstance(action, SendDatagram)
                datagrams.setdefault(action.endpoint, []).append(action.data)
        if packets:
            self._tun.write(packets)
        for endpoint, batch in datagrams.items():
            self._send(batch, endpoint)

    # -- the threads ---------------------------------------------------------------------------

    def _thread(self, target: Callable[[], None], label: str) -> threading.Thread:
        # Daemon threads: a process that ends without stop() (exec, a fatal error) is not held.
        return threading.Thread(target=target, name=f"{self.name}-{label}", daemon=True)

    def _outbound(self) -> None:
        while not self._stopping:
            try:
                packets = self._tun.read()
            except BlockingIOError:
                self._wait(self._tun.fileno())
                continue
            except OSError as error:
                if not self._stopping:
                    if error.errno in INTERFACE_GONE:
                        log.info("(%s) interface gone, shutting down", self.name)
                    else:
                        log.error("(%s) TUN read failed, shutting down: %s", self.name, error)
                    self._on_interface_gone()
                return
            self._through_device(partial(self._device.handle_tun_packets, packets), len(packets))

    def _inbound(self, sock: socket.socket) -> None:
        while not self._stopping:
            try:
                batches = self._udp.receive(sock)
            except BlockingIOError:
                self._wait(sock.fileno())
                continue
            except OSError as error:  # ICMP errors surface here (ECONNREFUSED and the like).
                log.debug("(%s) udp receive: %s", self.name, error)
                continue
            size = sum(len(datagrams) for datagrams, _ in batches)
            self._through_device(partial(self._handle_received, batches), size)

    def _handle_received(
        self, batches: list[tuple[list[memoryview], UdpEndpoint]], now: float, wall: float
    ) -> list[Action]:
        actions: list[Action] = []
        for datagrams, address in batches:
            source = (address[0], address[1])
            actions += self._device.handle_datagrams(datagrams, source, now, wall)
        return actions

    def _through_device(self, handle: Callable[[float, float], list[Action]], size: int) -> None:
        """One batch through the device and out: the device under the lock, the I/O outside
        it. A failure costs the batch, never the thread."""
        if not size:
            return
        try:
            with self._lock:
                actions = handle(time.monotonic(), time.time())
            self.carry_out(actions)
        except OSError as error:
            if error.errno in INTERFACE_GONE:
                if not self._stopping:
                    self._on_interface_gone()
                return
            log.debug("(%s) %s", self.name, error)
        except Exception:
            log.exception("(%s) batch of %d dropped", self.name, size)

    def _wait(self, fd: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        poller.poll()

    def _send(self, datagrams: list[bytes], endpoint: Endpoint) -> None:
        family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
        sock = next((s for s in self._sockets if s.family == family), None)
        if sock is None:
            log.debug("(%s) no socket for %s", self.name, endpoint)
            return
        try:
            self._udp.send(sock, datagrams, endpoint)
        except OSError as error:
            log.debug("(%s) send to %s: %s", self.name, endpoint, error)
