"""Endpoint resolution as wg does it (wireguard-tools src/config.c parse_endpoint), which
`wgpy set`, `wgpy setconf` and wgpy-quick share: getaddrinfo is faked, and so is the pause."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from wgpy.resolver import ResolutionError, resolve


class FakeResolver:
    """getaddrinfo that fails with `errors` first, then answers `answers`; sleeps are recorded."""

    def __init__(self, errors: list[int], answers: list[tuple[int, str]]) -> None:
        self.errors = errors
        self.answers = answers
        self.sleeps: list[float] = []

    def getaddrinfo(self, host: str, port: int, *args: int) -> list[tuple[Any, ...]]:
        if self.errors:
            code = self.errors.pop(0)
            raise socket.gaierror(code, f"error {code}")
        return [(family, 2, 17, "", (address, port)) for family, address in self.answers]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> FakeResolver:
    fake = FakeResolver([], [(socket.AF_INET6, "fd00:3::1"), (socket.AF_INET, "192.0.2.1")])
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    monkeypatch.setattr(time, "sleep", fake.sleeps.append)
    monkeypatch.delenv("WG_ENDPOINT_RESOLUTION_RETRIES", raising=False)
    return fake


def test_an_endpoint_resolves_to_the_first_address_of_either_family(resolver: FakeResolver) -> None:
    assert resolve("vpn.example.com", 51820) == ("fd00:3::1", 51820)


def test_transient_failures_are_announced_and_retried_each_wait_a_fifth_longer(
    resolver: FakeResolver, capsys: pytest.CaptureFixture[str]
) -> None:
    resolver.errors = [socket.EAI_AGAIN] * 3
    assert resolve("vpn.example.com", 51820)[0] == "fd00:3::1"
    assert resolver.sleeps == [1.0, 1.2, 1.44]
    assert capsys.readouterr().err.splitlines() == [
        f"error {socket.EAI_AGAIN}: `vpn.example.com:51820'. Trying again in {pause} seconds..."
        for pause in ("1.00", "1.20", "1.44")
    ]


def test_the_pause_grows_to_twenty_seconds_at_most(
    resolver: FakeResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", "20")
    resolver.errors = [socket.EAI_AGAIN] * 20
    resolve("vpn.example.com", 51820)
    assert max(resolver.sleeps) == resolver.sleeps[-1] == 20.0
    assert resolver.sleeps[16] < 20.0 == resolver.sleeps[17]


def test_a_name_that_does_not_exist_is_not_retried(resolver: FakeResolver) -> None:
    resolver.errors = [socket.EAI_NONAME]
    with pytest.raises(ResolutionError, match=r"`vpn.example.com:51820'$"):
        resolve("vpn.example.com", 51820)
    assert resolver.sleeps == []


def test_retries_run_out_after_as_many_as_wg_endpoint_resolution_retries_says(
    resolver: FakeResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", "2")
    resolver.errors = [socket.EAI_AGAIN] * 3
    with pytest.raises(ResolutionError):
        resolve("vpn.example.com", 51820)
    assert len(resolver.sleeps) == 2


def test_fifteen_retries_unless_told_and_infinity_never_gives_up(
    resolver: FakeResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver.errors = [socket.EAI_AGAIN] * 16
    with pytest.raises(ResolutionError):
        resolve("vpn.example.com", 51820)
    assert len(resolver.sleeps) == 15
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", "infinity")
    resolver.errors = [socket.EAI_AGAIN] * 100
    assert resolve("vpn.example.com", 51820)[0] == "fd00:3::1"


def test_a_retry_count_that_is_not_a_number_is_refused(
    resolver: FakeResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", "-1")
    with pytest.raises(
        ResolutionError, match=r"^Unable to parse WG_ENDPOINT_RESOLUTION_RETRIES: `-1'$"
    ):
        resolve("vpn.example.com", 51820)


def test_an_error_names_the_endpoint_as_given_else_ipv6_in_brackets(
    resolver: FakeResolver,
) -> None:
    resolver.errors = [socket.EAI_NONAME, socket.EAI_NONAME]
    with pytest.raises(ResolutionError, match=r"`\[fd00::1\]:https'$"):
        resolve("fd00::1", "https")
    with pytest.raises(ResolutionError, match=r"`vpn:1'$"):
        resolve("vpn", 1, shown_as="vpn:1")


def test_a_name_idna_cannot_encode_is_not_known() -> None:
    # Python's getaddrinfo refuses it before glibc sees it; wg would hear EAI_NONAME.
    with pytest.raises(ResolutionError) as caught:
        resolve("\udcff", 1)
    assert str(caught.value) == "Name or service not known: `\udcff:1'"
