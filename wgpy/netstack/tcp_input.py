"""Segments in (RFC 9293 3.10.7, "SEGMENT ARRIVES"): the peer's SYN and the options it offers,
header prediction for in-order bulk data, RFC 5961's checks on RST, SYN and ACK, PAWS (RFC 7323),
then the acknowledgment (tcp_ack), and the data and FIN: in order into the receive buffer, out of
order into reassembly, with delayed and duplicate ACKs (RFC 5681 4.2).

Whatever a segment holds, `receive` never raises: a segment that fails a check is dropped and
counted in `drops` by `TcpDrop`.
"""

from __future__ import annotations

from typing import Final

from wgpy.netstack.tcp_ack import TcpAckProcessing
from wgpy.netstack.tcp_congestion import NewReno
from wgpy.netstack.tcp_events import TcpDrop, TcpEvent
from wgpy.netstack.tcp_segment import ACK, FIN, PSH, RST, SYN, TcpSegment
from wgpy.netstack.tcp_states import ON_FIN, RECEIVING, TcpState
from wgpy.netstack.tcp_tcb import (
    CHALLENGE_ACK_INTERVAL,
    DEFAULT_MSS,
    HALF,
    MASK,
    MAX_WINDOW,
    MAX_WINDOW_SCALE,
    unwrap,
    window_scale_for,
)

RTO_AFTER_SYN_TIMEOUT: Final = 3.0  # RFC 6298 5.7, Linux's TCP_TIMEOUT_FALLBACK


class TcpInput(TcpAckProcessing):
    __slots__ = ()

    # -- the peer's SYN --------------------------------------------------------------------

    def _take_syn(self, syn: TcpSegment) -> None:
        """The peer's SYN: IRS, and the options both sides offered (RFC 7323, RFC 2018)."""
        self.irs = syn.seq
        self.rcv_nxt = syn.seq + 1
        self.rcv_adv = self.rcv_nxt + min(self.config.receive_buffer, MAX_WINDOW)
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

    # -- segments in -----------------------------------------------------------------------

    def receive(self, segment: TcpSegment, now: float) -> None:
        self._now = now
        if self.config.fast_paths and self._predicted(segment, now):
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
            if stamps is None or (stamps[0] - self.ts_recent) & MASK >= HALF:
                return False
            self.ts_recent = stamps[0]
        self._heard_at = now
        seq, ack = self.rcv_nxt, self.snd_una
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            self.snd_wl1, self.snd_wl2 = seq, ack
        self._take_in_order(payload, now)
        self.predicted += 1
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
            self._refuse_unacceptable(flags, now)
            return
        self._heard_at = now
        if flags & (RST | SYN):
            self._take_rst_or_syn(flags, seq, now)
            return
        if not flags & ACK:
            self.drops[TcpDrop.NO_ACK] += 1
            return
        ack = unwrap(segment.ack, self.snd_una)
        if not self.snd_una - max(self.max_snd_wnd, MAX_WINDOW) <= ack <= self.snd_max:
            self._refuse_ack(ack, now)
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

    def _refuse_unacceptable(self, flags: int, now: float) -> None:
        """A segment outside the receive window: an ACK answers it unless it is a RST."""
        if flags & RST:
            self.drops[TcpDrop.RST_OUT_OF_WINDOW] += 1
            return
        self.drops[TcpDrop.OUT_OF_WINDOW] += 1
        self._ack_now = True
        if self.state is TcpState.TIME_WAIT and flags & FIN:
            self._time_wait_at = now + self.config.time_wait  # its FIN again: re-ACK, wait

    def _take_rst_or_syn(self, flags: int, seq: int, now: float) -> None:
        """RST or SYN in the window: only a RST exactly at RCV.NXT resets (RFC 5961 3.2); a RST
        elsewhere and any SYN (RFC 5961 4.2) draw a challenge ACK instead."""
        if not flags & RST:
            self.drops[TcpDrop.SYN_SYNCHRONIZED] += 1
            self._challenge(now)
        elif seq == self.rcv_nxt:
            self._finish(TcpEvent.RESET)
        else:
            self.drops[TcpDrop.RST_NOT_EXACT] += 1
            self._challenge(now)

    def _refuse_ack(self, ack: int, now: float) -> None:
        """RFC 5961 5.2: an acknowledgment of what was never sent draws a challenge ACK; one
        older than the window is dropped in silence."""
        if ack > self.snd_max:
            self.drops[TcpDrop.ACK_UNSENT] += 1
            self._challenge(now)
        else:
            self.drops[TcpDrop.ACK_TOO_OLD] += 1

    def _too_old(self, segment: TcpSegment) -> bool:
        """PAWS (RFC 7323 5.3 R1): a timestamp older than TS.Recent marks an old duplicate,
        even one whose sequence number, after a wrap, looks current. RST is exempt, as in Linux."""
        stamps = segment.options.timestamps
        if not self.timestamps or stamps is None or segment.flags & RST:
            return False
        return (stamps[0] - self.ts_recent) & MASK >= HALF

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

    # -- data and FIN ----------------------------------------------------------------------

    def _process_data(self, segment: TcpSegment, seq: int, now: float) -> None:
        if self.state not in RECEIVING:
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
        after = ON_FIN[self.state]
        if after is TcpState.TIME_WAIT:
            self._enter_time_wait(now)
        else:
            self.state = after
