"""The daemon's part of the fast data path that needs no namespace. The data path against the
real kernel, in network namespaces, is tests/netns/test_fastpath_netns.py."""

from __future__ import annotations

from wgpy.cli import daemon
from wgpy.io.interface import STOP_SIGNALS


def test_the_daemon_holds_back_the_signals_that_stop_an_interface() -> None:
    assert set(daemon.HELD_WHILE_STARTING) == set(STOP_SIGNALS)
