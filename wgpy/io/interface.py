"""One running WireGuard interface: the TUN, the UDP sockets and the configuration socket around
a sans-IO device.

Packets flow through the data path's thread (datapath.py), with the TUN's and the sockets'
offloads where the kernel grants them and one packet per system call where it does not; the log
says which. This thread serves the configuration socket and sleeps until the device's next
timer or the next housekeeping tick (once a second: is the socket file still there, does the
interface still exist, has its MTU changed). Every call into the device holds `_lock`.

The interface may be moved to another network namespace (`ip link set wg0 netns OTHER`); the
UDP sockets and the configuration socket stay where they were opened, as wireguard-go's do, and
the housekeeping tick follows the interface through its file (see tun.py), wherever it goes.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Set

from wgpy import client, uapi
from wgpy.configure import device_stats, format_device, format_peers, update_steps
from wgpy.core.admission import PeerSettings
from wgpy.core.constants import UNDER_LOAD_THRESHOLD
from wgpy.core.device import Action, Device, PeerWanted
from wgpy.core.events import Event, short_peer
from wgpy.core.keys import short_form
from wgpy.errors import UapiError
from wgpy.io import accel, uapi_server
from wgpy.io.capture_server import CaptureHub, start_capture
from wgpy.io.datapath import DataPath
from wgpy.io.device_lock import DeviceLock
from wgpy.io.peer_hook import HookSettings, PeerHook
from wgpy.io.tun import Tun
from wgpy.io.tun_batches import OffloadTun, PlainTun
from wgpy.io.tun_offload import TunOffloads, enable_offloads, fit_super_packets_to_sends
from wgpy.io.udp import open_udp, set_fwmark
from wgpy.io.udp_batches import UdpBatches, enable_gro, supports_gso

log = logging.getLogger("wgpy")

HOUSEKEEPING_INTERVAL = 1.0
# Peers per slice of a `get` reply: ~0.5 ms of writing while this thread holds the device, and
# small enough that the client reads the first slices while the next are written (10,000 peers
# were listed ~15% faster than in slices of 1,000).
GET_SLICE = 200
# While this thread serves a configuration request (a set or get of 100,000 peers computes for
# seconds), the data path's thread waits at most this long for the interpreter after each of its
# system calls, instead of CPython's 5 ms: a ping crosses three such waits in each daemon, and
# listing 60,000 peers paused the data path 22-43 ms at 5 ms, 4-29 ms at this.
REQUEST_SWITCH_INTERVAL = 0.0005
# The signals that end `run()` cleanly. The daemon blocks them while the interface starts.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# Opens the UDP sockets for (port, fwmark), non-blocking; raises OSError (EADDRINUSE).
SocketOpener = Callable[[int, int], list[socket.socket]]


class Interface:
    """`offloads=False` keeps to the plain path: one packet per system call each way.

    `sockets` are UDP sockets already open (wgpy run opens them in another namespace), and
    `open_sockets` opens new ones when the port or fwmark changes (by default, here). Without
    `configuration_socket` (the kernel-stack proxy with no --name) none is served."""

    def __init__(
        self,
        tun: Tun,
        rng: Callable[[int], bytes] = os.urandom,
        *,
        offloads: bool = True,
        under_load_threshold: int = UNDER_LOAD_THRESHOLD,
        peer_hook: HookSettings | None = None,
        sockets: list[socket.socket] | None = None,
        open_sockets: SocketOpener | None = None,
        configuration_socket: bool = True,
        writers: Set[str] | None = None,
        busy_poll: float | None = None,
    ) -> None:
        """`peer_hook` decides on the keys the device does not know (see peer_hook.py);
        `writers`, the destinations the data path writes to from writer threads (None: as
        WGPY_WRITERS or the CPUs say, see writers.py); `busy_poll`, the data path's busy
        polling window in seconds (None: as WGPY_BUSY_POLL or the CPUs say, see busy_poll.py)."""
        self._writers = writers
        self._busy_poll = busy_poll
        self.name = tun.name
        self._open_sockets = open_sockets or open_udp_nonblocking
        self._under_load_threshold = under_load_threshold
        self._peer_hook_settings = peer_hook
        tun_offloads: TunOffloads | None = None
        if offloads:
            # The TUN may come back reattached to a new file: from here on it is ours to close.
            tun, tun_offloads = enable_offloads(tun)
        self.tun = tun
        try:
            self._open(rng, tun_offloads, offloads, sockets)
            if configuration_socket:
                self._serve_configuration()
        except BaseException:
            tun.close()
            raise

    def _log_event(self, peer: bytes, event: Event, detail: object = None) -> None:
        log.debug("(%s) %s - %s", self.name, short_peer(peer), event.describe(detail))

    def _open(
        self,
        rng: Callable[[int], bytes],
        tun: TunOffloads | None,
        offloads: bool,
        sockets: list[socket.socket] | None,
    ) -> None:
        self.device = Device(
            rng,
            mtu=self.tun.mtu(),
            under_load_threshold=self._under_load_threshold,
            ask_for_peers=self._peer_hook_settings is not None,
            batch_cipher=accel.batch_cipher(),
            lone_cipher=accel.lone_cipher(),
        )
        if log.isEnabledFor(logging.DEBUG):  # LOG_LEVEL=verbose
            self.device.events = self._log_event
        self._lock = DeviceLock()
        self.fwmark = 0
        self._sockets = sockets or self._open_sockets(0, 0)
        self.listen_port = self._sockets[0].getsockname()[1]
        self._udp = UdpBatches(
            gso=offloads and all(supports_gso(s) for s in self._sockets),
            gro=offloads and all(enable_gro(s) for s in self._sockets),
        )
        # Super-packets from the TUN are sized to UDP_SEGMENT sends while both offloads are on.
        self._fit_sends = tun is not None and self._udp.gso
        if self._fit_sends:
            fit_super_packets_to_sends(self.tun, self.device.mtu)
        fd = self.tun.fileno()
        batches = PlainTun(fd) if tun is None else OffloadTun(fd, udp=tun.udp)
        self._datapath = DataPath(
            self.name, self.device, self._lock, batches, self._udp, self._sockets,
            self._on_interface_gone, self._writers, self._busy_poll,
        )  # fmt: skip
        log.info(
            "(%s) data path: %s; crypto %s", self.name, _describe(tun, self._udp), accel.path()
        )
        self._peer_hook: PeerHook | None = None
        if self._peer_hook_settings is not None:
            self._peer_hook = PeerHook(self._peer_hook_settings, self.name, self._decide)
            self._datapath.on_peer_wanted = self._peer_hook.ask
        self._capture = CaptureHub(self.name, self.device, self._lock)
        self._selector = selectors.DefaultSelector()
        self._running = True
        self._next_housekeeping = 0.0
        self._mtu_known = True
        self._server: socket.socket | None = None
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, self._on_wakeup)

    def _serve_configuration(self) -> None:
        self._server = uapi_server.listen(self.name)
        self._socket_path = client.socket_path(self.name)
        self._socket_inode = self._socket_path.stat().st_ino
        self._selector.register(self._server, selectors.EVENT_READ, self._on_accept)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop_signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        """Serve until stopped by a signal, by `stop()`, or by the interface or socket vanishing.
        One of `stop_signals` that came, blocked, while the interface started is handled here."""
        previous = signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        handlers = {s: signal.signal(s, self._on_signal) for s in stop_signals}
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        self._datapath.start()
        try:
            while self._running:
                for key, _ in self._selector.select(self._timeout()):
                    key.data(key.fileobj)
                self._run_timers()
                self._housekeeping()
        finally:
            self._datapath.stop()
            signal.set_wakeup_fd(previous)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def _run_timers(self) -> None:
        """Due timers through the device and out. As on the data path, a failure costs what
        the timers sent, never the daemon (the housekeeping tick notices a vanished interface)."""
        try:
            with self._lock:
                actions = self.device.handle_timer(time.monotonic(), time.time())
            self._lock.let_waiters_in()
            self._datapath.carry_out(actions)
        except Exception:
            log.exception("(%s) timer actions dropped", self.name)

    def stop(self) -> None:
        self._running = False
        self._wakeup_w.send(b"\0")

    def close(self) -> None:
        if self._peer_hook is not None:
            self._peer_hook.close()
        self._datapath.close()
        self._capture.close()
        for sock in self._sockets:
            sock.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(FileNotFoundError):
                if self._socket_path.stat().st_ino == self._socket_inode:
                    self._socket_path.unlink()
        self._wakeup_r.close()
        self._wakeup_w.close()
        self.tun.close()
        self._selector.close()

    def _timeout(self) -> float:
        """Until the next timer or housekeeping tick. Timers the data path arms come due no
        sooner than a second on (KEEPALIVE_TIMEOUT, REKEY_TIMEOUT, a persistent keepalive's
        interval), and this thread wakes for housekeeping once a second to see them."""
        now = time.monotonic()
        with self._lock:
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
            self._follow_mtu()

    def _follow_mtu(self) -> None:
        """The interface's MTU into the device, wherever the interface lives now (see tun.py). A
        lookup that fails keeps the MTU known last, and is logged when it starts failing."""
        try:
            mtu = self.tun.mtu()
        except OSError as error:
            if self._mtu_known:
                log.debug("(%s) MTU lookup failed, the last one kept: %s", self.name, error)
            self._mtu_known = False
            return
        self._mtu_known = True
        if mtu != self.device.mtu and self._fit_sends:
            fit_super_packets_to_sends(self.tun, mtu)
        with self._lock:
            self.device.mtu = mtu

    def _socket_alive(self) -> bool:
        if self._server is None:
            return True
        try:
            return self._socket_path.stat().st_ino == self._socket_inode
        except FileNotFoundError:
            return False

    def _on_signal(self, signum: int, frame: object) -> None:
        log.info("(%s) received %s, shutting down", self.name, signal.Signals(signum).name)
        self._running = False

    def _on_interface_gone(self) -> None:
        """From the data path's thread: end the loop at once."""
        self._running = False
        self._wakeup_w.send(b"\0")

    def _on_wakeup(self, sock: socket.socket) -> None:
        try:
            while sock.recv(64):
                pass
        except BlockingIOError:
            pass

    # -- configuration -------------------------------------------------------------------------

    def _bind(self, port: int, fwmark: int) -> None:
        """Move to a new port; on failure (EADDRINUSE) the old sockets stay as they were."""
        sockets = self._open_sockets(port, fwmark)
        if self._udp.gro:
            for sock in sockets:
                enable_gro(sock)
        self._datapath.replace_sockets(sockets)
        for sock in self._sockets:
            sock.close()
        self._sockets = sockets
        self.listen_port = sockets[0].getsockname()[1]
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
            with _prompt_handovers():
                for reply in connection.feed(data):
                    connection.sock.sendall(reply)
            _out_of_collector_sight()
            done = connection.closing
        except OSError as error:
            log.debug("(%s) configuration connection: %s", self.name, error)
            done = True
        if done:
            self._selector.unregister(connection.sock)
            if connection.capture is not None:
                start_capture(self._capture, connection.sock, connection.capture, self.name)
            else:
                connection.sock.close()

    def handle_request(self, request: uapi.Request) -> Iterable[str]:
        """The reply to `request`, in pieces: a `get` of many peers is made a slice at a time."""
        if request.operation == "get":
            return self._get()
        if request.operation == "stats":
            with self._lock:
                stats = device_stats(self.device, time.monotonic())
            return [uapi.format_stats(stats)]
        error = request.error
        if error is None:
            assert request.update is not None
            try:
                self._set(request.update)
            except UapiError as failed:
                error = uapi.untraced(failed)
        if error is not None:
            log.error("(%s) configuration rejected: %s", self.name, error)
            return [uapi.format_errno(error.errno)]
        return [uapi.format_errno(0)]

    def _get(self) -> Iterator[str]:
        """The reply to `get`, GET_SLICE peers at a time, the device held for each slice alone.
        Only this thread removes peers, so none goes while the reply is written (a peer hook
        may add one meanwhile, which the next `get` shows)."""
        with self._lock:
            head = format_device(self.device, self.listen_port, self.fwmark)
            peers = list(self.device.peers.values())
        yield head
        for start in range(0, len(peers), GET_SLICE):
            self._lock.let_waiters_in()
            with self._lock:
                text = format_peers(self.device, peers[start : start + GET_SLICE])
            yield text
        yield uapi.format_errno(0)

    def configure(self, update: uapi.DeviceUpdate) -> None:
        """Apply `update` as a `set` would; raises UapiError."""
        self._set(update)

    def _set(self, update: uapi.DeviceUpdate) -> None:
        """The request was parsed and checked whole as it arrived; the port is moved (which may
        fail), then the rest applied: a failing `set` changes nothing."""
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
        self._in_turns(update_steps(self.device, update, time.monotonic()))

    def _decide(self, wanted: PeerWanted, settings: PeerSettings | None) -> None:
        """From a peer hook's thread: admit the key, which answers its held initiation, or
        refuse it."""
        now, wall = time.monotonic(), time.time()
        actions: list[Action] = []
        with self._lock:
            try:
                if settings is not None:
                    actions = self.device.admit_peer(wanted.public_key, settings, now, wall)
            except ValueError as error:
                log.error("(%s) peer %s refused: %s", self.name, short_form(wanted.public_key),
                          error)  # fmt: skip
                settings = None
            if settings is None:
                self.device.refuse_peer(wanted.public_key, now)
        self._datapath.carry_out(actions)

    def _in_turns(self, steps: Iterator[None]) -> None:
        """Take `steps` one at a time, each holding the device, and let the data path have it
        between them if it waits. The timers wait meanwhile (100,000 peers take ~5 s): a late
        keepalive or retransmission does no harm, and a set that turns on many keepalives makes
        as many handshakes due, which would slow it down."""
        done = object()
        while True:
            with self._lock:
                if next(steps, done) is done:
                    return
            _out_of_collector_sight()
            self._lock.let_waiters_in()


