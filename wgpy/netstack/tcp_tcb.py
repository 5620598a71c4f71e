"""The Transmission Control Block (RFC 9293 3.3.1): one connection's variables, its buffers and
timers, and what every segment it sends carries from them (the acknowledgment, the window
advertised, the timestamps and SACK options). The parts that act on it build on this class, each
on the one before: tcp_ack (what an acknowledgment does), tcp_input (segments in), tcp_output
(segments out), tcp_timers, and tcp.TcpConnection, the application's side.

Sequence numbers are kept unwrapped (plain integers that never wrap, starting at ISS and IRS) and
reduced modulo 2**32 only on the wire, so comparisons are plain `<`. RFC 9293's names: SND.UNA is
`snd_una`, SND.NXT `snd_nxt` (rewound to SND.UNA after a timeout, go-back-N, with `snd_max` the
highest ever sent), SND.WND `snd_wnd`, RCV.NXT `rcv_nxt`, and the right edge of the window last
advertised `rcv_adv` (RCV.NXT + RCV.WND).
"""

from __future__ import annotations

from collections import Counter
from typing import Final, NamedTuple

from wgpy.netstack.tcp_config import TcpConfig
from wgpy.netstack.tcp_congestion import NewReno
from wgpy.netstack.tcp_events import IcmpKind, TcpDrop, TcpEvent
from wgpy.netstack.tcp_reassembly import Reassembly
from wgpy.netstack.tcp_rtt import RttEstimator
from wgpy.netstack.tcp_scoreboard import Scoreboard
from wgpy.netstack.tcp_segment import NO_OPTIONS, Options, TcpSegment
from wgpy.netstack.tcp_states import TcpState

MASK: Final = 0xFFFFFFFF
HALF: Final = 1 << 31  # a difference of sequence numbers or timestamps this far is negative
DEFAULT_MSS: Final = 536  # RFC 9293 3.7.1: what a peer that sends no MSS option can take
MAX_WINDOW_SCALE: Final = 14  # RFC 7323 2.3
MAX_WINDOW: Final = 0xFFFF  # the window field, unscaled
CHALLENGE_ACK_INTERVAL: Final = 0.5  # seconds


class Address(NamedTuple):
    host: str  # textual IPv4 or IPv6 address
    port: int


def window_scale_for(buffer: int) -> int:
    """The smallest shift that lets a 16-bit window field cover `buffer` bytes."""
    shift = 0
    while buffer >> shift > MAX_WINDOW and shift < MAX_WINDOW_SCALE:
        shift += 1
    return shift


def unwrap(wire: int, near: int) -> int:
    """The unwrapped sequence number within 2**31 of `near` that is `wire` modulo 2**32."""
    delta = (wire - near) & MASK
    return near + delta - (1 << 32 if delta >= HALF else 0)


