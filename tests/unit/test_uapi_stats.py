"""wgpy's `stats=1` extension: framed as `get`, round-trips, and leaves `get` untouched."""

from __future__ import annotations

import pytest

from wgpy import uapi
from wgpy.errors import UapiError


def test_stats_is_framed_like_get() -> None:
    reader = uapi.RequestReader()
    assert list(reader.feed(b"stats=1\n")) == []
    assert list(reader.feed(b"\nget=1\n\n")) == [uapi.Request("stats"), uapi.Request("get")]


def test_stats_round_trip() -> None:
    stats = uapi.DeviceStats(
        drops={"invalid_mac": 3, "unknown_index": 1},
        cookie_replies_sent=2,
        peers=[
            uapi.PeerStats(bytes(range(32)), {"replayed_counter": 5}, 4, 1, 12.5),
            uapi.PeerStats(bytes(32)),
        ],
    )
    text = uapi.format_stats(stats)
    assert text.endswith("errno=0\n\n")
    assert uapi.parse_stats(text) == stats


def test_a_failed_stats_reply_raises_its_errno() -> None:
    with pytest.raises(UapiError) as raised:
        uapi.parse_stats("errno=-22\n\n")
    assert raised.value.errno == 22


def test_a_malformed_stats_reply_is_a_protocol_error() -> None:
    with pytest.raises(UapiError, match="malformed"):
        uapi.parse_stats("cookie_replies_sent=many\n")
