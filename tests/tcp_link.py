"""Two TCP connections joined in memory under a fake clock, through channels that lose, reorder
and duplicate segments as a seeded generator (or a test's script) says. Every segment crosses
the wire format (serialize, then decode), so the pair also exercises tcp_segment."""

from __future__ import annotations

import heapq
import ipaddress
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from wgpy.netstack.tcp import Address, TcpConfig, TcpConnection, TcpEvent, TcpState
from wgpy.netstack.tcp_segment import TcpSegment, decode, serialize

CLIENT = Address("192.0.2.1", 40000)
SERVER = Address("192.0.2.2", 443)
CLIENT_IP = ipaddress.ip_address(CLIENT.host).packed
SERVER_IP = ipaddress.ip_address(SERVER.host).packed


@dataclass
class Channel:
    """One direction of the link: a delay, and what it does to each segment. `fate`, when set,
    decides instead of the generator: it returns the extra delay of each copy that arrives (an
    empty list drops the segment, two entries duplicate it). `sent` records (time, segment)."""

    rng: random.Random
    delay: float = 0.005
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    fate: Callable[[TcpSegment], list[float]] | None = None
    src_ip: bytes = CLIENT_IP
    dst_ip: bytes = SERVER_IP
    sent: list[tuple[float, TcpSegment]] = field(default_factory=list)
    _queue: list[tuple[float, int, bytes]] = field(default_factory=list)
    _count: int = 0

    def put(self, segment: TcpSegment, now: float) -> None:
        self.sent.append((now, segment))
        wire = serialize(segment, self.src_ip, self.dst_ip)
        for late in self.fate(segment) if self.fate else self._copies():
            self._count += 1
            heapq.heappush(self._queue, (now + self.delay + late, self._count, wire))

    def _copies(self) -> list[float]:
        if self.rng.random() < self.loss:
            return []
        copies = 2 if self.rng.random() < self.duplicate else 1
        return [self._late() for _ in range(copies)]

    def _late(self) -> float:
        return self.delay * 3 * self.rng.random() if self.rng.random() < self.reorder else 0.0

    def payloads(self) -> list[tuple[int, int]]:
        """(wire sequence number, length) of each data segment sent, in order."""
        return [(segment.seq, len(segment.payload)) for _, segment in self.sent if segment.payload]

    def next_arrival(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def arrivals(self, now: float) -> Iterator[TcpSegment]:
        while self._queue and self._queue[0][0] <= now:
            segment = decode(heapq.heappop(self._queue)[2], self.src_ip, self.dst_ip)
            assert isinstance(segment, TcpSegment), segment
            yield segment


@dataclass
class Endpoint:
    """A connection and the application on it: what it still has to write, and what it read."""

    conn: TcpConnection
    channel: Channel  # what this end sends into
    to_write: bytearray = field(default_factory=bytearray)
    read: bytearray = field(default_factory=bytearray)
    events: list[TcpEvent] = field(default_factory=list)
    close_when_written: bool = False
    reading: bool = True

    def pump(self) -> None:
        if self.to_write and self.conn.state is not TcpState.CLOSED:
            del self.to_write[: self.conn.send(self.to_write)]
        if not self.to_write and self.close_when_written:
            self.close_when_written = False
            self.conn.close()
        if self.reading:
            while chunk := self.conn.receive_data(1 << 16):
                self.read += chunk
        self.events += self.conn.events()


class Link:
    """A client that connects and a server that accepts the client's first SYN."""

    def __init__(
        self,
        up: Channel,
        down: Channel,
        *,
        client_config: TcpConfig | None = None,
        server_config: TcpConfig | None = None,
        mss: int = 1460,
        server_mss: int | None = None,
    ) -> None:
        self.now = 0.0
        down.src_ip, down.dst_ip = SERVER_IP, CLIENT_IP
        config = client_config or TcpConfig()
        client = TcpConnection.connect(CLIENT, SERVER, self.now, iss=1000, mss=mss, config=config)
        self.client = Endpoint(client, up)
        self.server: Endpoint | None = None
        self._server_config = server_config or TcpConfig()
        self._server_mss = server_mss or mss
        self.down = down

    @property
    def endpoints(self) -> list[Endpoint]:
        return [self.client] + ([self.server] if self.server else [])

    def step(self, until: float | None = None) -> bool:
        """Let both applications act, send what the connections have, then move the clock to
        the next arrival or deadline (or to `until`, if sooner) and deliver or fire what is due.
        False when nothing is left to do."""
        for end in self.endpoints:
            end.pump()
            for segment in end.conn.segments_to_send(self.now):
                end.channel.put(segment, self.now)
        times = [
            at
            for at in (
                self.client.channel.next_arrival(),
                self.down.next_arrival(),
                *(end.conn.next_deadline() for end in self.endpoints),
            )
            if at is not None
        ]
        if not times:
            return False
        self.now = max(self.now, min(times if until is None else [*times, until]))
        for segment in self.client.channel.arrivals(self.now):
            self._to_server(segment)
        if self.server:
            for segment in self.down.arrivals(self.now):
                self.client.conn.receive(segment, self.now)
        for end in self.endpoints:
            deadline = end.conn.next_deadline()
            if deadline is not None and deadline <= self.now:
                end.conn.handle_timer(self.now)
        return True

    def _to_server(self, segment: TcpSegment) -> None:
        if self.server is None:
            conn = TcpConnection.accept(
                segment,
                SERVER,
                CLIENT,
                self.now,
                iss=0xFFFFF000,
                mss=self._server_mss,
                config=self._server_config,
            )  # fmt: skip  (an ISS near 2**32: the sequence numbers wrap during the test)
            self.server = Endpoint(conn, self.down)
        else:
            self.server.conn.receive(segment, self.now)

    def run(self, until: Callable[[], bool], limit: float = 600.0) -> None:
        """Step until `until()` holds; fail if that takes more than `limit` simulated seconds."""
        give_up = self.now + limit
        while not until():
            assert self.now < give_up, f"still waiting at t={self.now}"
            if not self.step():
                break

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end and self.step(until=end):
            pass

    def established(self) -> bool:
        return self.server is not None and all(
            end.conn.state is TcpState.ESTABLISHED for end in self.endpoints
        )
