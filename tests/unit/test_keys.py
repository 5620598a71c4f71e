"""Keys and the key commands: wgpy.core.keys, and `wgpy genkey / genpsk / pubkey` against `wg`'s."""

from __future__ import annotations

import base64
import io
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgpy.cli.keys import genkey, genpsk, parse_private_key_input, run
from wgpy.core.keys import (
    clamp,
    from_base64,
    from_hex,
    generate_preshared_key,
    generate_private_key,
    public_key,
    redact,
    to_base64,
)
from wgpy.errors import InvalidKeyError

WG = shutil.which("wg")
requires_wg = pytest.mark.skipif(WG is None, reason="wireguard-tools' `wg` is not installed")
REPO_ROOT = Path(__file__).resolve().parents[2]
BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

ZERO_KEY_BASE64 = "A" * 43 + "="
SAMPLE_KEY = bytes(range(32))
SAMPLE_BASE64 = to_base64(SAMPLE_KEY)


def counting_rng(n: int) -> bytes:
    """A fake rng that returns 00 01 02 ...: makes generated keys predictable."""
    return bytes(range(n))


# wgpy.core.keys


@given(st.binary(min_size=32, max_size=32))
def test_base64_round_trips_every_key(key: bytes) -> None:
    text = to_base64(key)
    assert len(text) == 44
    assert text.endswith("=")
    assert from_base64(text) == key


def test_from_base64_decodes_the_all_zero_key() -> None:
    assert from_base64(ZERO_KEY_BASE64) == bytes(32)


def test_from_base64_ignores_surrounding_whitespace() -> None:
    assert from_base64(f"  {SAMPLE_BASE64}\n") == SAMPLE_KEY


@pytest.mark.parametrize(
    "text",
    [
        "",
        SAMPLE_BASE64[:-1],  # 43 characters
        SAMPLE_BASE64 + "A",  # 45 characters
        SAMPLE_BASE64[:-1] + "A",  # 44 characters, no padding
        SAMPLE_BASE64[:-2] + "==",  # 44 characters that decode to 31 bytes
    ],
    ids=["empty", "43-chars", "45-chars", "no-padding", "31-bytes"],
)
def test_from_base64_rejects_wrong_lengths(text: str) -> None:
    with pytest.raises(InvalidKeyError):
        from_base64(text)


