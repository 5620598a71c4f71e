"""`wgpy proxy`'s command line: what it tells the operator about the config it was given."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from tunnels import A4, A6, B4, B6, config_text

from wgpy import config as wgconfig
from wgpy import tunnel
from wgpy.cli import proxy as cli_proxy
from wgpy.core.keys import generate_private_key


def test_wg_quick_only_keys_are_named_once_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    path = tmp_path / "wg0.conf"
    keys = generate_private_key(os.urandom), generate_private_key(os.urandom)
    path.write_text(config_text(keys[0], (A4, A6), keys[1], (B4, B6), extra="Table = off"))

    async def open_and_close() -> None:
        async with cli_proxy.open_network(str(path), "userspace", None):
            pass

    cli_proxy._warn_unused(str(path), wgconfig.load(str(path)))
    asyncio.run(open_and_close())
    assert [line for line in capsys.readouterr().err.splitlines() if "Table" in line] == [
        f"wgpy proxy: {path}: Table do not apply to a proxy: ignored"
    ]
    assert not [w for w in recwarn if issubclass(w.category, tunnel.NotAppliedWarning)]


def test_a_bad_busy_poll_window_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wg0.conf"
    keys = generate_private_key(os.urandom), generate_private_key(os.urandom)
    path.write_text(config_text(keys[0], (A4, A6), keys[1], (B4, B6)))
    monkeypatch.setenv("WGPY_BUSY_POLL", "-1")
    assert cli_proxy.run([str(path), "--socks5", "1080"]) == 1
    assert capsys.readouterr().err == (
        "wgpy proxy: WGPY_BUSY_POLL='-1': not microseconds from 0 to 1000000\n"
    )
