"""The daemon's side of `wgpy capture`: the device's observer, and a thread per capture client.

The device calls the observer on the data path, under its lock: each call encodes one record
(wgpy/capture.py) and offers it to every client's bounded queue without waiting. A client that
reads too slowly loses records; it is told how many (DROPPED records) and the log says so at the
end. Each client's thread waits on its queue and writes to the client's socket, so a slow client
holds up only its own thread. When the last client leaves, the observer is unset: an interface
nobody captures pays one attribute check per batch.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable

from wgpy.capture import encode_dropped, encode_packet, encode_secrets
from wgpy.core.device import Device
from wgpy.core.observer import Direction, HandshakeSecrets
from wgpy.errors import UapiError
from wgpy.io.device_lock import DeviceLock
from wgpy.uapi import Request, format_errno

log = logging.getLogger("wgpy")

QUEUE_RECORDS = 4096  # per client: about 6 MiB of full-size packets
MAX_CLIENTS = 8
BATCH_RECORDS = 256  # records written per system call at most
IDLE_POLL = 0.5  # how often an idle client's thread looks whether the client hung up

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a unix socket (SO_PEERCRED)."""
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(credentials)[1])


class CaptureClient:
    """One `capture=1` connection: a bounded queue of records and the thread that sends them."""

    def __init__(
        self, sock: socket.socket, keylog: bool, on_exit: Callable[[CaptureClient], None]
    ) -> None:
        self.sock = sock
        self.keylog = keylog
        self.dropped = 0  # records that found the queue full
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_RECORDS)
        self._reported = 0
        self._stopping = False
        self._on_exit = on_exit
        self.thread = threading.Thread(target=self._serve, name="capture", daemon=True)

    def offer(self, record: bytes) -> None:
        """Queue `record` if there is room, else count it dropped. Never waits."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def stop(self) -> None:
        """End the thread soon: a write in progress fails, a wait ends within IDLE_POLL."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _serve(self) -> None:
        try:
            while not self._stopping:
                batch = self._next_batch()
                if batch:
                    self.sock.sendall(batch)
                elif self._hung_up():
                    return
        except OSError as error:  # The client went away mid-write (EPIPE), or stop().
            log.debug("capture client: %s", error)
        finally:
            self._on_exit(self)

    def _next_batch(self) -> bytes:
        """Up to BATCH_RECORDS queued records, and the drop count if it grew; b"" if none came
        within IDLE_POLL."""
        try:
            records = [self._queue.get(timeout=IDLE_POLL)]
        except queue.Empty:
            return b""
        while len(records) < BATCH_RECORDS:
            try:
                records.append(self._queue.get_nowait())
            except queue.Empty:
                break
        dropped = self.dropped
        if dropped != self._reported:
            self._reported = dropped
            records.append(encode_dropped(dropped, time.time()))
        return b"".join(records)

    def _hung_up(self) -> bool:
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False


class CaptureHub:
    """The device's observer while any client captures. `lock` is the device's lock."""

    def __init__(self, name: str, device: Device, lock: DeviceLock) -> None:
        self._name = name
        self._device = device
        self._lock = lock
        self._clients: tuple[CaptureClient, ...] = ()

    def attach(self, sock: socket.socket, *, keylog: bool) -> None:
        """Stream to `sock` from now on; raises UapiError(EBUSY) when MAX_CLIENTS already do."""
        with self._lock:
            if len(self._clients) >= MAX_CLIENTS:
                raise UapiError(errno.EBUSY, f"{MAX_CLIENTS} captures already run")
            sock.settimeout(None)  # A slow client blocks its own thread only.
            client = CaptureClient(sock, keylog, self._detach)
            self._clients += (client,)
            self._device.observer = self
        try:
            # Accepted once the observer is in place: nothing after the reply goes unseen, and a
            # close() that follows at once still finds the reply sent.
            sock.sendall(format_errno(0).encode())
        except OSError:
            self._detach(client)
            raise
        if keylog:
            log.warning("(%s) capture with key log started: session secrets leave", self._name)
        else:
            log.info("(%s) capture started", self._name)
        client.thread.start()

    def close(self) -> None:
        """End every capture and wait for its thread."""
        clients = self._clients
        for client in clients:
            client.stop()
        for client in clients:
            client.thread.join()

    # -- the observer (called on the data path, under the device's lock) ----------------------

    def inner_packet(self, peer: bytes, direction: Direction, packet: bytes, wall: float) -> None:
        record = encode_packet(peer, direction, packet, wall)
        for client in self._clients:
            client.offer(record)

    def handshake_secrets(self, secrets: HandshakeSecrets, wall: float) -> None:
        record = encode_secrets(secrets, wall)
        for client in self._clients:
            if client.keylog:
                client.offer(record)

    def _detach(self, client: CaptureClient) -> None:
        with self._lock:
            self._clients = tuple(c for c in self._clients if c is not client)
            if not self._clients:
                self._device.observer = None
        client.sock.close()
        dropped = f", {client.dropped} records dropped (client too slow)" if client.dropped else ""
        log.info("(%s) capture ended%s", self._name, dropped)


def start_capture(hub: CaptureHub, sock: socket.socket, request: Request, name: str) -> None:
    """Hand a `capture=1` connection to `hub`, or refuse it with an errno and close it."""
    try:
        if request.error is not None:
            raise request.error
        assert request.capture is not None
        keylog = request.capture.keylog
        if keylog and peer_uid(sock) not in (0, os.geteuid()):
            raise UapiError(errno.EPERM, "keylog=true from a client neither root nor ours")
        hub.attach(sock, keylog=keylog)
    except (UapiError, OSError) as error:
        log.error("(%s) capture refused: %s", name, error)
        code = error.errno or errno.EIO
        with contextlib.suppress(OSError):
            sock.sendall(format_errno(code).encode())
        sock.close()