@contextlib.contextmanager
def _prompt_handovers() -> Iterator[None]:
    """The interpreter handed to a waiting thread every REQUEST_SWITCH_INTERVAL meanwhile."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(REQUEST_SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _out_of_collector_sight() -> None:
    """Freeze what is alive: what a `set` made so far, as it is parsed and as it is applied.

    A big `set` adds some 10 tracked objects a peer (parsed: the update; applied: the peer, its
    timers, its allowed-IP nodes). The cyclic collector makes a full collection each time the
    objects it tracks grow by a quarter, and each walks all of them, holding the interpreter from
    the data path: ~100 ms at 60,000 peers, several times over while they are added. Frozen
    objects are left out of every collection and still freed by reference counting when they
    die; what wgpy makes dies without cycles (tests/unit/test_cycles.py), so none is left for
    good. The young generations are collected first, so that no cycle that just died is frozen
    with the living (they hold what was made since the last freeze: ~1 ms). The freeze itself
    only moves the collector's lists, whatever their length.
    """
    gc.collect(1)
    gc.freeze()


def open_udp_nonblocking(port: int, fwmark: int) -> list[socket.socket]:
    """Non-blocking: the data path waits for them itself."""
    sockets = [s for s in open_udp(port, fwmark) if s is not None]
    for sock in sockets:
        sock.setblocking(False)
    return sockets


def _describe(tun: TunOffloads | None, udp: UdpBatches) -> str:
    tun_part = (
        "TUN with TSO" + (" and USO" if tun.udp else "")
        if tun is not None
        else "TUN one packet per read and write (offloads refused)"
    )
    udp_part = " and ".join(
        name for name, on in (("UDP_SEGMENT", udp.gso), ("UDP_GRO", udp.gro)) if on
    )
    return f"{tun_part}; UDP with {udp_part or 'one datagram per system call'}"
