"""The rootless data path on asyncio: the sans-IO device over UDP sockets, and the user-space
stack where a TUN would be.

Datagrams from the network go to the device; the packets it would write to a TUN go to the stack;
what the stack sends goes back through the device to the network. After each turn the stack's
events go to the handlers the application's transports registered (wgpy.io.stack_transports),
and one timer is armed for the earlier of the device's and the stack's deadlines. Everything runs
on the loop's thread, so neither machine needs a lock; the device's `now` is the loop's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable

from wgpy.core.device import Action, Device, SendDatagrams, WriteTun
from wgpy.io import accel, uapi_server
from wgpy.io.capture_server import CaptureHub, start_capture
from wgpy.io.readiness import input_waiting
from wgpy.io.udp import open_udp
from wgpy.io.udp_batches import UdpBatches, enable_gro, supports_gso
from wgpy.io.vnet.segment import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    GSO_TCPV6,
    IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
    TCP_CHECKSUM_OFFSET,
    VnetHdr,
    segment,
)
from wgpy.netstack.stack import EchoReplied, Stack

log = logging.getLogger("wgpy")

Handler = Callable[[], None]
EchoKey = tuple[str, int, int]  # address, identifier, sequence
PASSES = 4  # of a turn, at most, before what its handlers gave waits for the next one
_AF_INET, _AF_INET6 = int(socket.AF_INET), int(socket.AF_INET6)


def split_tcp(packet: bytes, size: int) -> list[bytes]:
    """The stack's runs of segments cut as a NIC's TSO would (the Stack's `split`): one call to
    the accelerator sums and cuts them all, where a segment serialized alone costs ~3 us of
    Python for its checksum."""
    ipv4 = packet[0] >> 4 == 4
    header = VnetHdr(
        F_NEEDS_CSUM, GSO_TCPV4 if ipv4 else GSO_TCPV6, 0, size,
        IPV4_HEADER_LEN if ipv4 else IPV6_HEADER_LEN, TCP_CHECKSUM_OFFSET,
    )  # fmt: skip
    return segment(packet, header)


def stack_splitter() -> Callable[[bytes, int], list[bytes]] | None:
    """`split_tcp` where the accelerator cuts; on the pure path a segment is as cheap alone."""
    return split_tcp if accel.compiled_split is not None else None


class RootlessDataPath:
    def __init__(self, device: Device, stack: Stack, loop: asyncio.AbstractEventLoop) -> None:
        self.device = device
        self.stack = stack
        self.loop = loop
        self.listen_port = 0
        self.fwmark = 0
        # What the stack's events go to: id() of a socket, connection or listener -> its handler.
        self.handlers: dict[int, Handler] = {}
        self.echo_waiters: dict[EchoKey, asyncio.Future[None]] = {}
        # The application's transports on the stack, aborted when the tunnel closes.
        self.transports: set[asyncio.Transport | asyncio.DatagramTransport] = set()
        self.send_errors: Counter[str] = Counter()
        self._sockets: list[socket.socket] = []
        # By family, as plain ints: a socket's `family` property makes an enum each read.
        self._by_family: dict[int, socket.socket] = {}
        self._udp = UdpBatches(gso=False, gro=False)
        self._timer: asyncio.TimerHandle | None = None
        self._wake: asyncio.Handle | None = None  # a turn called for, not yet run
        self._running = False  # in run(): what a wake would send goes in its sends

    # -- sockets ---------------------------------------------------------------------------

    def bind(self, port: int, fwmark: int = 0) -> None:
        """Listen for the tunnel's datagrams on UDP `port` (0: any free port), both families."""
        self.close_sockets()
        sock4, sock6 = open_udp(port, fwmark)
        self._sockets = [sock for sock in (sock4, sock6) if sock is not None]
        self._by_family = {int(sock.family): sock for sock in self._sockets}
        # Many datagrams per system call each way where the kernel can (UDP_SEGMENT, UDP_GRO).
        self._udp = UdpBatches(
            gso=all(map(supports_gso, self._sockets)), gro=all(map(enable_gro, self._sockets))
        )
        for sock in self._sockets:
            sock.setblocking(False)
            self.loop.add_reader(sock.fileno(), self._on_readable, sock, input_waiting(sock))
        self.listen_port = self._sockets[0].getsockname()[1]
        self.fwmark = fwmark

    def close_sockets(self) -> None:
        for sock in self._sockets:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []
        self._by_family = {}

    def close(self) -> None:
        """Abort the transports still open (their peers get a reset), then stop."""
        for transport in list(self.transports):
            transport.abort()
        self.run(())
        self.close_sockets()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self.echo_waiters.values():
            waiter.cancel()

    def _on_readable(self, sock: socket.socket, waiting: Callable[[], object]) -> None:
        now, wall = self.loop.time(), time.time()
        try:
            batches = self._udp.receive(sock, waiting)
        except BlockingIOError:
            return
        except OSError as error:  # an ICMP error queued on the socket: nothing to read
            log.debug("UDP receive: %s", error)
            return
        actions: list[Action] = []
        for datagrams, source, local in batches:
            actions += self.device.handle_datagrams(datagrams, source, now, wall, local)
        self.run(actions)

    def _send(self, action: SendDatagrams) -> None:
        sock = self._by_family.get(_AF_INET6 if ":" in action.endpoint.host else _AF_INET)
        if sock is None:
            self.send_errors["no socket of the endpoint's family"] += len(action.datagrams)
            return
        try:
            if not self._udp.send(sock, action.datagrams, action.endpoint, action.local):
                assert action.local is not None
                self.device.forget_local(action.local)
        except OSError as error:  # UDP: lost, as on a busy link
            self.send_errors[error.strerror or "send failed"] += len(action.datagrams)

    # -- the turn --------------------------------------------------------------------------

    def wake(self) -> None:
        """The application gave the stack something to send: run a turn soon, once. During a
        turn (a handler writing, or reading, which may open the window) that turn sends it."""
        if not self._running and self._wake is None:
            self._wake = self.loop.call_soon(self._on_wake)

    def flush(self) -> None:
        """The application wrote outside a turn (a relay passing on what its client sent, or
        the client's end): a turn now, so that it leaves in this callback and not after one
        more turn of the loop (a SOCKS5 connect's echo and close each waited one, issue 17).
        Within a turn, that turn sends it."""
        if not self._running:
            self.run(())

    def _on_wake(self) -> None:
        self._wake = None
        self.run(())

    def run(self, actions: Iterable[Action]) -> None:
        """Carry out the device's actions (the stack fed, datagrams sent); hand the stack's
        events to their handlers; then send what the stack and the handlers have to send until
        the device and the stack are quiet, again while that gave the stack news (PASSES times
        at most); then re-arm the timer. The handlers go before the sends so that what they
        write to this machine's sockets (a SOCKS5 reply, an echoed byte) does not wait for the
        tunnel's (a handshake's ACK, ~40 us a datagram), and what they write to the tunnel goes
        in the same sends. A turn already called for is this one."""
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        now, wall = self.loop.time(), time.time()
        stack = self.stack
        news = False
        self._running = True
        try:
            self._carry_out(actions, now)
            for _ in range(PASSES):
                self._dispatch()
                self._exchange(now, wall)
                news = stack.has_events
                if not news:
                    break
        finally:
            self._running = False
        if news:
            self.wake()  # news that keeps coming: the rest in a turn of its own
        self._rearm()

    def _carry_out(self, actions: Iterable[Action], now: float) -> None:
        stack = self.stack
        for action in actions:
            if isinstance(action, SendDatagrams):
                self._send(action)
            elif isinstance(action, WriteTun):
                for packet in action.packets:
                    stack.receive(packet, now)

    def _exchange(self, now: float, wall: float) -> None:
        """What the stack has to send, through the device, until neither has more."""
        while packets := self.stack.packets_to_send(now):
            self._carry_out(self.device.handle_tun_packets(packets, now, wall), now)

    def _dispatch(self) -> None:
        for event in self.stack.events():
            if isinstance(event, EchoReplied):
                key = (event.address, event.identifier, event.sequence)
                waiter = self.echo_waiters.pop(key, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                continue
            handler = self.handlers.get(id(event))
            if handler is not None:
                handler()  # What it writes goes in this turn's sends.

    def _rearm(self) -> None:
        """The timer armed for the earlier deadline of the device's and the stack's, if that
        is sooner than the one armed. A deadline that moved later (a segment's RTO ended by
        its ACK, a delayed ACK a segment carried: several times per connection) leaves the
        timer to fire early once, find nothing due and re-arm: cheaper than a new TimerHandle
        and a cancelled one in the loop's heap at each move."""
        device, stack = self.device.next_timer(), self.stack.next_deadline()
        deadline = device if stack is None or (device is not None and device < stack) else stack
        if deadline is None:
            return
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now, wall = self.loop.time(), time.time()
        self.stack.handle_timer(now)
        self.run(self.device.handle_timer(now, wall))

    # -- for the application ---------------------------------------------------------------

    def watch(self, subject: object, handler: Handler) -> None:
        self.handlers[id(subject)] = handler

    def unwatch(self, subject: object) -> None:
        self.handlers.pop(id(subject), None)

    def expect_echo(self, key: EchoKey) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = self.loop.create_future()
        self.echo_waiters[key] = waiter
        return waiter

    def forget_echo(self, key: EchoKey) -> None:
        with contextlib.suppress(KeyError):
            del self.echo_waiters[key]


async def serve_configuration(
    name: str, handler: uapi_server.Handler, capture: CaptureHub
) -> asyncio.AbstractServer:
    """The configuration socket of `name` (wgpy.io.uapi_server) served on the running loop, on
    the loop's thread as the tunnel is, so the handler needs no lock. A `capture=1` connection
    leaves the loop for `capture`, whose thread per client writes the records."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = uapi_server.Connection(writer.get_extra_info("socket"), handler)
        try:
            while True:
                data = await reader.read(1 << 16)
                for reply in connection.feed(data):
                    writer.write(reply)
                    await writer.drain()
                if connection.closing:
                    break
            if connection.capture is not None:
                # A blocking copy of the socket for the hub's thread: the stream's closes below.
                sock = socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno()))
                start_capture(capture, sock, connection.capture, name)
        except OSError as error:
            log.debug("(%s) configuration client: %s", name, error)
        finally:
            writer.close()

    return await asyncio.start_unix_server(client, sock=uapi_server.listen(name))
