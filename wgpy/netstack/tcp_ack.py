"""What an acceptable acknowledgment does to the sending side (RFC 9293 3.10.7.4's fifth check):
it frees the send buffer, samples the round trip (RFC 6298, RFC 7323 4.1), counts duplicate ACKs
and SACK blocks (RFC 2018) toward loss recovery (RFC 5681 3.2, RFC 6675, RFC 6582), grows the
congestion window, updates the send window, and moves a closing connection on once its FIN is
acknowledged."""

from __future__ import annotations

from typing import Final

from wgpy.netstack.tcp_events import TcpEvent
from wgpy.netstack.tcp_segment import FIN, SYN, Options, TcpSegment
from wgpy.netstack.tcp_states import ON_FIN_ACKED, TcpState
from wgpy.netstack.tcp_tcb import MASK, TransmissionControlBlock, unwrap

DUPTHRESH: Final = 3  # RFC 5681 3.2


class TcpAckProcessing(TransmissionControlBlock):
    __slots__ = ()

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
        after = ON_FIN_ACKED.get(self.state)
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
