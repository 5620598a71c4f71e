"""Segments out: the SYN or SYN-ACK, then data and FIN as the send window (RFC 9293 3.8.6) and
the congestion window allow, with the sender's silly window avoidance; in loss recovery the holes
first (RFC 6675, RFC 6582), after a timeout go-back-N from SND.UNA; the full-sized segments of a
bulk transfer in a few steps each; window probes and keepalives; an ACK owed when nothing else
carries it."""

from __future__ import annotations

from wgpy.netstack.tcp_input import TcpInput
from wgpy.netstack.tcp_segment import ACK, FIN, PSH, SYN, Options, TcpSegment, options_length
from wgpy.netstack.tcp_states import SENDING, TcpState
from wgpy.netstack.tcp_tcb import MASK, MAX_WINDOW


class TcpOutput(TcpInput):
    __slots__ = ()

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
        if self.state in SENDING and self.snd_una > self.iss:
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
            if not self.in_recovery and self.config.fast_paths and self._full_segments(now, out):
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
        self.bulk_runs += 1
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
        window = min(config.receive_buffer, MAX_WINDOW)
        return TcpSegment(
            self.local.port, self.remote.port, self.iss & MASK,
            self.rcv_nxt & MASK if passive else 0, flags, window, options,
        )  # fmt: skip
