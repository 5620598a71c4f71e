"""The stack: IP packets in and out for the tunnel addresses, demultiplexed to UDP sockets, TCP
connections and ICMP.

Like smoltcp's Interface, it is polled: `receive` takes a packet from the tunnel, `packets_to_send`
gives what the sockets and connections have to send, `next_deadline`/`handle_timer` run their
timers, and `events` names what has news for the application (a socket with datagrams, an echo
reply, a connection with events, a listener with connections to accept). Nothing from the
network raises: every packet it cannot use is counted by reason (`drops`, and with the
connections' own, `drop_counts()`).
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

from wgpy.core.ippacket import IPV4_HEADER_LEN, IPV6_HEADER_LEN
from wgpy.netstack import icmp, ip, tcp_segment, udp
from wgpy.netstack.drops import Drop
from wgpy.netstack.tcp import (
    DEFAULT_CONFIG,
    Address,
    IcmpKind,
    TcpConfig,
    TcpConnection,
    TcpDrop,
    TcpState,
)
from wgpy.netstack.tcp_segment import ACK, FIN, PSH, Flags, TcpSegment
from wgpy.netstack.udp import UdpDatagram, UdpSocket

EPHEMERAL_PORTS: Final = range(49152, 65536)  # RFC 6335's dynamic ports
# Half-open connections (SYN received, handshake not done) a listener keeps; further SYNs are
# dropped, so a SYN flood costs at most this many connections (Linux: tcp_max_syn_backlog).
SYN_BACKLOG: Final = 256
ACCEPT_BACKLOG: Final = 128  # established connections waiting for accept (Linux: SOMAXCONN 4096)
# Connections in TIME-WAIT the stack keeps (Linux: tcp_max_tw_buckets); past it the oldest ends at
# once, as Linux closes a connection that finds its table full. Each is a whole TCB here, ~2.7 KB,
# so they hold ~11 MB at most; and fewer than the ephemeral ports, so a client connecting to one
# service faster than TIME-WAIT lets them go (16,384 in 60 s: 273 a second) still finds a port.
# A four-tuple used again early is what TIME-WAIT guards against; timestamps (PAWS) and random
# initial sequence numbers keep the old connection's late segments out, as with Linux's.
TIME_WAIT_LIMIT: Final = 4096
TCP_HEADER_ROOM: Final = tcp_segment.HEADER_LEN

# A connection by its four-tuple, addresses raw: (local, local port, remote, remote port).
FourTuple = tuple[bytes, int, bytes, int]
# Cuts a TCP super-packet (IP and TCP headers, then payloads of `size` bytes end to end; its
# lengths and checksums unset) into the packets it stands for, as a NIC's TSO does.
Splitter = Callable[[bytes, int], list[bytes]]
MAX_SUPER_PAYLOAD: Final = 0xFFFF - 100  # an IP length field's worth, less the headers

_ICMP_KINDS: Final = {
    icmp.Unreachable.PORT: IcmpKind.PORT_UNREACHABLE,
    icmp.Unreachable.HOST: IcmpKind.HOST_UNREACHABLE,
    icmp.Unreachable.PROHIBITED: IcmpKind.ADMIN_PROHIBITED,
}


class EchoReplied(NamedTuple):
    """An echo reply from `address` to the request of `identifier` and `sequence`."""

    address: str
    identifier: int
    sequence: int
    payload: bytes


class Listener:
    """A TCP port that accepts connections: those whose handshake ended wait in `accept`'s
    queue; `half_open` counts those still in SYN-RECEIVED, bounded by `syn_backlog`."""

    def __init__(self, port: int, syn_backlog: int, accept_backlog: int) -> None:
        self.port = port
        self.syn_backlog = syn_backlog
        self.accept_backlog = accept_backlog
        self.half_open: set[TcpConnection] = set()
        self.ready: deque[TcpConnection] = deque()
        self.closed = False

    def accept(self) -> TcpConnection | None:
        """The oldest established connection not yet accepted, or None."""
        return self.ready.popleft() if self.ready else None


Event = UdpSocket | EchoReplied | TcpConnection | Listener


class Stack:
    """`authenticated`: every packet `receive` gets was authenticated on its way (WireGuard's
    Poly1305 covers it whole), so its IPv4 and TCP checksums are not checked again, as Linux's
    WireGuard marks what it decrypts CHECKSUM_UNNECESSARY; the TCP sum is a third of a data
    segment's cost. What the stack sends is always checksummed.

    `ephemeral_ports` and `time_wait_limit` are Linux's ip_local_port_range and
    tcp_max_tw_buckets."""

    def __init__(
        self, addresses: list[str], mtu: int, rng: random.Random, *, authenticated: bool = False,
        split: Splitter | None = None, ephemeral_ports: range = EPHEMERAL_PORTS,
        time_wait_limit: int = TIME_WAIT_LIMIT,
    ) -> None:  # fmt: skip
        interfaces = [ipaddress.ip_interface(address) for address in addresses]
        self.addresses: list[bytes] = [interface.ip.packed for interface in interfaces]
        if not self.addresses:
            raise ValueError("the stack needs at least one tunnel address")
        self._texts = {interface.ip.packed: str(interface.ip) for interface in interfaces}
        self.mtu = mtu
        self.rng = rng
        self.authenticated = authenticated
        self.split = split
        self.ephemeral_ports = ephemeral_ports
        self.time_wait_limit = time_wait_limit
        self.drops: Counter[Drop] = Counter()
        self._udp: dict[int, UdpSocket] = {}
        self._outbox: list[bytes] = []
        self._events: dict[int, Event] = {}  # by id(): an ordered set
        self._icmp_errors = icmp.ErrorRateLimit()
        self.tcp_config: TcpConfig = DEFAULT_CONFIG
        self.tcp_drops: Counter[TcpDrop] = Counter()  # of connections that have ended
        self._tcp: dict[FourTuple, TcpConnection] = {}
        self._tuples: dict[TcpConnection, FourTuple] = {}
        self._listeners: dict[int, Listener] = {}
        self._of_listener: dict[TcpConnection, Listener] = {}  # half-open ones
        self._active: dict[TcpConnection, None] = {}  # may have segments to send: ordered set
        self._deadlines: list[tuple[float, int, TcpConnection]] = []  # a heap
        self._scheduled: dict[TcpConnection, float] = {}  # each one's earliest heap entry
        self._heap_order = 0
        self._time_wait: dict[TcpConnection, None] = {}  # in TIME-WAIT, oldest first
        self.time_wait_overflows = 0  # connections time_wait_limit ended early

    # -- the tunnel side -------------------------------------------------------------------

    def receive(self, packet: bytes, now: float) -> None:
        """An IP packet from the tunnel. Never raises: what the stack cannot use is counted."""
        parsed = ip.parse(packet, verify_checksum=not self.authenticated)
        if isinstance(parsed, Drop):
            self._drop(parsed)
        elif parsed.destination not in self.addresses:
            self._drop(Drop.NOT_OUR_ADDRESS)
        elif parsed.protocol == ip.TCP:
            self._receive_tcp(parsed, now)
        elif parsed.protocol == ip.UDP:
            self._receive_udp(parsed, now)
        elif parsed.protocol == icmp.PROTOCOL[parsed.version]:
            self._receive_icmp(parsed)
        else:
            self._drop(Drop.UNKNOWN_PROTOCOL)

    def packets_to_send(self, now: float) -> list[bytes]:
        """The IP packets for the tunnel, in order."""
        if self._active:
            for conn in list(self._active):
                self._flush(conn, now)
            self._active.clear()
        elif not self._outbox:
            return []  # (asked after every step of a turn: most often there is nothing)
        packets, self._outbox = self._outbox, []
        return packets

    def next_deadline(self) -> float | None:
        """When `handle_timer` is next due: the earliest deadline a connection has armed,
        exactly, so that the edge's timer does not fire for nothing (a connection's delayed ACK
        that its FIN carried, an RTO its ACK cancelled, a connection gone). Entries that went
        stale are dropped as they come up; one whose connection re-armed later is filed again."""
        deadlines, scheduled = self._deadlines, self._scheduled
        while deadlines:
            deadline, _, conn = deadlines[0]
            if scheduled.get(conn) == deadline:
                if conn.next_deadline() == deadline:
                    return deadline
                del scheduled[conn]
                heapq.heappop(deadlines)
                self._schedule(conn)
            else:  # the connection ended, or this entry was popped and filed again
                heapq.heappop(deadlines)
        return None

    def handle_timer(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, conn = heapq.heappop(deadlines)
            if self._scheduled.get(conn) != deadline:
                continue  # the connection ended, or has an earlier entry already popped
            del self._scheduled[conn]
            due = conn.next_deadline()
            if due is not None and due <= now:
                conn.handle_timer(now)
            self._touched(conn)

    @property
    def has_events(self) -> bool:
        """Whether `events` would give anything."""
        return bool(self._events)

    def events(self) -> list[Event]:
        """What has news since the last call, each once, oldest first."""
        events = list(self._events.values())
        self._events.clear()
        return events

    # -- TCP -------------------------------------------------------------------------------

    def tcp_connect(self, remote_ip: str, port: int, now: float) -> TcpConnection:
        """Open a connection to `remote_ip` (a literal) and `port`; its SYN is sent with the next
        `packets_to_send`, and its events say how it went."""
        remote, remote_text = ip.literal(remote_ip)
        local = self.source_for(remote)
        local_port = self._free_port(
            lambda candidate: (
                (local, candidate, remote, port) not in self._tcp
                and candidate not in self._listeners
            )
        )
        conn = TcpConnection.connect(
            Address(self._texts[local], local_port), Address(remote_text, port), now,
            iss=self.rng.getrandbits(32), mss=self._mss(remote), config=self.tcp_config,
        )  # fmt: skip
        self._add(conn, (local, local_port, remote, port))
        return conn

    def tcp_listen(
        self, port: int, syn_backlog: int = SYN_BACKLOG, accept_backlog: int = ACCEPT_BACKLOG
    ) -> Listener:
        """Accept connections to `port` of every tunnel address."""
        if port in self._listeners:
            raise OSError(f"TCP port {port} is already listening in the tunnel")
        listener = Listener(port, syn_backlog, accept_backlog)
        self._listeners[port] = listener
        return listener

    def tcp_unlisten(self, listener: Listener) -> None:
        """Stop listening; connections not yet accepted are reset."""
        listener.closed = True
        if self._listeners.get(listener.port) is listener:
            del self._listeners[listener.port]
        for conn in [*listener.half_open, *listener.ready]:
            conn.abort()
            self.wake(conn)
        listener.ready.clear()

    def wake(self, conn: TcpConnection) -> None:
        """The application sent, read, closed or aborted: `conn` may have segments to send."""
        if conn in self._tuples:
            self._active[conn] = None

    @property
    def connections(self) -> int:
        return len(self._tcp)

    def drop_counts(self) -> Counter[Drop | TcpDrop]:
        """Every drop by reason: the stack's, and its connections', live and ended."""
        total: Counter[Drop | TcpDrop] = Counter(self.drops)
        total.update(self.tcp_drops)
        for conn in self._tuples:
            total.update(conn.drops)
        return total

    def _receive_tcp(self, packet: ip.IpPacket, now: float) -> None:
        segment = tcp_segment.decode(
            packet.payload, packet.source, packet.destination,
            verify_checksum=not self.authenticated,
        )  # fmt: skip
        if not isinstance(segment, TcpSegment):
            self._drop(Drop.BAD_TCP_SEGMENT)
            return
        key = (packet.destination, segment.dst_port, packet.source, segment.src_port)
        conn = self._tcp.get(key)
        if conn is not None:
            conn.receive(segment, now)
            self._touched(conn)
            return
        listener = self._listeners.get(segment.dst_port)
        if (
            listener is not None
            and segment.flags & (Flags.SYN | Flags.ACK | Flags.RST) == Flags.SYN
        ):
            self._passive_open(listener, key, segment, now)
            return
        self._drop(Drop.TCP_NO_LISTENER)
        if not segment.flags & Flags.RST:
            self._send_reset(key, segment)

    def _passive_open(
        self, listener: Listener, key: FourTuple, syn: TcpSegment, now: float
    ) -> None:
        if len(listener.half_open) >= listener.syn_backlog:
            self._drop(Drop.SYN_BACKLOG_FULL)
            return
        local, local_port, remote, remote_port = key
        conn = TcpConnection.accept(
            syn, Address(self._texts[local], local_port), Address(_text(remote), remote_port), now,
            iss=self.rng.getrandbits(32), mss=self._mss(remote), config=self.tcp_config,
        )  # fmt: skip
        listener.half_open.add(conn)
        self._of_listener[conn] = listener
        self._add(conn, key)

    def _send_reset(self, key: FourTuple, segment: TcpSegment) -> None:
        """RFC 9293 3.10.7.1: the answer to a segment for no connection."""
        local, local_port, remote, remote_port = key
        if segment.flags & Flags.ACK:
            reset = TcpSegment(local_port, remote_port, segment.ack, 0, Flags.RST, 0)
        else:
            ack = (segment.seq + segment.length) & 0xFFFFFFFF
            reset = TcpSegment(local_port, remote_port, 0, ack, Flags.RST | Flags.ACK, 0)
        self._outbox.append(
            ip.build(local, remote, ip.TCP, tcp_segment.serialize(reset, local, remote))
        )

    def _add(self, conn: TcpConnection, key: FourTuple) -> None:
        self._tcp[key] = conn
        self._tuples[conn] = key
        self._touched(conn)

    def _touched(self, conn: TcpConnection) -> None:
        """After `conn` took a segment, a timer or a call: it may send, its events may be news,
        its deadline may have moved, and it may have left the listener's backlog or ended."""
        self._active[conn] = None
        self._events[id(conn)] = conn
        listener = self._of_listener.get(conn)
        if listener is not None and conn.state is not TcpState.SYN_RECEIVED:
            self._leave_backlog(conn, listener)
        if conn.state is TcpState.TIME_WAIT and conn not in self._time_wait:
            self._entered_time_wait(conn)
        if conn.state is not TcpState.CLOSED:  # (a closed one goes once its RST is out: _flush)
            self._schedule(conn)

    def _entered_time_wait(self, conn: TcpConnection) -> None:
        self._time_wait[conn] = None
        if len(self._time_wait) > self.time_wait_limit:
            oldest = next(iter(self._time_wait))
            self._remove(oldest, self._tuples[oldest])
            self.time_wait_overflows += 1

    def _leave_backlog(self, conn: TcpConnection, listener: Listener) -> None:
        del self._of_listener[conn]
        listener.half_open.discard(conn)
        if conn.state is TcpState.CLOSED or listener.closed:
            return
        if len(listener.ready) >= listener.accept_backlog:
            self._drop(Drop.ACCEPT_QUEUE_FULL)
            conn.abort()
            return
        listener.ready.append(conn)
        self._events[id(listener)] = listener

    def _flush(self, conn: TcpConnection, now: float) -> None:
        key = self._tuples.get(conn)
        if key is None:
            return
        local, _, remote, _ = key
        segments = conn.segments_to_send(now)
        at = 0
        while at < len(segments):
            end = _run_end(segments, at) if self.split is not None else at + 1
            if end - at > 1:
                self._outbox += self._super_packet(segments[at:end], local, remote)
            else:
                wire = tcp_segment.serialize(segments[at], local, remote)
                self._outbox.append(ip.build(local, remote, ip.TCP, wire))
            at = end
        if conn.state is TcpState.CLOSED:
            self._remove(conn, key)
        else:
            self._schedule(conn)

    def _super_packet(self, run: Sequence[TcpSegment], local: bytes, remote: bytes) -> list[bytes]:
        """The run as one segment with every payload, cut by `split` (FIN and PSH, which only
        the last may carry, stay on the last piece)."""
        assert self.split is not None
        first = run[0]
        whole = TcpSegment(
            first.src_port, first.dst_port, first.seq, first.ack, run[-1].flags, first.window,
            first.options, b"".join([segment.payload for segment in run]),
        )  # fmt: skip
        wire = tcp_segment.serialize(whole, local, remote, checksummed=False)
        return self.split(ip.build(local, remote, ip.TCP, wire), len(first.payload))

    def _schedule(self, conn: TcpConnection) -> None:
        """Keep an entry in the heap at `conn`'s deadline, unless an earlier one is there: when
        that one comes due, `handle_timer` files the later deadline."""
        deadline = conn.next_deadline()
        if deadline is not None and deadline < self._scheduled.get(conn, float("inf")):
            self._scheduled[conn] = deadline
            self._heap_order += 1
            heapq.heappush(self._deadlines, (deadline, self._heap_order, conn))

    def _remove(self, conn: TcpConnection, key: FourTuple) -> None:
        del self._tcp[key]
        del self._tuples[conn]
        self._scheduled.pop(conn, None)
        self._time_wait.pop(conn, None)
        listener = self._of_listener.pop(conn, None)
        if listener is not None:
            listener.half_open.discard(conn)
        self.tcp_drops.update(conn.drops)

    def _mss(self, remote: bytes) -> int:
        """The largest segment the tunnel's MTU carries (RFC 9293 3.7.1)."""
        header = IPV4_HEADER_LEN if len(remote) == 4 else IPV6_HEADER_LEN
        return self.mtu - header - TCP_HEADER_ROOM

    # -- UDP -------------------------------------------------------------------------------

    def udp_bind(self, port: int = 0) -> UdpSocket:
        """A UDP socket on `port` of every tunnel address; 0 picks a free ephemeral port."""
        if port == 0:
            port = self._free_port(lambda candidate: candidate not in self._udp)
        elif port in self._udp:
            raise OSError(f"UDP port {port} is in use in the tunnel")
        socket = UdpSocket(port, self._udp_send)
        self._udp[port] = socket
        return socket

    def udp_close(self, socket: UdpSocket) -> None:
        socket.closed = True
        if self._udp.get(socket.port) is socket:
            del self._udp[socket.port]

    def _udp_send(self, socket: UdpSocket, data: bytes, address: udp.Address) -> None:
        remote = ipaddress.ip_address(address[0]).packed
        local = self.source_for(remote)
        message = udp.serialize(UdpDatagram(socket.port, address[1], data), local, remote)
        self._outbox.append(ip.build(local, remote, ip.UDP, message))

    def _receive_udp(self, packet: ip.IpPacket, now: float) -> None:
        datagram = udp.parse(packet.payload, packet.source, packet.destination)
        if isinstance(datagram, Drop):
            self._drop(datagram)
            return
        socket = self._udp.get(datagram.destination_port)
        if socket is None:
            self._drop(Drop.UDP_PORT_CLOSED)
            self._send_icmp_error(icmp.port_unreachable(packet), now)
            return
        source = (str(ipaddress.ip_address(packet.source)), datagram.source_port)
        if not socket.deliver(datagram.payload, source):
            self._drop(Drop.UDP_QUEUE_FULL)
            return
        self._events[id(socket)] = socket

    # -- ICMP ------------------------------------------------------------------------------

    def ping(self, address: str, identifier: int, sequence: int, payload: bytes) -> None:
        """Send an echo request to `address`; its reply comes as an EchoReplied event."""
        remote = ipaddress.ip_address(address).packed
        request = icmp.echo_request(self.source_for(remote), remote, identifier, sequence, payload)
        self._outbox.append(request)

    def _receive_icmp(self, packet: ip.IpPacket) -> None:
        message = icmp.parse(packet)
        if isinstance(message, Drop):
            self._drop(message)
            return
        version = packet.version
        if message.type == icmp.ECHO_REQUEST[version] and message.code == 0:
            self._outbox.append(icmp.echo_reply(packet, message))
        elif message.type == icmp.ECHO_REPLY[version] and len(message.rest) >= icmp.ECHO.size:
            identifier, sequence = icmp.ECHO.unpack_from(message.rest)
            address = str(ipaddress.ip_address(packet.source))
            reply = EchoReplied(address, identifier, sequence, message.rest[icmp.ECHO.size :])
            self._events[id(reply)] = reply
        else:
            error = icmp.quoted_error(version, message)
            if error is None:
                self._drop(Drop.ICMP_IGNORED)
            elif not self._route_icmp_error(error):
                self._drop(Drop.ICMP_ERROR_UNMATCHED)

    def _route_icmp_error(self, error: icmp.QuotedError) -> bool:
        """Hand an ICMP error to the socket whose packet it quotes; False if none did."""
        if error.protocol == ip.TCP:
            key = (error.local, error.local_port, error.remote, error.remote_port)
            conn = self._tcp.get(key)
            if conn is None:
                return False
            kind = _ICMP_KINDS.get(error.kind)
            if kind is not None:  # Time exceeded and the like: the retransmissions go on.
                conn.icmp_error(kind)
                self._touched(conn)
            return True
        if error.protocol == ip.UDP and error.local in self.addresses:
            socket = self._udp.get(error.local_port)
            if socket is not None:
                remote = (str(ipaddress.ip_address(error.remote)), error.remote_port)
                socket.errors.append(udp.UdpError(remote, error.kind is icmp.Unreachable.PORT))
                self._events[id(socket)] = socket
                return True
        return False

    def _send_icmp_error(self, packet: bytes, now: float) -> None:
        if self._icmp_errors.allow(now):
            self._outbox.append(packet)
        else:
            self._drop(Drop.ICMP_RATE_LIMITED)

    # -- helpers ---------------------------------------------------------------------------

    def source_for(self, remote: bytes) -> bytes:
        """Our tunnel address of the remote's family."""
        for address in self.addresses:
            if len(address) == len(remote):
                return address
        raise OSError(f"no tunnel address of IPv{4 if len(remote) == 4 else 6}")

    def _free_port(self, free: Callable[[int], bool]) -> int:
        """An ephemeral port `free` takes: the search starts at a random one and goes on in
        turn (RFC 6056's algorithm 2), so it finds the last free port if there is one. A TCP
        port is free towards a remote when no connection has that four-tuple, as Linux's
        __inet_hash_connect holds it: one in TIME-WAIT towards one service is free towards
        another (taken for all, ports ran out at 16,384 connects a TIME-WAIT, 273 a second)."""
        ports = self.ephemeral_ports
        start = self.rng.randrange(len(ports))
        for offset in range(len(ports)):
            port = ports[(start + offset) % len(ports)]
            if free(port):
                return port
        raise OSError("no free port in the tunnel")

    def _drop(self, reason: Drop) -> None:
        self.drops[reason] += 1


def _run_end(segments: Sequence[TcpSegment], at: int) -> int:
    """Where the run of segments from `at` ends that one super-packet can stand for: each
    continuing the last's sequence with the same acknowledgment, window and options, each but
    the last full-sized and carrying ACK alone."""
    first = segments[at]
    size = len(first.payload)
    if not size or first.flags & ~(PSH | FIN) != ACK:
        return at + 1
    end, seq, total = at + 1, first.seq, size
    while end < len(segments) and segments[end - 1].flags == ACK:
        segment = segments[end]
        seq = (seq + size) & 0xFFFFFFFF
        total += len(segment.payload)
        if (
            segment.seq != seq
            or not 0 < len(segment.payload) <= size
            or segment.flags & ~(PSH | FIN) != ACK
            or segment.ack != first.ack
            or segment.window != first.window
            or (segment.options is not first.options and segment.options != first.options)
            or total > MAX_SUPER_PAYLOAD
        ):
            break
        end += 1
        if len(segment.payload) < size:
            break
    return end


def _text(address: bytes) -> str:
    return str(ipaddress.ip_address(address))
