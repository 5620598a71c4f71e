"""Private and preshared keys never leave wgpy unless asked for (issue 8, secrets).

Not in repr(), not in error messages about lines that carry them, not in the daemon's log at
any level, not in `wgpy show` unless WG_HIDE_KEYS=never; the configuration socket is its owner's
alone; retired sessions leave no reference to their keys behind. benchmarks/hardening/secrets.py
holds the audit these tests drive and counts its findings for docs/HARDENING.md. The promises a
live daemon keeps are in tests/netns/test_secrets.py.
"""

from __future__ import annotations

import base64
import errno
import os
import sys

import pytest
from fakes import Link

from benchmarks.hardening.secrets import (
    QUICK_MODES,
    SOCKET_MODE,
    config_lines_with_a_key,
    leaked,
    quick_warnings,
    socket_modes,
    specimens,
    uapi_lines_with_a_key,
    wg_quick_warns,
)
from wgpy import config, uapi
from wgpy.cli import wg
from wgpy.core.constants import ZERO_KEYS_TIME
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.keys import generate_private_key, public_key
from wgpy.core.peer import Peer
from wgpy.errors import ConfigError, UapiError
from wgpy.uapi import DeviceState, PeerState

KEY = os.urandom(32)
KEY_BASE64 = base64.b64encode(KEY).decode()


# repr() ------------------------------------------------------------------------------------------

SPECIMENS = specimens()


@pytest.mark.parametrize("name", sorted(SPECIMENS.objects))
def test_repr_of_an_object_holding_keys_shows_none_of_them(name: str) -> None:
    shown = SPECIMENS.objects[name]
    text = shown if isinstance(shown, str) else repr(shown)
    assert leaked(text, SPECIMENS.secrets) == []


def test_the_specimens_really_hold_the_secrets_they_are_checked_for() -> None:
    # Otherwise the test above would pass on objects that never saw a key.
    state, peer = SPECIMENS.objects["uapi.DeviceState"], SPECIMENS.objects["Peer"]
    private_a, private_b, psk = SPECIMENS.secrets[:3]
    assert isinstance(state, DeviceState) and isinstance(peer, Peer)
    assert state.private_key == private_a and state.peers[0].preshared_key == psk
    assert (peer.public_key, peer.preshared_key) == (public_key(private_b), psk)


# Error messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", config_lines_with_a_key(KEY_BASE64))
def test_a_refused_config_line_is_located_but_its_key_is_not_echoed(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(text, file="wg0.conf")
    assert str(caught.value).startswith("wg0.conf:")
    assert caught.value.line is not None
    assert leaked(str(caught.value), [KEY]) == []


@pytest.mark.parametrize("lines", uapi_lines_with_a_key(KEY.hex()))
def test_a_refused_uapi_line_is_located_but_its_key_is_not_echoed(lines: list[str]) -> None:
    with pytest.raises(UapiError) as caught:
        uapi.parse_set(lines)
    assert caught.value.errno in (errno.EINVAL, errno.EPROTO)
    assert str(caught.value).startswith(f"line {len(lines)}: ")
    assert leaked(str(caught.value), [KEY]) == []


def test_a_misspelt_key_name_is_still_named_in_the_error() -> None:
    with pytest.raises(ConfigError, match="PrivatKey: unknown key in"):
        config.parse(f"[Interface]\nPrivatKey = {KEY_BASE64}\n")
    with pytest.raises(UapiError, match="line 1: privat_key: invalid device key"):
        uapi.parse_set([f"privat_key={KEY.hex()}"])


# `wgpy show` -------------------------------------------------------------------------------------


PRIVATE = generate_private_key(os.urandom)


def _state() -> DeviceState:
    peer = PeerState(public_key=public_key(generate_private_key(os.urandom)), preshared_key=KEY)
    return DeviceState(private_key=PRIVATE, peers=[peer])


def test_show_hides_private_and_preshared_keys_as_wg_does() -> None:
    text = wg.format_pretty("wg0", _state(), now=0)
    assert text.count("(hidden)") == 2
    assert leaked(text, [PRIVATE, KEY]) == []


def test_show_json_hides_them_too_unless_wg_hide_keys_is_never() -> None:
    hidden = wg.format_json("wg0", _state(), None)
    shown = wg.format_json("wg0", _state(), None, hide_keys=False)
    assert hidden["private_key"] == "(hidden)"
    assert leaked(repr(hidden), [PRIVATE, KEY]) == []
    assert shown["private_key"] == base64.b64encode(PRIVATE).decode()


@pytest.mark.parametrize(
    ("field", "keys"),
    [("private-key", [PRIVATE]), ("preshared-keys", [KEY]), ("dump", [PRIVATE, KEY])],
    ids=["private-key", "preshared-keys", "dump"],
)
def test_asking_for_a_key_by_name_shows_it_whatever_wg_hide_keys_says(
    field: str, keys: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # show.c prints these with key(), not masked_key(): naming the field is asking for it.
    monkeypatch.delenv("WG_HIDE_KEYS", raising=False)
    text = wg.format_field(field, _state())
    assert all(leaked(text, [key]) for key in keys)


# wgpy-quick ---------------------------------------------------------------------------------------


def test_wgpy_quick_warns_about_a_config_exactly_when_wg_quick_would() -> None:
    expected = {modes: wg_quick_warns(*modes) for modes in QUICK_MODES}
    assert set(expected.values()) == {True, False}
    assert quick_warnings() == expected


# The configuration socket ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "umask", [0o000, 0o002, 0o022], ids=["umask-000", "umask-002", "umask-022"]
)
def test_the_socket_is_its_owners_alone_in_a_0755_directory_whatever_the_umask(
    umask: int,
) -> None:
    # wireguard-go ipc/uapi_linux.go: MkdirAll(0755), then bind under umask 077.
    assert socket_modes(umask) == (SOCKET_MODE, 0o755)


def test_a_restrictive_umask_only_tightens_the_directory_it_creates() -> None:
    sock, directory = socket_modes(0o077)
    assert sock == SOCKET_MODE and directory == 0o700


def test_listening_leaves_the_process_umask_as_it_was() -> None:
    before = os.umask(0o022)
    try:
        socket_modes(0o022)
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)


# Retired key material ----------------------------------------------------------------------------


def test_after_zero_keys_time_the_device_keeps_no_reference_to_the_sessions() -> None:
    link = Link()
    link.send("a", ipv4_packet("10.0.0.1", "10.0.0.2"))
    keypairs = [peer.keypairs.current for peer in (link.peer_of_b, link.peer_of_a)]
    assert all(keypairs)
    link.advance(ZERO_KEYS_TIME + 1)
    # Only this test holds them (its list, its loop variable, getrefcount's argument): CPython
    # frees them, with their ciphers' key objects, as soon as it lets go. Freed, not zeroed: see
    # docs/HARDENING.md.
    assert [sys.getrefcount(keypair) for keypair in keypairs] == [3, 3]
