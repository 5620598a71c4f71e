"""One TCP connection (RFC 9293), sans-IO: segments in, segments out, `now` passed in, one next
deadline. Where the RFCs leave room it chooses as Linux does: initial window 10 segments (RFC 6928),
delayed ACKs of 40 ms, at least every second full segment, RTO min 200 ms, SACK (RFC 2018, 6675)
and timestamps and window scaling (RFC 7323) offered, NewReno congestion control (RFC 5681, 6582).

`TcpConnection` is the application's side (open, send, read, close) on top of the parts that act
on the connection's variables (tcp_tcb), each a class built on the one before: tcp_ack what
acknowledgments do, tcp_input takes segments in, tcp_output makes segments out, tcp_timers fires
the deadlines. One line of classes rather than mixins joined at the end: mypyc, which compiles
the stack (wgpy/compiled.py), takes single inheritance only. The names other modules use
are importable from here.

Whatever a segment holds, `receive` never raises: a segment that fails a check is dropped and
counted in `drops` by `TcpDrop`. Misuse of the API (sending after close) raises `TcpError`.
"""

from __future__ import annotations

from wgpy.errors import WgpyError
from wgpy.netstack.tcp_ack import DUPTHRESH
from wgpy.netstack.tcp_config import DEFAULT_CONFIG, TcpConfig
from wgpy.netstack.tcp_events import IcmpKind, TcpDrop, TcpEvent
from wgpy.netstack.tcp_input import RTO_AFTER_SYN_TIMEOUT
from wgpy.netstack.tcp_segment import ACK, RST, TcpSegment
from wgpy.netstack.tcp_states import ON_CLOSE, SYNCHRONIZED, WRITABLE, TcpState
from wgpy.netstack.tcp_tcb import (
    CHALLENGE_ACK_INTERVAL,
    DEFAULT_MSS,
    MASK,
    MAX_WINDOW_SCALE,
    Address,
    unwrap,
    window_scale_for,
)
from wgpy.netstack.tcp_timers import TcpTimers

__all__ = [
    "CHALLENGE_ACK_INTERVAL",
    "DEFAULT_CONFIG",
    "DEFAULT_MSS",
    "DUPTHRESH",
    "MASK",
    "MAX_WINDOW_SCALE",
    "RTO_AFTER_SYN_TIMEOUT",
    "Address",
    "IcmpKind",
    "TcpConfig",
    "TcpConnection",
    "TcpDrop",
    "TcpError",
    "TcpEvent",
    "TcpState",
    "unwrap",
    "window_scale_for",
]


class TcpError(WgpyError):
    """The application used a connection in a way its state does not allow."""


class TcpConnection(TcpTimers):
    """One connection: opened by `connect` or `accept`, driven by `receive`, `segments_to_send`
    and `handle_timer` at `next_deadline`, used through `send`, `receive_data` and `close`."""

    __slots__ = ()

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

    # -- the application's side ------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue what fits of `data` in the send buffer; how many bytes it took. When it took
        less than all, WRITABLE_AGAIN follows once acknowledgments make room."""
        if self._fin_seq is not None or self.state not in WRITABLE:
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
    def ack_due(self) -> bool:
        """An ACK waits for segments_to_send (after a read: a window update)."""
        return self._ack_now

    @property
    def at_eof(self) -> bool:
        """The peer's FIN arrived and everything before it was read."""
        return self._peer_fin is not None and self.rcv_nxt > self._peer_fin and not self._recv_buf

    def close(self, *, orphan: bool = False) -> None:
        """Send FIN after the queued data (RFC 9293 3.10.4). A connection still in SYN-SENT just
        ends. An `orphan` (a full close, not shutdown(SHUT_WR): nobody will read again) waits in
        FIN-WAIT-2 for the peer's FIN at most `fin_wait_2` seconds, as Linux does."""
        if self.state is TcpState.SYN_SENT:
            self._finish(TcpEvent.CLOSED)
            return
        if self.state in ON_CLOSE and self._fin_seq is None:
            self._fin_seq = self._send_seq + len(self._send_buf)
            self.state = ON_CLOSE[self.state]
        if orphan and not self._orphan:
            self._orphan = True
            self._arm_fin_wait_2(self._now)

    def abort(self) -> None:
        """Send RST and end now (RFC 9293 3.10.5)."""
        if self.state in SYNCHRONIZED:
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
