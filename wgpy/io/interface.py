"""One running WireGuard interface: the TUN, the UDP sockets and the configuration socket around
a sans-IO device, driven by one selector loop.

The loop reads, calls the device, carries out the actions it returns, and sleeps until the
device's next timer or the next housekeeping tick (once a second: is the socket file still there,
does the interface still exist, has its MTU changed).
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable

from wgpy import uapi
from wgpy.configure import apply_update, device_state
from wgpy.device import Action, Device, SendDatagram
from wgpy.errors import UapiError
from wgpy.io import uapi_server
from wgpy.io.tun import Tun
from wgpy.io.udp import open_udp, set_fwmark

log = logging.getLogger("wgpy")

HOUSEKEEPING_INTERVAL = 1.0
# How many packets one readiness event may take from a source before the others get a turn.
BATCH = 64
MAX_DATAGRAM = 65535


class Interface:
    def __init__(self, tun: Tun, rng: Callable[[int], bytes] = os.urandom) -> None:
        self.name = tun.name
        self.tun = tun
        self.device = Device(rng, mtu=tun.mtu())
        self.listen_port = 0
        self.fwmark = 0
        self._sockets: list[socket.socket] = []
        self._selector = selectors.DefaultSelector()
        self._running = True
        self._next_housekeeping = 0.0
        tun.setblocking(False)
        self._selector.register(tun.fileno(), selectors.EVENT_READ, self._on_tun)
        self._bind(0, 0)
        self._server = uapi_server.listen(self.name)
        self._socket_path = uapi_server.socket_path(self.name)
        self._socket_inode = self._socket_path.stat().st_ino
        self._selector.register(self._server, selectors.EVENT_READ, self._on_accept)
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, self._on_wakeup)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until stopped by a signal, by `stop()`, or by the interface or socket vanishing."""
        previous = signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while self._running:
                for key, _ in self._selector.select(self._timeout()):
                    key.data(key.fileobj)
                self._perform(self.device.handle_timer(time.monotonic(), time.time()))
                self._housekeeping()
        finally:
            signal.set_wakeup_fd(previous)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def stop(self) -> None:
        self._running = False
        self._wakeup_w.send(b"\0")

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._server.close()
        try:
            if self._socket_path.stat().st_ino == self._socket_inode:
                self._socket_path.unlink()
        except FileNotFoundError:
            pass
        self._wakeup_r.close()
        self._wakeup_w.close()
        self.tun.close()
        self._selector.close()

    def _timeout(self) -> float:
        now = time.monotonic()
        deadline = self.device.next_timer()
        wake = min(self._next_housekeeping, deadline if deadline is not None else float("inf"))
        return max(0.0, wake - now)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_INTERVAL
        if not self.tun.exists():
            log.info("(%s) interface deleted, shutting down", self.name)
            self._running = False
        elif not self._socket_alive():
            log.info("(%s) configuration socket removed, shutting down", self.name)
            self._running = False
        else:
            self.device.mtu = self.tun.mtu()

    def _socket_alive(self) -> bool:
        try:
            return self._socket_path.stat().st_ino == self._socket_inode
        except FileNotFoundError:
            return False

    def _on_signal(self, signum: int, frame: object) -> None:
        log.info("(%s) received %s, shutting down", self.name, signal.Signals(signum).name)
        self._running = False

    def _on_wakeup(self, sock: socket.socket) -> None:
        try:
            while sock.recv(64):
                pass
        except BlockingIOError:
            pass

    # -- data ----------------------------------------------------------------------------------

    def _on_tun(self, fd: int) -> None:
        now, wall = time.monotonic(), time.time()
        for _ in range(BATCH):
            try:
                packet = os.read(fd, MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in (errno.EBADFD, errno.EIO):
                    log.info("(%s) interface gone, shutting down", self.name)
                    self._running = False
                    return
                raise
            self._perform(self.device.handle_tun_packet(packet, now, wall))

    def _on_udp(self, sock: socket.socket) -> None:
        now, wall = time.monotonic(), time.time()
        for _ in range(BATCH):
            try:
                data, address = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # ICMP errors surface here (ECONNREFUSED and the like).
                log.debug("(%s) udp receive: %s", self.name, error)
                continue
            self._perform(self.device.handle_datagram(data, address[:2], now, wall))

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                if isinstance(action, SendDatagram):
                    self._send(action.data, action.endpoint)
                else:
                    os.write(self.tun.fileno(), action.packet)
            except OSError as error:
                log.debug("(%s) %s failed: %s", self.name, type(action).__name__, error)

    def _send(self, data: bytes, endpoint: tuple[str, int]) -> None:
        want = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
        for sock in self._sockets:
            if sock.family == want:
                sock.sendto(data, endpoint)
                return
        log.debug("(%s) no socket for %s", self.name, endpoint)

    # -- configuration -------------------------------------------------------------------------

    def _bind(self, port: int, fwmark: int) -> None:
        """Move to a new port; on failure (EADDRINUSE) the old sockets stay as they were."""
        sock4, sock6 = open_udp(port, fwmark)
        for sock in self._sockets:
            self._selector.unregister(sock)
            sock.close()
        self._sockets = [s for s in (sock4, sock6) if s is not None]
        for sock in self._sockets:
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, self._on_udp)
        self.listen_port = self._sockets[0].getsockname()[1]
        self.fwmark = fwmark

    def _on_accept(self, server: socket.socket) -> None:
        try:
            sock, _ = server.accept()
        except BlockingIOError:
            return
        sock.setblocking(True)
        sock.settimeout(5)
        connection = uapi_server.Connection(sock, self.handle_request)
        self._selector.register(sock, selectors.EVENT_READ, lambda s: self._on_client(connection))

    def _on_client(self, connection: uapi_server.Connection) -> None:
        try:
            data = connection.sock.recv(65536)
            reply, done = connection.feed(data)
            if reply:
                connection.sock.sendall(reply)
        except OSError as error:
            log.debug("(%s) configuration connection: %s", self.name, error)
            done = True
        if done:
            self._selector.unregister(connection.sock)
            connection.sock.close()

    def handle_request(self, operation: uapi.Operation, lines: list[str]) -> str:
        if operation == "get":
            state = device_state(self.device, self.listen_port, self.fwmark)
            return uapi.format_get(state)
        try:
            self._set(lines)
        except UapiError as error:
            log.error("(%s) configuration rejected: %s", self.name, error)
            return uapi.format_errno(error.errno)
        return uapi.format_errno(0)

    def _set(self, lines: list[str]) -> None:
        """Everything is checked, then the port is moved (which may fail), then the rest applied:
        a failing `set` changes nothing."""
        update = uapi.parse_set(lines)
        port = self.listen_port if update.listen_port is None else update.listen_port
        fwmark = self.fwmark if update.fwmark is None else update.fwmark
        try:
            if port != self.listen_port:
                self._bind(port, fwmark)
            elif fwmark != self.fwmark:
                for sock in self._sockets:
                    set_fwmark(sock, fwmark)
                self.fwmark = fwmark
        except OSError as error:
            raise UapiError(error.errno or errno.EIO, f"listen_port={port}: {error}") from None
        apply_update(self.device, update, time.monotonic())