class TransmissionControlBlock:
    # Slots, not a dict: every attribute read and write of the stack's hot paths is a slot's, and
    # a connection (one each in TIME-WAIT too) is ~1 KB smaller. The classes that build on this
    # one add none of their own.
    __slots__ = (
        "_ack_now", "_challenged_at", "_control", "_delack_at", "_events", "_fin_seq",
        "_fin_wait_2_at", "_heard_at", "_keepalive_at", "_keepalive_sent", "_now", "_ooo",
        "_orphan", "_peer_fin", "_persist_at", "_persist_backoff", "_probe", "_recv_buf", "_rto_at",
        "_rtt_timing", "_send_buf", "_send_seq", "_stamped", "_time_wait_at", "_ts_offset",
        "_unacked", "_want_writable", "bulk_runs", "bytes_acked", "bytes_received", "config",
        "congestion", "drops", "dupacks", "error", "high_rxt", "in_recovery", "irs", "iss", "local",
        "max_snd_wnd", "mss", "our_mss", "predicted", "rcv_adv", "rcv_nxt", "rcv_scale", "recover",
        "remote", "retransmitted", "retries", "rtt", "sack", "scoreboard", "snd_max", "snd_nxt",
        "snd_scale", "snd_una", "snd_wl1", "snd_wl2", "snd_wnd", "soft_error", "state",
        "timestamps", "ts_recent", "window_scaling",
    )  # fmt: skip

    def __init__(
        self, local: Address, remote: Address, now: float, *, iss: int, mss: int,
        config: TcpConfig, state: TcpState,
    ) -> None:  # fmt: skip
        self.local, self.remote, self.config, self.state = local, remote, config, state
        self.iss = iss
        self.irs = 0
        self.our_mss = mss
        self.mss = min(mss, DEFAULT_MSS)  # the largest payload we send, before options
        self.snd_una = self.snd_nxt = self.snd_max = iss
        self.snd_wnd = self.max_snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.snd_scale = self.rcv_scale = 0
        self.rcv_nxt = self.rcv_adv = 0
        self.sack = self.timestamps = self.window_scaling = False  # as negotiated
        self.ts_recent = 0
        self._ts_offset = iss  # per connection, so TSval does not leak the clock (RFC 7323 7.1)
        self.drops: Counter[TcpDrop] = Counter()
        # Counters for logs and metrics: stream bytes acknowledged by the peer and received in
        # order, and segments sent again; segments header prediction took (Linux's TCPHPHits)
        # and runs of full-sized segments bulk sending built.
        self.bytes_acked = self.bytes_received = self.retransmitted = 0
        self.predicted = self.bulk_runs = 0
        self.soft_error: IcmpKind | None = None
        self.error: IcmpKind | None = None
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.retries = 0
        # Congestion control, and loss recovery (RFC 6675, RFC 6582).
        self.congestion = NewReno.initial(self.mss, config.initial_window)
        self.in_recovery = False
        self.recover = iss
        self.high_rxt = iss
        self.dupacks = 0
        self.scoreboard = Scoreboard()
        # Buffers: what we send starts at _send_seq; what we received in order waits in _recv_buf.
        self._send_buf = bytearray()
        self._send_seq = iss + 1
        self._fin_seq: int | None = None
        self._recv_buf = bytearray()
        self._ooo = Reassembly()
        self._peer_fin: int | None = None
        # Timers: each an absolute deadline or None.
        self._rto_at: float | None = None
        self._delack_at: float | None = None
        self._persist_at: float | None = None
        self._keepalive_at: float | None = None
        self._time_wait_at: float | None = None
        self._fin_wait_2_at: float | None = None
        self._orphan = False
        self._persist_backoff = 0
        self._keepalive_sent = 0
        self._rtt_timing: tuple[int, float] | None = None  # (sequence, sent at), Karn's rule
        self._ack_now = False
        self._unacked = 0  # bytes received in order since our last ACK
        self._probe = False
        self._control: list[TcpSegment] = []  # RSTs and duplicate ACKs, ahead of the rest
        self._stamped = NO_OPTIONS  # the last timestamps-only options made (see _options)
        self._events: list[TcpEvent] = []
        self._want_writable = False
        self._challenged_at = -CHALLENGE_ACK_INTERVAL
        self._heard_at = now
        self._now = now

    @property
    def send_space(self) -> int:
        return self.config.send_buffer - len(self._send_buf)

    # -- the ends --------------------------------------------------------------------------

    def _enter_time_wait(self, now: float) -> None:
        self.state = TcpState.TIME_WAIT
        self._rto_at = self._persist_at = self._keepalive_at = self._fin_wait_2_at = None
        self._time_wait_at = now + self.config.time_wait

    def _finish(self, event: TcpEvent) -> None:
        self.state = TcpState.CLOSED
        self._rto_at = self._delack_at = self._persist_at = None
        self._keepalive_at = self._time_wait_at = self._fin_wait_2_at = None
        self._ack_now = self._probe = False
        self._events.append(event)

    # -- what every segment carries --------------------------------------------------------

    def _segment(self, seq: int, flags: int, now: float | None = None) -> TcpSegment:
        options = self._options(self._now if now is None else now)
        return self._finish_segment(seq, flags, options, b"")

    def _finish_segment(self, seq: int, flags: int, options: Options, payload: bytes) -> TcpSegment:
        """Stamp the window and the acknowledgment; the ACK owed is now sent."""
        self._ack_now = False
        self._delack_at = None
        self._unacked = 0
        window = self._advertise()
        return TcpSegment(
            self.local.port, self.remote.port, seq & MASK, self.rcv_nxt & MASK, flags,
            window, options, payload,
        )  # fmt: skip

    def _bare(self, seq: int, flags: int) -> TcpSegment:
        """A segment outside the connection's numbering (the RST for a bad SYN-ACK)."""
        return TcpSegment(self.local.port, self.remote.port, seq, 0, flags, 0)

    def _options(self, now: float) -> Options:
        sacking = self.sack and self._ooo
        if not self.timestamps and not sacking:
            return NO_OPTIONS
        timestamps = (self._tsval(now), self.ts_recent) if self.timestamps else None
        if not sacking:  # the segments of one poll share their stamps: one Options for all
            if self._stamped.timestamps != timestamps:
                self._stamped = Options(timestamps=timestamps)
            return self._stamped
        limit = 3 if self.timestamps else 4
        sack = tuple((left & MASK, right & MASK) for left, right in self._ooo.blocks(limit))
        return Options(timestamps=timestamps, sack=sack)

    def _tsval(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & MASK

    def _free_edge(self) -> int:
        """The right edge the receive buffer's free space would allow."""
        return self.rcv_nxt + max(self.config.receive_buffer - len(self._recv_buf), 0)

    def _window_grew_enough(self) -> bool:
        """Receiver-side silly window avoidance (RFC 9293 3.8.6.2.2): a window update only once
        the window can open by a segment or half the buffer."""
        step = min(self.config.receive_buffer // 2, self.mss)
        return self._free_edge() - self.rcv_adv >= step

    def _advertise(self) -> int:
        """The window field to send, never shrinking the right edge already offered."""
        if self._window_grew_enough():
            self.rcv_adv = max(self.rcv_adv, self._free_edge())
        window = max(self.rcv_adv - self.rcv_nxt, 0)
        limit = MAX_WINDOW << self.rcv_scale
        window = min(window, limit)
        field = -(-window >> self.rcv_scale)  # rounded up: the edge must not move left
        self.rcv_adv = self.rcv_nxt + (field << self.rcv_scale)
        return field
