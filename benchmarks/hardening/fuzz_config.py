"""Fuzzing the configuration-file reader (wgpy.config) with generated wg and wg-quick files.

Every file is a valid configuration from random settings, then mutated a few times
(benchmarks/hardening/mutate.py). The promises: `parse` either returns a Config or raises a
ConfigError carrying the file name and a line of the file (and the key, when the line has one);
nothing else escapes. An accepted file survives `serialize` and `parse` unchanged, and turns into
a device update. A share of the files is written to disk as bytes, some with invalid UTF-8, and
read with `load`, whose errors must carry file and line too.
"""

from __future__ import annotations

import random
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.hardening.mutate import mutate_lines, tricky_value
from wgpy import config
from wgpy.core import keys
from wgpy.errors import ConfigError

ON_DISK_SHARE = 20  # one file in this many is read from disk by `load`
_RESOLVED = ("192.0.2.9", 51820)


@dataclass
class ConfigFuzzResult:
    files: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_with_line: int = 0  # ConfigError naming the file and a line within it
    rejected_with_key: int = 0
    round_trips: int = 0  # accepted files that `serialize` then `parse` gives back unchanged
    crashes: list[str] = field(default_factory=list)  # any other outcome, with its file

    def record_crash(self, text: str, what: str) -> None:
        if len(self.crashes) < 20:
            self.crashes.append(f"{what}\n--- file:\n{text[:2000]!r}")


def fuzz_config_files(count: int, seed: int) -> ConfigFuzzResult:
    rng = random.Random(seed)
    result = ConfigFuzzResult()
    with tempfile.TemporaryDirectory(prefix="wgpy-fuzz-config-") as directory:
        for number in range(count):
            text = generate_file(rng)
            name = f"{directory}/fuzz{number}.conf"
            wg_only = rng.random() < 0.3
            read: Callable[[], config.Config]
            if number % ON_DISK_SHARE == 0:
                read = partial(_load, name, _with_invalid_utf8(text, rng), wg_only)
            else:
                read = partial(config.parse, text, file=name, wg_only=wg_only)
            _check(result, text, name, read)
    return result


def _load(name: str, data: bytes, wg_only: bool) -> config.Config:
    Path(name).write_bytes(data)
    try:
        return config.load(name, wg_only=wg_only)
    finally:
        Path(name).unlink()


def _check(
    result: ConfigFuzzResult, text: str, name: str, read: Callable[[], config.Config]
) -> None:
    result.files += 1
    line_count = text.count("\n") + 1
    try:
        parsed = read()
    except ConfigError as error:
        result.rejected += 1
        if error.file == name and error.line is not None and 1 <= error.line <= line_count:
            result.rejected_with_line += 1
        else:
            result.record_crash(text, f"ConfigError without file:line: {error!r} {error.line}")
        result.rejected_with_key += bool(error.key)
        return
    except Exception:
        result.record_crash(text, traceback.format_exc())
        return
    result.accepted += 1
    _check_accepted(result, text, parsed)


def _check_accepted(result: ConfigFuzzResult, text: str, parsed: config.Config) -> None:
    try:
        again = config.parse(config.serialize(parsed))
        config.to_device_update(parsed, lambda host, port: _RESOLVED)
    except Exception:
        result.record_crash(text, f"accepted, but not re-read:\n{traceback.format_exc()}")
        return
    if again == parsed:
        result.round_trips += 1
    else:
        result.record_crash(text, f"re-read differs:\n{parsed}\n{again}")


def _with_invalid_utf8(text: str, rng: random.Random) -> bytes:
    data = text.encode("utf-8", errors="surrogatepass")
    if rng.random() < 0.5:
        at = rng.randint(0, len(data))
        data = data[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc"]) + data[at:]
    return data


# Generation ---------------------------------------------------------------------------------


def generate_file(rng: random.Random) -> str:
    lines = list(_valid_lines(rng))
    if rng.random() < 0.1:
        return "".join(chr(rng.randrange(0x80)) for _ in range(rng.randint(0, 300)))
    return "\n".join(mutate_lines(lines, rng, rng.randint(0, 3)))


def _valid_lines(rng: random.Random) -> Iterator[str]:
    yield _header("Interface", rng)
    interface = [
        ("PrivateKey", _key(rng)),
        ("ListenPort", str(rng.randint(0, 65535))),
        ("FwMark", rng.choice(["off", "0x1f", str(rng.getrandbits(32))])),
        ("Address", f"192.0.2.{rng.randint(1, 254)}/24, fd00:2::{rng.randint(1, 0xFFFF):x}/64"),
        ("DNS", rng.choice(["192.0.2.53", "fd00::53, example.test", "192.0.2.53 search.test"])),
        ("MTU", str(rng.randint(1280, 9000))),
        ("Table", rng.choice(["off", "auto", "1234", ""])),
        ("PostUp", "echo up # a hook keeps its '#'"),
        ("SaveConfig", rng.choice(["true", "false"])),
    ]
    yield from _settings(interface, rng)
    for _ in range(rng.randint(0, 3)):
        yield ""
        yield _header("Peer", rng)
        peer = [
            ("PublicKey", _key(rng)),
            ("PresharedKey", _key(rng)),
            ("AllowedIPs", f"192.0.2.{rng.randint(0, 255)}/32, fd00::/{rng.randint(0, 128)}"),
            ("Endpoint", rng.choice(["198.18.0.2:51820", "[fd00:1::2]:1", "peer.test:51820"])),
            ("PersistentKeepalive", rng.choice(["off", "25", "0"])),
        ]
        yield from _settings(peer, rng)


def _settings(pairs: list[tuple[str, str]], rng: random.Random) -> Iterator[str]:
    for key, value in pairs:
        if rng.random() < 0.6:
            spacing = rng.choice(["=", " = ", "\t=  ", " =", "= "])
            comment = rng.choice(["", "", " # note", "#"])
            yield f"{_case(key, rng)}{spacing}{value}{comment}"


def _header(name: str, rng: random.Random) -> str:
    return f"{rng.choice(['', ' '])}[{_case(name, rng)}]"


def _case(word: str, rng: random.Random) -> str:
    return rng.choice([word, word, word.lower(), word.upper()])


def _key(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return tricky_value(rng)
    return keys.to_base64(rng.randbytes(32))
