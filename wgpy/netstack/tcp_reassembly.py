"""What the receiver holds beyond RCV.NXT: out-of-order data as disjoint, non-touching runs of
sequence space (unwrapped integers), which are also the SACK blocks it reports (RFC 2018)."""

from __future__ import annotations

from bisect import bisect_left


class Reassembly:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._runs: list[bytearray] = []
        self.latest: int | None = None  # the start of the run holding the latest arrival
        self.held = 0

    def __bool__(self) -> bool:
        return bool(self._starts)

    def insert(self, start: int, data: bytes) -> None:
        """Keep `data` at `start`, merged with every run it overlaps or touches."""
        end = start + len(data)
        first = bisect_left(self._starts, start)
        if first and self._starts[first - 1] + len(self._runs[first - 1]) >= start:
            first -= 1
        last = first
        while last < len(self._starts) and self._starts[last] <= end:
            last += 1
        if last == first + 1 and self._starts[first] <= start:  # the common case: a run grows
            run_start, run = self._starts[first], self._runs[first]
            added = data[max(0, run_start + len(run) - start) :]
            run += added
            self.held += len(added)
            self.latest = run_start
            return
        merged = bytearray()
        if first < last and self._starts[first] < start:
            merged += self._runs[first][: start - self._starts[first]]
        merged += data
        if first < last:
            tail_start, tail = self._starts[last - 1], self._runs[last - 1]
            if tail_start + len(tail) > end:
                merged += tail[end - tail_start :]
        new_start = min(start, self._starts[first]) if first < last else start
        self.held += len(merged) - sum(len(run) for run in self._runs[first:last])
        self._starts[first:last] = [new_start]
        self._runs[first:last] = [merged]
        self.latest = new_start

    def pop_from(self, rcv_nxt: int) -> bytes:
        """The data at RCV.NXT onward that is now in order (dropping what lies below it)."""
        out = bytearray()
        while self._starts and self._starts[0] <= rcv_nxt + len(out):
            start, run = self._starts.pop(0), self._runs.pop(0)
            self.held -= len(run)
            out += run[rcv_nxt + len(out) - start :]
        if self.latest is not None and self.latest not in self._starts:
            self.latest = None
        return bytes(out)

    def blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` SACK blocks, the one holding the latest arrival first (RFC 2018 4),
        then the highest runs."""
        runs = [
            (start, start + len(run)) for start, run in zip(self._starts, self._runs, strict=True)
        ]
        runs.reverse()
        if self.latest is not None:
            first = next(run for run in runs if run[0] == self.latest)
            runs.remove(first)
            runs.insert(0, first)
        return runs[:limit]
