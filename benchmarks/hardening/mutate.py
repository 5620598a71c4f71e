"""Text mutations shared by the configuration-socket and config-file fuzzers.

A fuzzer starts from a valid text, made from random settings, and changes a few lines of it with
these: a value swapped for one from `TRICKY_VALUES`, a key misspelled, a separator lost, a line
repeated, dropped or cut short, stray bytes let in. Valid starting points carry the mutations deep
into the parsers; fully random text only tests their first check.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# Values that sit on a boundary of some parser: numbers at and past their limits, signs, spaces,
# other radixes, addresses with zones, brackets and masks, non-ASCII digits, control characters.
TRICKY_VALUES = (
    "",
    " ",
    "0",
    "-0",
    "-1",
    "+1",
    "00",
    "1_000",
    "0x10",
    "0X10",
    "0o7",
    "1e3",
    "\uff11\uff12",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "9" * 30,
    "true",
    "false",
    "True",
    "off",
    "on",
    "yes",
    "nan",
    "inf",
    "192.0.2.1",
    "192.0.2.1/32",
    "192.0.2.1/33",
    "192.0.2.256/24",
    "192.0.2.1/",
    "/24",
    "192.0.2.1/024",
    "192.0.2.1/-1",
    "0.0.0.0/0",
    "::/0",
    "::/129",
    "fd00::1/64",
    "fd00::1%2/64",
    "[fd00::1]:51820",
    "[fd00::1%lo]:1",
    "[fd00::1%\x00]:1",
    "[fd00::1%é]:1",
    "[fd00::1%]:1",
    "fd00::1:51820",
    "[fd00::1]",
    "[fd00::1]:",
    "192.0.2.1:0",
    "192.0.2.1:65536",
    ":51820",
    "192.0.2.1:-1",
    "[192.0.2.1]:1",
    "::ffff:192.0.2.1",
    "[::ffff:192.0.2.1]:9",
    "localhost:1",
    "0" * 64,
    "f" * 64,
    "F" * 64,
    "g" * 64,
    "a" * 63,
    "a" * 65,
    "AAAA",
    "=" * 44,
    "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=",
    "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWF=",
    "\x00",
    "\x7f",
    "\t",
    "\r",
    "\u00a0",
    "\u2028",
    "\ud800",
    "é",
    "#",
    "=",
    "==",
    "[",
    "]",
    "x" * 5000,
)


def tricky_value(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(1, 8)))
    return rng.choice(TRICKY_VALUES)


def mutate_lines(lines: list[str], rng: random.Random, rounds: int) -> list[str]:
    """`lines` with `rounds` random mutations, each of one line or of the whole."""
    lines = list(lines)
    for _ in range(rounds):
        rng.choice(_MUTATIONS)(lines, rng)
    return lines


def _swap_value(lines: list[str], rng: random.Random) -> None:
    index = _pick(lines, rng)
    key, sep, _ = lines[index].partition("=")
    lines[index] = f"{key}{sep or '='}{tricky_value(rng)}"


def _misspell_key(lines: list[str], rng: random.Random) -> None:
    index = _pick(lines, rng)
    key, sep, value = lines[index].partition("=")
    spelled = rng.choice([key.upper(), key.lower(), key[:-1], key + "s", f" {key} ", ""])
    lines[index] = f"{spelled}{sep}{value}"


def _drop_separator(lines: list[str], rng: random.Random) -> None:
    index = _pick(lines, rng)
    lines[index] = lines[index].replace("=", rng.choice(["", " ", ":", "=="]), 1)


def _repeat_line(lines: list[str], rng: random.Random) -> None:
    index = _pick(lines, rng)
    lines.insert(rng.randint(0, len(lines)), lines[index] if lines else "")


def _drop_line(lines: list[str], rng: random.Random) -> None:
    if lines:
        del lines[_pick(lines, rng)]


def _cut_line(lines: list[str], rng: random.Random) -> None:
    index = _pick(lines, rng)
    lines[index] = lines[index][: rng.randint(0, len(lines[index]))]


def _flip_character(lines: list[str], rng: random.Random) -> None:
    index = _pick(lines, rng)
    line = lines[index]
    at = rng.randint(0, len(line))
    lines[index] = (
        line[:at]
        + chr(rng.choice([rng.randrange(128), rng.randrange(0x110000)]))
        + (line[at + 1 :])
    )


def _insert_garbage_line(lines: list[str], rng: random.Random) -> None:
    garbage = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randint(0, 40)))
    lines.insert(rng.randint(0, len(lines)), rng.choice([garbage, tricky_value(rng)]))


def _truncate(lines: list[str], rng: random.Random) -> None:
    del lines[rng.randint(0, len(lines)) :]


def _pick(lines: list[str], rng: random.Random) -> int:
    if not lines:
        lines.append("")
    return rng.randrange(len(lines))


_MUTATIONS: tuple[Callable[[list[str], random.Random], None], ...] = (
    _swap_value, _swap_value, _swap_value, _misspell_key, _drop_separator, _repeat_line,
    _drop_line, _cut_line, _flip_character, _insert_garbage_line, _truncate,
)  # fmt: skip
