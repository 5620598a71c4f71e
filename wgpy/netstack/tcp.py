"""One TCP connection (RFC 9293), sans-IO: segments in, segments out, `now` passed in, one next
deadline. Where the RFCs leave room it chooses as Linux does: initial window 10 segments (RFC 6928),
delayed ACKs of 40 ms, at least every second full segment, RTO min 200 ms, SACK (RFC 2018, 6675)
and timestamps and window scaling (RFC 7323) offered, NewReno congestion control (RFC 5681, 6582).

Sequence numbers are kept unwrapped (plain integers that never wrap, starting at ISS and IRS) and
reduced modulo 2**32 only on the wire, so comparisons are plain `<`. RFC 9293's names: SND.UNA is
`snd_una`, SND.NXT `snd_nxt` (rewound to SND.UNA after a timeout, go-back-N, with `snd_max` the
highest ever sent), SND.WND `snd_wnd`, RCV.NXT `rcv_nxt`, and the right edge of the window last
advertised `rcv_adv` (RCV.NXT + RCV.WND).

Whatever a segment holds, `receive` never raises: a segment that fails a check is dropped and
counted in `drops` by `TcpDrop`. Misuse of the API (sending after close) raises `TcpError`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Final, NamedTuple

from wgpy.errors import WgpyError
from wgpy.netstack.tcp_congestion import NewReno
from wgpy.netstack.tcp_reassembly import Reassembly
from wgpy.netstack.tcp_rtt import RttEstimator
from wgpy.netstack.tcp_scoreboard import Scoreboard
from wgpy.netstack.tcp_segment import (
    ACK,
    FIN,
    NO_OPTIONS,
    PSH,
    RST,
    SYN,
    Options,
    TcpSegment,
    options_length,
)

MASK: Final = 0xFFFFFFFF
_HALF: Final = 1 << 31
DEFAULT_MSS: Final = 536  # RFC 9293 3.7.1: what a peer that sends no MSS option can take
DUPTHRESH: Final = 3  # RFC 5681 3.2
MAX_WINDOW_SCALE: Final = 14  # RFC 7323 2.3
_MAX_WINDOW: Final = 0xFFFF
CHALLENGE_ACK_INTERVAL: Final = 0.5  # seconds
RTO_AFTER_SYN_TIMEOUT: Final = 3.0  # RFC 6298 5.7, Linux's TCP_TIMEOUT_FALLBACK


class Address(NamedTuple):
    host: str  # textual IPv4 or IPv6 address
    port: int


class TcpState(Enum):
    CLOSED = "CLOSED"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


class TcpEvent(Enum):
    """What the application hears. Every connection ends with exactly one of CLOSED, RESET,
    REFUSED and TIMED_OUT, and is then in TcpState.CLOSED."""

    ESTABLISHED = "established"
    DATA_READABLE = "data readable"
    WRITABLE_AGAIN = "send buffer has room again"
    PEER_CLOSED = "peer sent FIN: no more data will arrive"
    CLOSED = "closed"
    RESET = "reset by the peer"
    REFUSED = "refused (RST or ICMP unreachable answered the SYN)"
    TIMED_OUT = "timed out"


class TcpDrop(Enum):
    """Why a segment that reached this connection was dropped."""

    CLOSED = "segment for a closed connection"
    OUT_OF_WINDOW = "sequence number outside the receive window (ACK sent)"
    RST_OUT_OF_WINDOW = "RST with a sequence number outside the window"
    RST_NOT_EXACT = "RST in the window but not at RCV.NXT (challenge ACK sent, RFC 5961 3.2)"
    SYN_SYNCHRONIZED = "SYN on a synchronized connection (challenge ACK sent, RFC 5961 4.2)"
    NO_ACK = "segment without ACK on a synchronized connection"
    ACK_UNSENT = "acknowledges data not yet sent (ACK sent, RFC 5961 5.2)"
    ACK_TOO_OLD = "acknowledgment below SND.UNA by more than the window (RFC 5961 5.2)"
    BAD_SYN_ACK = "SYN-ACK or RST that does not acknowledge our SYN"
    REASSEMBLY_FULL = "out-of-order segment beyond the bound on runs held"
    PAWS = "timestamp older than the last in-order one (RFC 7323 PAWS)"


class IcmpKind(Enum):
    """The ICMP and ICMPv6 errors the stack hands a connection (RFC 5927 section 2)."""

    PORT_UNREACHABLE = "port unreachable"
    PROTOCOL_UNREACHABLE = "protocol unreachable"
    HOST_UNREACHABLE = "host unreachable"
    NET_UNREACHABLE = "network unreachable"
    ADMIN_PROHIBITED = "administratively prohibited"


class TcpError(WgpyError):
    """The application used a connection in a way its state does not allow."""


@dataclass(frozen=True, slots=True)
class TcpConfig:
    send_buffer: int = 1 << 20
    receive_buffer: int = 1 << 20
    initial_window: int = 10  # segments, RFC 6928 and Linux
    delayed_ack: float = 0.040  # Linux's TCP_DELACK_MIN
    rto_initial: float = 1.0  # RFC 6298 2.1
    rto_min: float = 0.2  # Linux's TCP_RTO_MIN
    rto_max: float = 120.0  # Linux's TCP_RTO_MAX
    syn_retries: int = 6  # Linux's tcp_syn_retries
    max_retries: int = 15  # Linux's tcp_retries2
    time_wait: float = 60.0  # 2*MSL with Linux's TCP_TIMEWAIT_LEN
    fin_wait_2: float = 60.0  # an orphan's wait for the peer's FIN, Linux's tcp_fin_timeout
    keepalive: bool = False  # SO_KEEPALIVE, off by default as on Linux
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_probes: int = 9
    sack: bool = True
    timestamps: bool = True
    window_scaling: bool = True


DEFAULT_CONFIG: Final = TcpConfig()

_SYNCHRONIZED: Final = frozenset(TcpState) - {TcpState.CLOSED, TcpState.SYN_SENT}
# States whose queued data and FIN still go out (once the SYN is acknowledged).
_SENDING: Final = frozenset(
    {TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT_1, TcpState.CLOSING,
     TcpState.LAST_ACK}
)  # fmt: skip
# States that still take data from the peer (its FIN not yet seen).
_RECEIVING: Final = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2})
_WRITABLE: Final = frozenset(
    {TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.CLOSE_WAIT}
)
_ON_FIN: Final = {
    TcpState.ESTABLISHED: TcpState.CLOSE_WAIT,
    TcpState.FIN_WAIT_1: TcpState.CLOSING,
    TcpState.FIN_WAIT_2: TcpState.TIME_WAIT,
}
_ON_FIN_ACKED: Final = {
    TcpState.FIN_WAIT_1: TcpState.FIN_WAIT_2,
    TcpState.CLOSING: TcpState.TIME_WAIT,
    TcpState.LAST_ACK: TcpState.CLOSED,
}
_ON_CLOSE: Final = {
    TcpState.SYN_RECEIVED: TcpState.SYN_RECEIVED,  # the FIN waits for the handshake's end
    TcpState.ESTABLISHED: TcpState.FIN_WAIT_1,
    TcpState.CLOSE_WAIT: TcpState.LAST_ACK,
}


def window_scale_for(buffer: int) -> int:
    """The smallest shift that lets a 16-bit window field cover `buffer` bytes."""
    shift = 0
    while buffer >> shift > _MAX_WINDOW and shift < MAX_WINDOW_SCALE:
        shift += 1
    return shift


def unwrap(wire: int, near: int) -> int:
    """The unwrapped sequence number within 2**31 of `near` that is `wire` modulo 2**32."""
    delta = (wire - near) & MASK
    return near + delta - (1 << 32 if delta >= _HALF else 0)


class TcpConnection:
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
        # order, and segments sent again.
        self.bytes_acked = self.bytes_received = self.retransmitted = 0
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

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def connect(
        cls, local: Address, remote: Address, now: float, *, iss: int, mss: int,
        config: TcpConfig = DEFAULT_CONFIG,
    ) -> TcpConnection:  # fmt: skip
        """Active open: the SYN is queued for `segments_to_send`."""
        conn = cls(local, remote, now, iss=iss, mss=mss, config=config, state=TcpState.SYN_SENT)
        if config.window_scaling:
            conn.rcv_scale = window_scale_for(config.receive_buffer)
        return conn

    @classmethod
    def accept(
        cls, syn: TcpSegment, local: Address, remote: Address, now: float, *, iss: int,
        mss: int, config: TcpConfig = DEFAULT_CONFIG,
    ) -> TcpConnection:  # fmt: skip
        """Passive open on a listener's SYN: the SYN-ACK is queued for `segments_to_send`."""
        conn = cls(local, remote, now, iss=iss, mss=mss, config=config, state=TcpState.SYN_RECEIVED)
        conn._take_syn(syn)
        return conn

    def _take_syn(self, syn: TcpSegment) -> None:
        """The peer's SYN: IRS, and the options both sides offered (RFC 7323, RFC 2018)."""
        self.irs = syn.seq
        self.rcv_nxt = syn.seq + 1
        self.rcv_adv = self.rcv_nxt + min(self.config.receive_buffer, _MAX_WINDOW)
        self.snd_wnd = self.max_snd_wnd = syn.window  # never scaled in a SYN (RFC 7323 2.2)
        self.snd_wl1, self.snd_wl2 = self.rcv_nxt, self.snd_una
        options = syn.options
        self.mss = min(self.our_mss, options.mss if options.mss else DEFAULT_MSS)
        self.congestion = NewReno.initial(self.mss, self.config.initial_window)
        offered = options.window_scale
        self.window_scaling = self.config.window_scaling and offered is not None
        if self.window_scaling and offered is not None:
            self.snd_scale = min(offered, MAX_WINDOW_SCALE)
            self.rcv_scale = window_scale_for(self.config.receive_buffer)
        else:
            self.snd_scale = self.rcv_scale = 0
        self.sack = self.config.sack and options.sack_permitted
        if self.config.timestamps and options.timestamps is not None:
            self.timestamps = True
            self.ts_recent = options.timestamps[0]

    # -- the application's side ------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue what fits of `data` in the send buffer; how many bytes it took. When it took
        less than all, WRITABLE_AGAIN follows once acknowledgments make room."""
        if self._fin_seq is not None or self.state not in _WRITABLE:
            raise TcpError(f"cannot send in {self.state.value} or after close()")
        taken = min(len(data), self.config.send_buffer - len(self._send_buf))
        if taken < len(data):
            self._send_buf += memoryview(data)[:taken]  # no copy of the part first
            self._want_writable = True
        else:
            self._send_buf += data
        return taken

    def receive_data(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` of what arrived in order; b"" when nothing waits."""
        if max_bytes >= len(self._recv_buf):  # the common case: all of it, one copy
            data = bytes(self._recv_buf)
            self._recv_buf.clear()
        else:
            data = bytes(self._recv_buf[:max_bytes])
            del self._recv_buf[:max_bytes]
        if data and self._window_grew_enough():
            self._ack_now = True  # a window update (RFC 9293 3.8.6.2.2)
        return data

    @property
    def readable(self) -> int:
        return len(self._recv_buf)

    @property
    def at_eof(self) -> bool:
        """The peer's FIN arrived and everything before it was read."""
        return self._peer_fin is not None and self.rcv_nxt > self._peer_fin and not self._recv_buf

    @property
    def send_space(self) -> int:
        return self.config.send_buffer - len(self._send_buf)

    def close(self, *, orphan: bool = False) -> None:
        """Send FIN after the queued data (RFC 9293 3.10.4). A connection still in SYN-SENT just
        ends. An `orphan` (a full close, not shutdown(SHUT_WR): nobody will read again) waits in
        FIN-WAIT-2 for the peer's FIN at most `fin_wait_2` seconds, as Linux does."""
        if self.state is TcpState.SYN_SENT:
            self._finish(TcpEvent.CLOSED)
            return
        if self.state in _ON_CLOSE and self._fin_seq is None:
            self._fin_seq = self._send_seq + len(self._send_buf)
            self.state = _ON_CLOSE[self.state]
        if orphan and not self._orphan:
            self._orphan = True
            self._arm_fin_wait_2(self._now)

    def abort(self) -> None:
        """Send RST and end now (RFC 9293 3.10.5)."""
        if self.state in _SYNCHRONIZED:
            self._control.append(self._segment(self.snd_max, RST | ACK))
        if self.state is not TcpState.CLOSED:
            self._finish(TcpEvent.CLOSED)

    def icmp_error(self, kind: IcmpKind) -> None:
        """An ICMP error about this connection: it refuses an opening connection, as Linux does;
        later it is a soft error, reported if the connection then times out (RFC 5927 4.1)."""
        if self.state is TcpState.SYN_SENT:
            self.error = kind
            self._finish(TcpEvent.REFUSED)
        elif self.state is not TcpState.CLOSED:
            self.soft_error = kind

    def events(self) -> list[TcpEvent]:
        events, self._events = self._events, []
        return events

    # -- segments in -----------------------------------------------------------------------

    def receive(self, segment: TcpSegment, now: float) -> None:
        self._now = now
        if self._predicted(segment, now):
            return
        if self.state is TcpState.CLOSED:
            self.drops[TcpDrop.CLOSED] += 1
        elif self.state is TcpState.SYN_SENT:
            self._receive_in_syn_sent(segment, now)
        else:
            self._receive_synchronized(segment, now)

    def _predicted(self, segment: TcpSegment, now: float) -> bool:
        """Header prediction (Van Jacobson's, Linux's tcp_rcv_established fast path): the next
        in-order data segment of a bulk transfer, acknowledging nothing new, with the window
        unchanged, no SACK blocks and a timestamp not older than the last, is taken in a few
        steps; whatever else it may be, `_receive_synchronized` decides. False when it did not
        take it."""
        payload = segment.payload
        stamps = segment.options.timestamps
        if (
            not payload
            or segment.flags & ~PSH != ACK
            or self.state is not TcpState.ESTABLISHED
            or segment.seq != self.rcv_nxt & MASK
            or segment.ack != self.snd_una & MASK
            or segment.window << self.snd_scale != self.snd_wnd
            or self.rcv_nxt + len(payload) > self.rcv_adv
            or segment.options.sack
            or self._peer_fin is not None
            or self._persist_at is not None
            or self.config.keepalive
        ):
            return False
        if self.timestamps:
            if stamps is None or (stamps[0] - self.ts_recent) & MASK >= _HALF:
                return False
            self.ts_recent = stamps[0]
        self._heard_at = now
        seq, ack = self.rcv_nxt, self.snd_una
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            self.snd_wl1, self.snd_wl2 = seq, ack
        self._take_in_order(payload, now)
        return True

    def _receive_in_syn_sent(self, segment: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.3."""
        flags = segment.flags
        if flags & ACK and segment.ack != (self.iss + 1) & MASK:
            if not flags & RST:
                self._control.append(self._bare(segment.ack, RST))
            self.drops[TcpDrop.BAD_SYN_ACK] += 1
            return
        if flags & RST:
            if flags & ACK:
                self._finish(TcpEvent.REFUSED)
            else:
                self.drops[TcpDrop.BAD_SYN_ACK] += 1
            return
        if not flags & SYN:
            self.drops[TcpDrop.NO_ACK] += 1
            return
        self._take_syn(segment)
        if flags & ACK:
            self._sample_rtt(now, segment)
            self.snd_una = self.snd_nxt = self.iss + 1
            self._establish(now)
            self._rto_at, self.retries, self.rtt.backoff = None, 0, 0
            self._ack_now = True
        else:  # simultaneous open: our SYN again, now with an ACK
            self.state = TcpState.SYN_RECEIVED
            self.snd_nxt = self.iss

    def _receive_synchronized(self, segment: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.4, with RFC 5961's checks on RST, SYN and ACK."""
        seq = unwrap(segment.seq, self.rcv_nxt)
        flags = segment.flags
        if self._too_old(segment):
            self.drops[TcpDrop.PAWS] += 1
            self._ack_now = True
            return
        if not self._acceptable(seq, segment.length):
            if flags & RST:
                self.drops[TcpDrop.RST_OUT_OF_WINDOW] += 1
                return
            self.drops[TcpDrop.OUT_OF_WINDOW] += 1
            self._ack_now = True
            if self.state is TcpState.TIME_WAIT and flags & FIN:
                self._time_wait_at = now + self.config.time_wait  # its FIN again: re-ACK, wait
            return
        self._heard_at = now
        if flags & RST:
            if seq == self.rcv_nxt:
                self._finish(TcpEvent.RESET)
            else:
                self.drops[TcpDrop.RST_NOT_EXACT] += 1
                self._challenge(now)
            return
        if flags & SYN:
            self.drops[TcpDrop.SYN_SYNCHRONIZED] += 1
            self._challenge(now)
            return
        if not flags & ACK:
            self.drops[TcpDrop.NO_ACK] += 1
            return
        ack = unwrap(segment.ack, self.snd_una)
        if ack > self.snd_max:
            self.drops[TcpDrop.ACK_UNSENT] += 1
            self._challenge(now)
            return
        if ack < self.snd_una - max(self.max_snd_wnd, _MAX_WINDOW):
            self.drops[TcpDrop.ACK_TOO_OLD] += 1
            return
        if self.state is TcpState.SYN_RECEIVED:
            if ack <= self.iss:
                self.drops[TcpDrop.BAD_SYN_ACK] += 1
                return
            self._establish(now)
        if self.timestamps and segment.options.timestamps is not None and seq <= self.rcv_nxt:
            self.ts_recent = segment.options.timestamps[0]  # RFC 7323 4.3
        if self.config.keepalive:
            self._keepalive_at = now + self.config.keepalive_idle
            self._keepalive_sent = 0
        self._process_ack(segment, seq, ack, now)
        if self.state is not TcpState.CLOSED:
            self._process_data(segment, seq, now)

    def _too_old(self, segment: TcpSegment) -> bool:
        """PAWS (RFC 7323 5.3 R1): a timestamp older than TS.Recent marks an old duplicate,
        even one whose sequence number, after a wrap, looks current. RST is exempt, as in Linux."""
        stamps = segment.options.timestamps
        if not self.timestamps or stamps is None or segment.flags & RST:
            return False
        return (stamps[0] - self.ts_recent) & MASK >= _HALF

    def _challenge(self, now: float) -> None:
        """A challenge ACK, at most one per CHALLENGE_ACK_INTERVAL (RFC 5961 7, Linux's
        tcp_invalid_ratelimit), so forged segments cannot make us flood."""
        if now - self._challenged_at >= CHALLENGE_ACK_INTERVAL:
            self._challenged_at = now
            self._ack_now = True

    def _acceptable(self, seq: int, length: int) -> bool:
        """RFC 9293 3.10.7.4's four cases, in unwrapped numbers."""
        window = max(self.rcv_adv - self.rcv_nxt, 0)
        if length == 0:
            return seq == self.rcv_nxt if window == 0 else self.rcv_nxt <= seq < self.rcv_adv
        if window == 0:
            return False
        end = seq + length - 1
        return self.rcv_nxt <= seq < self.rcv_adv or self.rcv_nxt <= end < self.rcv_adv

    def _establish(self, now: float) -> None:
        if self.retries and self.rtt.srtt is None:  # the SYN went again: no sample (Karn)
            self.rtt.rto_initial = max(self.rtt.rto_initial, RTO_AFTER_SYN_TIMEOUT)
        self.state = TcpState.FIN_WAIT_1 if self._fin_seq is not None else TcpState.ESTABLISHED
        self._events.append(TcpEvent.ESTABLISHED)
        if self.config.keepalive:
            self._keepalive_at = now + self.config.keepalive_idle

    # -- acknowledgments -------------------------------------------------------------------

    def _process_ack(self, segment: TcpSegment, seq: int, ack: int, now: float) -> None:
        news = self._take_sack(segment.options)
        window = segment.window << self.snd_scale
        if ack > self.snd_una:
            self._advance(ack, segment, now)
        elif (
            ack == self.snd_una
            and self.snd_max > self.snd_una
            and not segment.payload
            and not segment.flags & (SYN | FIN)
            and (news if self.sack else window == self.snd_wnd)
        ):
            self.dupacks += 1
        if not self.in_recovery and self.snd_una >= self.recover and self._seems_lost():
            self._enter_recovery()
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            self.snd_wnd, self.snd_wl1, self.snd_wl2 = window, seq, ack
            self.max_snd_wnd = max(self.max_snd_wnd, window)
        if self.snd_wnd:
            self._persist_at, self._persist_backoff = None, 0
        if self._fin_seq is not None and self.snd_una > self._fin_seq:
            self._fin_acked(now)

    def _take_sack(self, options: Options) -> bool:
        news = False
        if self.sack:
            for left, right in options.sack:
                low = max(unwrap(left, self.snd_una), self.snd_una)
                high = min(unwrap(right, self.snd_una), self.snd_max)
                news |= self.scoreboard.add(low, high)
        return news

    def _advance(self, ack: int, segment: TcpSegment, now: float) -> None:
        acked = ack - self.snd_una
        flight = self.snd_max - self.snd_una
        if self._send_seq < ack:
            drop = min(ack, self._send_seq + len(self._send_buf)) - self._send_seq
            del self._send_buf[:drop]
            self._send_seq += drop
            self.bytes_acked += drop
        self._sample_rtt(now, segment, ack)
        self.snd_una = ack
        self.snd_nxt = max(self.snd_nxt, ack)
        self.scoreboard.advance(ack)
        self.retries = self.rtt.backoff = 0
        self._rto_at = now + self.rtt.rto if self.snd_max > ack else None
        self._grow_window(acked, ack, flight)
        if self._want_writable and self.send_space >= self.config.send_buffer // 2:
            self._want_writable = False
            self._events.append(TcpEvent.WRITABLE_AGAIN)

    def _sample_rtt(self, now: float, segment: TcpSegment, ack: int | None = None) -> None:
        """RFC 7323 4.1 from the echoed timestamp, else RFC 6298 3 timing one segment at a time
        and never a retransmitted one (Karn)."""
        echoed = segment.options.timestamps
        if self.timestamps and echoed is not None and echoed[1]:
            self.rtt.sample(((self._tsval(now) - echoed[1]) & MASK) / 1000)
        elif self._rtt_timing is not None and (ack is None or ack >= self._rtt_timing[0]):
            self.rtt.sample(now - self._rtt_timing[1])
            self._rtt_timing = None

    def _grow_window(self, acked: int, ack: int, flight: int) -> None:
        self.dupacks = 0
        if not self.in_recovery:
            self.congestion.on_ack(acked, flight)
        elif ack >= self.recover:  # a full acknowledgment (RFC 6582 3.2 step 3)
            self.in_recovery = False
            self.congestion.on_recovered()

    def _seems_lost(self) -> bool:
        """RFC 5681 3.2's three duplicate ACKs, or RFC 6675 4's IsLost(SND.UNA): SACKs for
        DupThresh segments above it (what one ACK for a batch of segments says)."""
        return self.dupacks >= DUPTHRESH or self.scoreboard.sacked >= DUPTHRESH * self.mss

    def _enter_recovery(self) -> None:
        """RFC 6675 5 (RFC 6582 without SACK): halve, and retransmit from SND.UNA."""
        self.congestion.on_loss(self.snd_max - self.snd_una)
        self.in_recovery = True
        self.recover = self.snd_max
        self.high_rxt = self.snd_una
        self._rtt_timing = None

    def _fin_acked(self, now: float) -> None:
        after = _ON_FIN_ACKED.get(self.state)
        if after is TcpState.CLOSED:
            self._finish(TcpEvent.CLOSED)
        elif after is TcpState.TIME_WAIT:
            self._enter_time_wait(now)
        elif after is not None:
            self.state = after
            self._arm_fin_wait_2(now)

    def _arm_fin_wait_2(self, now: float) -> None:
        if self._orphan and self.state is TcpState.FIN_WAIT_2:
            self._fin_wait_2_at = now + self.config.fin_wait_2

    # -- data and FIN ----------------------------------------------------------------------

    def _process_data(self, segment: TcpSegment, seq: int, now: float) -> None:
        if self.state not in _RECEIVING:
            return
        payload = segment.payload
        fin_at = seq + len(payload) if segment.flags & FIN else None
        if seq < self.rcv_nxt:
            payload = payload[self.rcv_nxt - seq :]
            seq = self.rcv_nxt
        if seq + len(payload) > self.rcv_adv:
            payload = payload[: max(self.rcv_adv - seq, 0)]
            fin_at = None  # beyond the window: it will come again
        if payload:
            if seq == self.rcv_nxt:
                self._take_in_order(payload, now)
            elif self._ooo.insert(seq, payload):
                # A duplicate ACK for each, with SACK blocks, even in a batch (RFC 5681 4.2).
                self._control.append(self._segment(self.snd_max, ACK, now))
            else:
                self.drops[TcpDrop.REASSEMBLY_FULL] += 1
                self._ack_now = True
        if fin_at is not None:
            self._peer_fin = fin_at
        if self._peer_fin is not None and self._peer_fin == self.rcv_nxt:
            self._take_fin(now)

    def _take_in_order(self, payload: bytes, now: float) -> None:
        self._recv_buf += payload
        self.rcv_nxt += len(payload)
        filled = self._ooo.pop_from(self.rcv_nxt) if self._ooo else b""
        self._recv_buf += filled
        self.rcv_nxt += len(filled)
        self.bytes_received += len(payload) + len(filled)
        if TcpEvent.DATA_READABLE not in self._events:
            self._events.append(TcpEvent.DATA_READABLE)
        self._unacked += len(payload) + len(filled)
        if filled or self._ooo or self._unacked >= 2 * self.mss:
            self._ack_now = True  # a hole filled, or a second full segment (RFC 5681 4.2)
        elif self._delack_at is None:
            self._delack_at = now + self.config.delayed_ack

    def _take_fin(self, now: float) -> None:
        self.rcv_nxt += 1
        self._ack_now = True
        self._events.append(TcpEvent.PEER_CLOSED)
        after = _ON_FIN[self.state]
        if after is TcpState.TIME_WAIT:
            self._enter_time_wait(now)
        else:
            self.state = after

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

    # -- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [
            at
            for at in (self._rto_at, self._delack_at, self._persist_at, self._keepalive_at,
                       self._time_wait_at, self._fin_wait_2_at)
            if at is not None
        ]  # fmt: skip
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        self._now = now
        for at in (self._time_wait_at, self._fin_wait_2_at):
            if at is not None and now >= at:
                self._finish(TcpEvent.CLOSED)
                return
        if self._rto_at is not None and now >= self._rto_at:
            self._retransmission_timeout(now)
        if self._delack_at is not None and now >= self._delack_at:
            self._delack_at = None
            self._ack_now = True
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_backoff += 1
            self._persist_at = now + min(
                self.rtt.rto * (1 << self._persist_backoff), self.config.rto_max
            )
            self._probe = True
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive(now)

    def _retransmission_timeout(self, now: float) -> None:
        """RFC 6298 5.4-5.7 and RFC 5681 3.1: back off, collapse the window to one segment and
        resend from SND.UNA (skipping what the receiver SACKed)."""
        opening, heard = self.snd_una == self.iss, now - self._heard_at <= self.config.rto_max
        if opening or self.snd_wnd or not heard:
            self.retries += 1  # a peer that answers with a zero window is alive (as Linux)
        limit = self.config.max_retries if self.snd_una > self.iss else self.config.syn_retries
        if self.retries > limit:
            self._finish(TcpEvent.TIMED_OUT)
            return
        if self.snd_una > self.iss:
            self.congestion.on_timeout(self.snd_max - self.snd_una)
        self.in_recovery = False
        self.dupacks = 0
        self.recover = self.snd_max
        self.snd_nxt = self.snd_una
        self._rtt_timing = None
        self.rtt.backoff += 1
        self._rto_at = now + self.rtt.rto

    def _keepalive(self, now: float) -> None:
        if self.state not in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            self._keepalive_at = None
        elif self._keepalive_sent >= self.config.keepalive_probes:
            self._finish(TcpEvent.TIMED_OUT)
        else:
            self._keepalive_sent += 1
            self._probe = True
            self._keepalive_at = now + self.config.keepalive_interval

    # -- segments out ----------------------------------------------------------------------

    def segments_to_send(self, now: float) -> list[TcpSegment]:
        self._now = now
        out, self._control = self._control, []
        if self.state is TcpState.CLOSED:
            return out
        if self.snd_nxt == self.iss:
            if self.retries == 0:
                self._rtt_timing = (self.iss + 1, now)
            out.append(self._syn(now))
            self._sent_through(self.iss + 1, now)
            return out
        if self.state is TcpState.SYN_RECEIVED and self._ack_now:
            self.snd_nxt = self.iss  # the peer did not get our SYN-ACK: send it again
            out.append(self._syn(now))
            self._sent_through(self.iss + 1, now)
            return out
        if self.state in _SENDING and self.snd_una > self.iss:
            self._send_data(now, out)
        if self._probe:
            self._probe = False
            out.append(self._segment(self.snd_una - 1, ACK, now))  # Linux's probe
        elif self._ack_now:  # owed, and no segment since carried it (each one clears it)
            out.append(self._segment(self.snd_max, ACK, now))
        return out

    def _send_data(self, now: float, out: list[TcpSegment]) -> None:
        while True:
            hole = self._next_hole() if self.in_recovery else None
            first = hole is not None and hole[0] == self.snd_una and self.high_rxt <= self.snd_una
            if not first and self._pipe() >= self.congestion.cwnd:
                break
            if hole is not None:
                segment = self._data_segment(hole[0], hole[1], now)
                self.high_rxt = hole[0] + segment.length
                out.append(segment)
                continue
            if not self.in_recovery and self._full_segments(now, out):
                continue  # the checks again, for what follows the run
            new = self._next_new_segment(now)
            if new is None:
                break
            out.append(new)
        waiting = self._send_seq + len(self._send_buf) > self.snd_nxt
        if (
            waiting
            and self.snd_wnd == 0
            and self._persist_at is None
            and self.snd_max == self.snd_una
        ):
            self._persist_at = now + self.rtt.rto  # zero window: probe (RFC 9293 3.8.6.1)

    def _full_segments(self, now: float, out: list[TcpSegment]) -> bool:
        """Bulk sending: the full-sized segments of new data, none the last of the data, that
        window and cwnd allow, each exactly the one _next_new_segment would build, in fewer
        steps (one poll's segments share options, window and acknowledgment). False when the
        next segment is not such a one."""
        nxt, mss = self.snd_nxt, self.mss
        # Each one's end at SND.NXT + MSS within the window and before the end of the data: no
        # sliver, no PSH, no FIN (_next_new_segment's rules).
        last_start = min(self.snd_una + self.snd_wnd, self._send_seq + len(self._send_buf)) - mss
        cwnd_end = self.snd_una + self.congestion.cwnd  # sent while the pipe is below cwnd
        if nxt != self.snd_max or nxt > last_start or nxt >= cwnd_end or self.scoreboard:
            return False
        options = self._options(now)
        room = mss - options_length(options)
        first = nxt
        with memoryview(self._send_buf) as view:
            offset = nxt - self._send_seq
            head = self._finish_segment(nxt, ACK, options, bytes(view[offset : offset + room]))
            out.append(head)
            port, remote_port, ack, window = head.src_port, head.dst_port, head.ack, head.window
            nxt += room
            while nxt <= last_start and nxt < cwnd_end:
                offset = nxt - self._send_seq
                payload = bytes(view[offset : offset + room])
                out.append(TcpSegment(port, remote_port, nxt & MASK, ack, ACK, window, options,
                                      payload))  # fmt: skip
                nxt += room
        if self._rtt_timing is None:
            self._rtt_timing = (first + room, now)
        self._sent_through(nxt, now)
        return True

    def _pipe(self) -> int:
        """RFC 6675 4's estimate of what is in the network, simplified: outside recovery what
        lies between SND.UNA and SND.NXT; in recovery, less what the receiver SACKed and the
        holes below the highest SACK not yet retransmitted (taken as lost)."""
        if not self.in_recovery:
            return self.snd_nxt - self.snd_una
        flight = self.snd_max - self.snd_una
        if not self.scoreboard:  # no SACK: each duplicate ACK says one segment left (RFC 6582)
            return max(flight - self.dupacks * self.mss, 0)
        holes = self.scoreboard.holes(max(self.high_rxt, self.snd_una))
        lost = sum(right - left for left, right in holes)
        return flight - self.scoreboard.sacked - lost

    def _next_hole(self) -> tuple[int, int] | None:
        """The next range to retransmit in recovery, at most one segment long."""
        start = max(self.high_rxt, self.snd_una)
        if self.scoreboard:
            for left, right in self.scoreboard.holes(start):
                return left, min(right, left + self.mss)
            return None
        if self.high_rxt <= self.snd_una < self.snd_max:
            return self.snd_una, min(self.snd_una + self.mss, self.snd_max)
        return None

    def _next_new_segment(self, now: float) -> TcpSegment | None:
        """The segment at SND.NXT (new data, or old after a timeout), if window and data allow."""
        nxt = self.snd_nxt
        end_of_data = self._send_seq + len(self._send_buf)
        window_end = self.snd_una + self.snd_wnd
        if nxt == self.snd_una < self.snd_max:  # the head goes again even into a zero window
            window_end = max(window_end, nxt + self.mss)
        if self.scoreboard:  # (mostly empty: no generator made per segment)
            for left, right in self.scoreboard.holes(nxt):
                nxt = left  # go-back-N skips what the receiver SACKed
                window_end = min(window_end, right)
                break
            else:
                nxt = max(nxt, self.scoreboard.highest or nxt)
        if nxt < end_of_data:
            end = min(end_of_data, window_end, nxt + self.mss)
            if end <= nxt:
                return None
            if end < end_of_data and end - nxt < self.mss and self.snd_nxt > self.snd_una:
                return None  # a window-sized sliver: wait for more window (RFC 9293 3.8.6.2.1)
            if end == end_of_data and self._fin_seq is not None:
                end += 1
        elif self._fin_seq is not None and nxt == self._fin_seq:
            end = nxt + 1
        else:
            return None
        segment = self._data_segment(nxt, end, now)
        if self._rtt_timing is None and nxt + segment.length > self.snd_max:
            self._rtt_timing = (nxt + segment.length, now)
        self._sent_through(nxt + segment.length, now)
        return segment

    def _data_segment(self, start: int, end: int, now: float) -> TcpSegment:
        """The segment carrying sequence space [start, end): data, and FIN if it reaches it.
        The payload shrinks by what the options take (RFC 6691)."""
        options = self._options(now)
        room = self.mss - options_length(options)
        end_of_data = self._send_seq + len(self._send_buf)
        data_end = min(end, end_of_data, start + room)
        offset = start - self._send_seq
        payload = bytes(self._send_buf[offset : offset + data_end - start])
        if start < self.snd_max:
            self.retransmitted += 1
        flags = ACK
        if data_end == end_of_data:
            if payload:
                flags |= PSH
            if self._fin_seq is not None and end > end_of_data:
                flags |= FIN
        return self._finish_segment(start, flags, options, payload)

    def _sent_through(self, end: int, now: float) -> None:
        self.snd_nxt = end
        self.snd_max = max(self.snd_max, end)
        if self._rto_at is None:
            self._rto_at = now + self.rtt.rto

    def _syn(self, now: float) -> TcpSegment:
        """Our SYN, or SYN-ACK: it offers what the config allows, and answers only what the
        peer's SYN offered."""
        config = self.config
        passive = self.state is TcpState.SYN_RECEIVED
        scaling = self.window_scaling if passive else config.window_scaling
        stamping = self.timestamps if passive else config.timestamps
        options = Options(
            mss=self.our_mss,
            window_scale=self.rcv_scale if scaling else None,
            sack_permitted=self.sack if passive else config.sack,
            timestamps=(self._tsval(now), self.ts_recent) if stamping else None,
        )
        flags = SYN | (ACK if passive else 0)
        window = min(config.receive_buffer, _MAX_WINDOW)
        return TcpSegment(
            self.local.port, self.remote.port, self.iss & MASK,
            self.rcv_nxt & MASK if passive else 0, flags, window, options,
        )  # fmt: skip

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
        limit = _MAX_WINDOW << self.rcv_scale
        window = min(window, limit)
        field = -(-window >> self.rcv_scale)  # rounded up: the edge must not move left
        self.rcv_adv = self.rcv_nxt + (field << self.rcv_scale)
        return field
