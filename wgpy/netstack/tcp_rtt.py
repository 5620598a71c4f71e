"""The retransmission timer's value, per RFC 6298, with Linux's bounds (RTO min 200 ms)."""

from __future__ import annotations

from dataclasses import dataclass

_ALPHA = 1 / 8
_BETA = 1 / 4
_K = 4
_CLOCK_GRANULARITY = 0.001  # G: timestamps tick in milliseconds


@dataclass(slots=True)
class RttEstimator:
    rto_initial: float = 1.0
    rto_min: float = 0.2
    rto_max: float = 120.0
    srtt: float | None = None
    rttvar: float = 0.0
    backoff: int = 0  # how many times the timer expired since the last new acknowledgment

    def sample(self, rtt: float) -> None:
        """RFC 6298 2.2 and 2.3: fold one measured round trip in."""
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt

    @property
    def rto(self) -> float:
        """RFC 6298 2.4 and 5.5: the timeout, doubled for each expiry, within the bounds."""
        if self.srtt is None:
            base = self.rto_initial
        else:
            base = max(self.srtt + max(_CLOCK_GRANULARITY, _K * self.rttvar), self.rto_min)
        return min(base * (1 << self.backoff), self.rto_max)
