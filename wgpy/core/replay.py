"""The anti-replay window for transport-data counters.

A port of counter_validate() in the Linux kernel's drivers/net/wireguard/receive.c, which is the
bitmap of RFC 6479: a ring of 128 words of 64 bits remembers which recent counters were seen, and
the window moves forward by zeroing whole words rather than shifting bits. The word about to be
reused is not part of the window, so a counter is accepted if it is new and at most
COUNTER_WINDOW_SIZE (8192 - 64 = 8128) below the greatest counter accepted so far.
"""

from __future__ import annotations

from typing import Final

from wgpy.core.constants import COUNTER_BITS_TOTAL, COUNTER_WINDOW_SIZE, REJECT_AFTER_MESSAGES

_WORD_SHIFT: Final = 6  # ilog2(BITS_PER_LONG) on a 64-bit kernel
_BIT_MASK: Final = (1 << _WORD_SHIFT) - 1
_WORDS: Final = COUNTER_BITS_TOTAL >> _WORD_SHIFT
_WORD_MASK: Final = _WORDS - 1


class ReplayFilter:
    """Accepts each counter at most once, and none that fell behind the window.

    As in the kernel, bits are indexed by position = counter + 1, so that a position of 0 can mean
    "nothing received yet"; `_next` is the kernel's receive.counter, the greatest position seen.
    """

    __slots__ = ("_bitmap", "_next")

    def __init__(self) -> None:
        self._bitmap = [0] * _WORDS
        self._next = 0

    @property
    def greatest(self) -> int | None:
        """The greatest counter accepted so far, or None before the first."""
        return self._next - 1 if self._next else None

    def reset(self) -> None:
        """Forget every counter, as for a fresh keypair."""
        self._bitmap = [0] * _WORDS
        self._next = 0

    def validate(self, counter: int) -> bool:
        """True if `counter` is fresh, and marks it seen; False if replayed, too old or too big."""
        if counter == self._next and counter < REJECT_AFTER_MESSAGES:
            # In order, the common case. Its bit is known to be clear: the bits above the greatest
            # position in its word were zeroed when the window entered that word, and a new word
            # is zeroed now. This is what the general path below does, minus the tests.
            position = counter + 1
            self._next = position
            word = (position >> _WORD_SHIFT) & _WORD_MASK
            bit = position & _BIT_MASK
            if bit:
                self._bitmap[word] |= 1 << bit
            else:
                self._bitmap[word] = 1
            return True
        return self._validate_out_of_order(counter)

    def in_order(self, counter: int, count: int) -> bool:
        """Whether `count` counters from `counter` on are the next ones the window expects, in
        order: what `validate_run` accepts."""
        return counter == self._next and count > 0 and counter + count <= REJECT_AFTER_MESSAGES

    def validate_run(self, counter: int, count: int) -> bool:
        """`validate` of `count` counters from `counter` on, in turn, when they are `in_order`
        (then each is fresh): True, and all are marked seen, a word of the ring at a time.
        Otherwise False, and nothing changes."""
        if not self.in_order(counter, count):
            return False
        position, last = counter + 1, counter + count
        self._next = last
        while position <= last:
            bit = position & _BIT_MASK
            top = min(last, position | _BIT_MASK)  # the run's last position in this word
            bits = ((1 << (top - position + 1)) - 1) << bit
            word = (position >> _WORD_SHIFT) & _WORD_MASK
            # As in `validate`: a word the window enters at its first bit starts zeroed.
            self._bitmap[word] = self._bitmap[word] | bits if bit else bits
            position = top + 1
        return True

    def _validate_out_of_order(self, counter: int) -> bool:
        # The kernel also rejects once receive.counter > REJECT_AFTER_MESSAGES, which this first
        # test already rules out: no accepted position exceeds REJECT_AFTER_MESSAGES.
        if not 0 <= counter < REJECT_AFTER_MESSAGES:
            return False
        position = counter + 1
        if position + COUNTER_WINDOW_SIZE < self._next:
            return False
        index = position >> _WORD_SHIFT
        if position > self._next:
            self._zero_words_after(self._next >> _WORD_SHIFT, index)
            self._next = position
        word = index & _WORD_MASK
        mask = 1 << (position & _BIT_MASK)
        seen = self._bitmap[word]
        if seen & mask:
            return False
        self._bitmap[word] = seen | mask
        return True

    def _zero_words_after(self, current: int, new: int) -> None:
        """Zero the ring slots of words current+1 .. new, which the window is moving into."""
        for index in range(current + 1, current + 1 + min(new - current, _WORDS)):
            self._bitmap[index & _WORD_MASK] = 0
