"""The connection's timers, each an absolute deadline: retransmission (RFC 6298 5, RFC 5681 3.1),
delayed ACK, zero-window probe (RFC 9293 3.8.6.1), keepalive (RFC 9293 3.8.4), TIME-WAIT, and an
orphan's FIN-WAIT-2. `next_deadline` is the one the caller waits for; `handle_timer` fires those
due."""

from __future__ import annotations

from wgpy.netstack.tcp_events import TcpEvent
from wgpy.netstack.tcp_output import TcpOutput
from wgpy.netstack.tcp_states import TcpState


class TcpTimers(TcpOutput):
    __slots__ = ()

    def next_deadline(self) -> float | None:
        soonest = None  # (a loop, not min() over a list: this runs a few times a segment)
        for at in (self._rto_at, self._delack_at, self._persist_at, self._keepalive_at,
                   self._time_wait_at, self._fin_wait_2_at):  # fmt: skip
            if at is not None and (soonest is None or at < soonest):
                soonest = at
        return soonest

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
