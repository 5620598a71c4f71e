"""The sender's SACK scoreboard (RFC 6675 section 3): which runs above SND.UNA the receiver holds,
in unwrapped sequence numbers, so loss recovery retransmits only the holes between them."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator


class Scoreboard:
    def __init__(self) -> None:
        self._runs: list[list[int]] = []  # disjoint [left, right), sorted
        self.sacked = 0

    def __bool__(self) -> bool:
        return bool(self._runs)

    @property
    def highest(self) -> int | None:
        """The right edge of the highest SACKed run."""
        return self._runs[-1][1] if self._runs else None

    def add(self, left: int, right: int) -> bool:
        """Mark [left, right) as held; True when that is news."""
        if left >= right:
            return False
        i = bisect_left(self._runs, [left, left])
        if i and self._runs[i - 1][1] >= left:
            i -= 1
        j = i
        while j < len(self._runs) and self._runs[j][0] <= right:
            j += 1
        covered = self._runs[i:j]
        if len(covered) == 1 and covered[0][0] <= left and covered[0][1] >= right:
            return False
        merged = [
            min([left, *(run[0] for run in covered)]),
            max([right, *(run[1] for run in covered)]),
        ]
        self.sacked += merged[1] - merged[0] - sum(run[1] - run[0] for run in covered)
        self._runs[i:j] = [merged]
        return True

    def advance(self, snd_una: int) -> None:
        """Forget what the cumulative acknowledgment now covers."""
        while self._runs and self._runs[0][0] < snd_una:
            run = self._runs[0]
            if run[1] <= snd_una:
                self.sacked -= run[1] - run[0]
                self._runs.pop(0)
            else:
                self.sacked -= snd_una - run[0]
                run[0] = snd_una

    def holes(self, start: int) -> Iterator[tuple[int, int]]:
        """The un-SACKed runs from `start` up to the highest SACKed byte."""
        for left, right in self._runs:
            if right <= start:
                continue
            if left > start:
                yield start, left
            start = right

    def clear(self) -> None:
        self._runs.clear()
        self.sacked = 0
