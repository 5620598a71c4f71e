"""The congestion window: NewReno's rules (RFC 5681, RFC 6582), counting bytes acknowledged as
Linux does (RFC 3465), and growing only while the window, not the application, limits what is in
flight (RFC 7661). Loss detection and what to retransmit belong to the connection; this decides
only how much may be in flight."""

from __future__ import annotations

from dataclasses import dataclass

UNBOUNDED = 1 << 62  # ssthresh before the first loss (RFC 5681 3.1: "arbitrarily high")


@dataclass(slots=True)
class NewReno:
    mss: int
    cwnd: int
    ssthresh: int = UNBOUNDED
    _acked_in_avoidance: int = 0

    @classmethod
    def initial(cls, mss: int, segments: int) -> NewReno:
        """The initial window of `segments` segments (RFC 6928, Linux: 10)."""
        return cls(mss, segments * mss)

    def on_ack(self, acked: int, flight: int) -> None:
        """`acked` new bytes acknowledged while `flight` bytes were outstanding."""
        if 2 * flight < self.cwnd:
            return  # application-limited: the window was not what held data back
        if self.cwnd < self.ssthresh:  # slow start, at most to ssthresh plus a segment
            self.cwnd = min(self.cwnd + acked, max(self.ssthresh, self.cwnd + self.mss))
        else:  # congestion avoidance: one segment per window acknowledged
            self._acked_in_avoidance += acked
            if self._acked_in_avoidance >= self.cwnd:
                self._acked_in_avoidance -= self.cwnd
                self.cwnd += self.mss

    def on_loss(self, flight: int) -> None:
        """Fast retransmit (RFC 5681 3.2, RFC 6675 5): halve."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh

    def on_recovered(self) -> None:
        """A full acknowledgment ends recovery (RFC 6582 3.2 step 3)."""
        self.cwnd = self.ssthresh

    def on_timeout(self, flight: int) -> None:
        """A retransmission timeout (RFC 5681 3.1): halve the threshold, restart from the loss
        window of one segment."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._acked_in_avoidance = 0