@pytest.mark.parametrize("bad", ["!", "-", "_", " ", ".", "é", "\0"])
def test_from_base64_rejects_characters_outside_the_alphabet(bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        from_base64(SAMPLE_BASE64[:10] + bad + SAMPLE_BASE64[11:])


def test_hex_round_trips_and_rejects_wrong_input() -> None:
    assert from_hex(SAMPLE_KEY.hex()) == SAMPLE_KEY
    for text in (SAMPLE_KEY.hex()[:-2], SAMPLE_KEY.hex() + "00", "zz" + SAMPLE_KEY.hex()[2:]):
        with pytest.raises(InvalidKeyError):
            from_hex(text)


def test_generate_private_key_clamps_the_random_bytes() -> None:
    # Curve25519 clamping: clear the low 3 bits of byte 0, clear bit 7 and set bit 6 of byte 31.
    assert generate_private_key(counting_rng) == bytes(range(31)) + bytes([31 & 0x7F | 0x40])
    assert generate_private_key(lambda n: b"\xff" * n) == b"\xf8" + b"\xff" * 30 + b"\x7f"


def test_generate_preshared_key_uses_the_random_bytes_as_they_are() -> None:
    assert generate_preshared_key(counting_rng) == bytes(range(32))


def test_redact_hides_the_key() -> None:
    assert SAMPLE_BASE64 not in redact(SAMPLE_KEY)
    assert SAMPLE_KEY.hex() not in redact(SAMPLE_KEY)


# The key commands, in process


def run_command(
    command: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: bytes = b"",
    argv: list[str] | None = None,
) -> tuple[int, str, str]:
    """Run a key command with `stdin` as its input; return (status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    status = run(command, argv or [])
    out, err = capsys.readouterr()
    return status, out, err


def test_genkey_prints_a_clamped_key_from_the_rng(capsys: pytest.CaptureFixture[str]) -> None:
    assert genkey(rng=counting_rng) == 0
    assert capsys.readouterr().out == to_base64(clamp(bytes(range(32)))) + "\n"


def test_genpsk_prints_the_rng_bytes_unclamped(capsys: pytest.CaptureFixture[str]) -> None:
    assert genpsk(rng=counting_rng) == 0
    assert capsys.readouterr().out == to_base64(bytes(range(32))) + "\n"


@pytest.mark.parametrize("command", ["genkey", "genpsk"])
def test_generated_keys_are_fresh_base64_lines(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [run_command(command, capsys, monkeypatch)[1] for _ in range(2)]
    assert all(len(line) == 45 and line.endswith("=\n") for line in lines)
    assert lines[0] != lines[1]


def test_genkey_output_is_a_clamped_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = from_base64(run_command("genkey", capsys, monkeypatch)[1])
    assert key == clamp(key)


def test_pubkey_prints_the_public_key_of_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = f"{SAMPLE_BASE64}\n".encode()
    status, out, err = run_command("pubkey", capsys, monkeypatch, stdin)
    assert (status, out, err) == (0, to_base64(public_key(SAMPLE_KEY)) + "\n", "")


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [
        (b"", "expected 44 characters"),
        (SAMPLE_BASE64[:20].encode() + b"\n", "expected 44 characters"),
        (SAMPLE_BASE64.encode() + b" extra\n", "trailing characters"),
        (b" " + SAMPLE_BASE64.encode(), "trailing characters"),
        (SAMPLE_BASE64[:10].encode() + b"!" + SAMPLE_BASE64[11:].encode(), "base64"),
        (SAMPLE_BASE64[:10].encode() + b"\xff" + SAMPLE_BASE64[11:].encode(), "base64"),
        (SAMPLE_BASE64[:-1].encode() + b"A", "44 characters of base64 ending in '='"),
    ],
    ids=["empty", "short", "trailing-word", "leading-space", "bang", "non-ascii", "no-padding"],
)
def test_pubkey_rejects_bad_input_with_one_line_naming_the_problem(
    stdin: bytes, reason: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run_command("pubkey", capsys, monkeypatch, stdin)
    assert status == 1
    assert out == ""
    assert err.startswith("wgpy pubkey: invalid private key on stdin: ")
    assert reason in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def non_canonical(text: str) -> str:
    """The same key with the unused low bits of its 43rd character set."""
    last = BASE64_ALPHABET.index(text[42])
    return text[:42] + BASE64_ALPHABET[last | 0b11] + "="


def test_keys_must_be_canonical_base64_as_wg_requires() -> None:
    canonical = to_base64(bytes(32))
    assert base64.b64decode(non_canonical(canonical)) == bytes(32)  # base64 alone accepts it
    with pytest.raises(InvalidKeyError, match="canonical"):
        from_base64(non_canonical(canonical))
    with pytest.raises(InvalidKeyError, match="canonical"):
        parse_private_key_input(non_canonical(canonical))


@pytest.mark.parametrize("command", ["genkey", "genpsk", "pubkey"])
def test_key_commands_take_no_arguments(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run_command(command, capsys, monkeypatch, argv=["extra"])
    assert (status, out, err) == (1, "", f"Usage: wgpy {command}\n")


def test_run_refuses_a_command_it_does_not_own() -> None:
    with pytest.raises(ValueError, match="not a key command"):
        run("show", [])


# The key commands as a process: the world-accessible warning needs a real stdout.


def run_process(command: str, stdout_path: Path) -> subprocess.CompletedProcess[bytes]:
    script = f"from wgpy.cli.keys import run; raise SystemExit(run({command!r}, []))"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with stdout_path.open("wb") as stdout:
        return subprocess.run(
            [sys.executable, "-c", script], stdout=stdout, stderr=subprocess.PIPE, env=env
        )


@pytest.mark.parametrize("command", ["genkey", "genpsk"])
def test_writing_a_key_to_a_world_readable_file_warns_but_still_writes(
    command: str, tmp_path: Path
) -> None:
    path = tmp_path / "key"
    path.touch(mode=0o644)
    path.chmod(0o644)
    result = run_process(command, path)
    assert result.returncode == 0
    assert result.stderr.startswith(b"Warning: writing to world accessible file.\n")
    assert from_base64(path.read_text())


def test_writing_a_key_to_a_private_file_is_silent(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.touch(mode=0o600)
    path.chmod(0o600)
    result = run_process("genkey", path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert from_base64(path.read_text())


# Against wireguard-tools' `wg`


def wg(command: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    assert WG is not None
    return subprocess.run([WG, command], input=stdin, capture_output=True, check=False)


@requires_wg
def test_public_keys_match_wg_pubkey_for_many_private_keys() -> None:
    rng = random.Random(20_25).randbytes
    # Half clamped, half raw: both sides clamp the scalar before multiplying.
    private_keys = [generate_private_key(rng) for _ in range(32)] + [rng(32) for _ in range(32)]
    for private_key in private_keys:
        result = wg("pubkey", f"{to_base64(private_key)}\n".encode())
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode() == to_base64(public_key(private_key)) + "\n"


@requires_wg
def test_wg_pubkey_accepts_our_genkey_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, line, _ = run_command("genkey", capsys, monkeypatch)
    result = wg("pubkey", line.encode())
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == to_base64(public_key(from_base64(line))) + "\n"


@requires_wg
def test_wg_genkey_output_is_clamped_like_ours() -> None:
    key = from_base64(wg("genkey").stdout.decode())
    assert key == clamp(key)


PUBKEY_INPUTS = {
    "newline": f"{SAMPLE_BASE64}\n",
    "no-newline": SAMPLE_BASE64,
    "crlf": f"{SAMPLE_BASE64}\r\n",
    "nul-and-spaces-after": f"{SAMPLE_BASE64}\0\t \v\f\n",
    "leading-space": f" {SAMPLE_BASE64}",
    "leading-newline": f"\n{SAMPLE_BASE64}",
    "trailing-word": f"{SAMPLE_BASE64} x",
    "two-keys": f"{SAMPLE_BASE64}\n{SAMPLE_BASE64}\n",
    "43-chars": f"{SAMPLE_BASE64[:43]}\n",
    "no-padding": f"{SAMPLE_BASE64[:43]}A\n",
    "double-padding": f"{SAMPLE_BASE64[:42]}==\n",
    "non-canonical": f"{non_canonical(SAMPLE_BASE64)}\n",
    "bad-character": f"{SAMPLE_BASE64[:5]}*{SAMPLE_BASE64[6:]}\n",
    "urlsafe-alphabet": base64.urlsafe_b64encode(b"\xfb" * 32).decode() + "\n",
    "empty": "",
}


@requires_wg
@pytest.mark.parametrize("stdin", PUBKEY_INPUTS.values(), ids=PUBKEY_INPUTS.keys())
def test_pubkey_accepts_and_rejects_exactly_what_wg_pubkey_does(
    stdin: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = run_command("pubkey", capsys, monkeypatch, stdin.encode("latin-1"))
    expected = wg("pubkey", stdin.encode("latin-1"))
    assert (status, out) == (expected.returncode, expected.stdout.decode())
