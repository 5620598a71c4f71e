"""`wgpy probe` from one network namespace against wireguard-go and the wgpy daemon serving in
another: valid responses, pings through the server, the failures it reports, and the cookie path
under load. tests/unit/test_probe.py drives the probe against a wgpy device in memory.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from interop.wire import InitiationFlood
from wgpy.cli.probe import run
from wgpy.client import get_stats
from wgpy.core.keys import from_base64
from wgpy.lab.netns import (
    WG_PORT,
    Namespace,
    configured_daemon,
    one_peer_config,
    unique_ifname,
    wait_until,
    wg_genkey,
)

SERVERS = [
    pytest.param(("wireguard-go",), id="wireguard-go"),
    pytest.param((sys.executable, "-m", "wgpy.cli.wgpy"), id="wgpy"),
]
RTT = re.compile(r"response in (\d+\.\d+) ms")

netns = pytest.mark.netns("wireguard-go", "wg")
Probe = Callable[..., tuple[int, str, str]]


class Keys:
    """The probe's key pair, and its private key in a file as wg genkey writes it."""

    def __init__(self, directory: Path, name: str = "probe") -> None:
        self.private, self.public = wg_genkey()
        self.file = directory / f"{name}.key"
        self.file.write_text(self.private + "\n")


@contextmanager
def serving_interface(
    ns: Namespace, command: tuple[str, ...], probe_key: str, *, psk: str = ""
) -> Iterator[tuple[str, str]]:
    """A WireGuard server in `ns` on 192.0.2.1/24 and fd00:2::1/64 inside, with the probe as its
    peer (192.0.2.2/32, fd00:2::2/128); yields its interface name and public key."""
    ifname, server = unique_ifname(), wg_genkey()
    allowed = "192.0.2.2/32, fd00:2::2/128"
    config = one_peer_config(server.private, probe_key, allowed, preshared_key=psk)
    with configured_daemon(ns, command, ifname, config, "192.0.2.1/24", "fd00:2::1/64"):
        yield ifname, server.public


@contextmanager
def serving(
    ns: Namespace, command: tuple[str, ...], probe_key: str, *, psk: str = ""
) -> Iterator[str]:
    """As `serving_interface`; yields the server's public key."""
    with serving_interface(ns, command, probe_key, psk=psk) as (_, server_key):
        yield server_key


@pytest.fixture(params=SERVERS)
def command(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The server's command: a test that takes it runs against each of SERVERS."""
    server: tuple[str, ...] = request.param
    return server


def endpoint_of(ns: Namespace, family: str = "ipv4") -> str:
    return f"{ns.ipv4}:{WG_PORT}" if family == "ipv4" else f"[{ns.ipv6}]:{WG_PORT}"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def wgpy_probe(
    netns_pair: tuple[Namespace, Namespace], capsys: pytest.CaptureFixture[str]
) -> Probe:
    """`wgpy_probe(*argv)` runs `wgpy probe ARGV` in the client namespace, the first of the
    pair: (exit status, stdout, stderr)."""
    client, _ = netns_pair

    def probe(*argv: str) -> tuple[int, str, str]:
        with client.entered():
            status = run(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return probe


@pytest.fixture
def probe_with_keys(keys: Keys, wgpy_probe: Probe) -> Probe:
    """`probe_with_keys(endpoint, peer_key, *options)` runs
    `wgpy probe ENDPOINT --peer-key PEER_KEY --key-file PROBE OPTIONS` in the client namespace,
    with the `keys` fixture's key file: (exit status, stdout, stderr)."""

    def probe(endpoint: str, peer_key: str, *options: str) -> tuple[int, str, str]:
        return wgpy_probe(endpoint, "--peer-key", peer_key, "--key-file", str(keys.file), *options)

    return probe


@pytest.fixture
def probe_served(
    netns_pair: tuple[Namespace, Namespace],
    command: tuple[str, ...],
    keys: Keys,
    probe_with_keys: Probe,
) -> Probe:
    """`probe_served(*options, outer=, psk=, peer_key=)` starts a server with `command` in the
    host namespace, the probe its peer (with the preshared key `psk`, if any), and runs
    `probe_with_keys` at it over the `outer` family, expecting the server's public key or,
    where given, `peer_key`."""
    _, host = netns_pair

    def probe(
        *options: str,
        outer: str = "ipv4",
        psk: str = "",
        peer_key: str | None = None,
    ) -> tuple[int, str, str]:
        with serving(host, command, keys.public, psk=psk) as server_key:
            endpoint = endpoint_of(host, outer)
            return probe_with_keys(endpoint, peer_key or server_key, *options)

    return probe


@netns
@pytest.mark.parametrize("outer", ["ipv4", "ipv6"])
def test_the_probe_gets_a_valid_response_with_the_right_keys(
    probe_served: Probe, outer: str
) -> None:
    status, out, err = probe_served(outer=outer)
    assert (status, err) == (0, "")
    assert RTT.search(out) and "1 attempt, 1 answered" in out


@netns
def test_the_probe_handshakes_with_a_preshared_key(
    netns_pair: tuple[Namespace, Namespace],
    command: tuple[str, ...],
    tmp_path: Path,
    keys: Keys,
    wgpy_probe: Probe,
) -> None:
    _, host = netns_pair
    psk = Keys(tmp_path, "psk")  # any 32 bytes make a preshared key
    with serving(host, command, keys.public, psk=psk.private) as server_key:
        status, out, _ = wgpy_probe(
            endpoint_of(host), "--peer-key", server_key, "--key", keys.private,
            "--psk-file", str(psk.file),
        )  # fmt: skip
    assert status == 0 and RTT.search(out)


@netns
def test_back_to_back_attempts_keep_to_the_servers_flood_and_replay_rules(
    probe_served: Probe,
) -> None:
    status, out, _ = probe_served(
        "--count", "5", "--interval", "0", "--timeout", "2",
        "--ping", "192.0.2.1", "--address", "192.0.2.2",
    )  # fmt: skip
    assert status == 0
    assert len(re.findall(r"echo reply in", out)) == 5 and "5 attempts, 5 answered" in out


@netns
def test_a_wrong_peer_key_gets_silence_a_reason_and_a_failing_status(probe_served: Probe) -> None:
    status, out, err = probe_served("--timeout", "0.5", peer_key=wg_genkey().public)
    assert status == 1
    assert "silence: no answer within 0.5 s" in out
    assert "no answer within 0.5 s" in err and "--peer-key" in err


@netns
def test_a_preshared_key_mismatch_is_reported_as_an_invalid_response(
    probe_served: Probe, tmp_path: Path
) -> None:
    psk, servers_psk = Keys(tmp_path, "psk"), Keys(tmp_path, "other")
    status, out, err = probe_served("--psk-file", str(psk.file), psk=servers_psk.private)
    assert status == 1
    assert out.count("invalid-response") == 1
    assert "preshared key does not match" in err


@netns
@pytest.mark.parametrize(
    "inner", [("192.0.2.2", "192.0.2.1"), ("fd00:2::2", "fd00:2::1")], ids=["ipv4", "ipv6"]
)
def test_a_ping_through_the_server_is_answered(probe_served: Probe, inner: tuple[str, str]) -> None:
    status, out, _ = probe_served("--ping", inner[1], "--address", inner[0])
    assert status == 0
    assert re.search(r"response in \d+\.\d+ ms, echo reply in \d+\.\d+ ms", out)


@netns
def test_a_ping_from_an_address_the_server_does_not_allow_goes_unanswered(
    probe_served: Probe,
) -> None:
    status, _, err = probe_served(
        "--ping", "192.0.2.1", "--address", "192.0.2.99", "--timeout", "0.5"
    )
    assert status == 1
    assert "no echo reply from 192.0.2.1" in err and "AllowedIPs" in err


@netns
def test_json_output_has_one_entry_per_attempt(
    netns_pair: tuple[Namespace, Namespace], command: tuple[str, ...], keys: Keys
) -> None:
    client, host = netns_pair
    with serving(host, command, keys.public) as server_key:
        completed = client.run(
            sys.executable, "-m", "wgpy.cli.probe", endpoint_of(host),
            "--peer-key", server_key, "--key-file", str(keys.file),
            "--count", "2", "--interval", "0", "--ping", "192.0.2.1", "--address", "192.0.2.2",
            "--json",
        )  # fmt: skip
    report = json.loads(completed.stdout)
    assert set(report) == {"endpoint", "peer", "ok", "attempts"}
    assert (report["endpoint"], report["peer"], report["ok"]) == (
        endpoint_of(host), server_key, True,
    )  # fmt: skip
    assert len(report["attempts"]) == 2
    for attempt in report["attempts"]:
        assert set(attempt) == {"outcome", "ok", "reason", "rtt_ms", "cookie_reply", "ping"}
        assert (attempt["outcome"], attempt["ok"], attempt["cookie_reply"]) == (
            "answered", True, False,
        )  # fmt: skip
        assert attempt["rtt_ms"] > 0
        assert attempt["ping"]["outcome"] == "replied" and attempt["ping"]["rtt_ms"] > 0


@pytest.mark.netns("wg")
def test_json_output_of_a_failed_probe_says_why(
    netns_pair: tuple[Namespace, Namespace], keys: Keys
) -> None:
    client, host = netns_pair
    completed = client.run(
        sys.executable, "-m", "wgpy.cli.probe", endpoint_of(host),
        "--peer-key", wg_genkey().public, "--key-file", str(keys.file), "--json",
        check=False,
    )  # fmt: skip
    assert completed.returncode == 1
    report = json.loads(completed.stdout)
    assert report["ok"] is False
    (attempt,) = report["attempts"]
    assert (attempt["outcome"], attempt["rtt_ms"], attempt["ping"]) == ("refused", None, None)
    assert "nothing listens on that port" in attempt["reason"]


@pytest.mark.netns("wg")
def test_a_port_nothing_listens_on_is_refused(
    netns_pair: tuple[Namespace, Namespace], probe_with_keys: Probe
) -> None:
    _, host = netns_pair
    status, out, err = probe_with_keys(endpoint_of(host), wg_genkey().public)
    assert status == 1
    assert "refused:" in out and "ICMP port unreachable" in err


@pytest.mark.netns("wg")
def test_a_server_address_nobody_answers_arp_for_is_unreachable(probe_with_keys: Probe) -> None:
    # On the veth's subnet, but no host: the client's ARP goes unanswered (after about 3 s).
    status, out, err = probe_with_keys(
        f"198.18.0.99:{WG_PORT}", wg_genkey().public, "--timeout", "10"
    )
    assert status == 1
    assert "unreachable: the network reports the server unreachable" in out
    assert "No route to host" in err


@pytest.mark.netns("wg")
def test_an_endpoint_this_host_has_no_route_to_means_the_probe_cannot_run(
    probe_with_keys: Probe,
) -> None:
    status, _, err = probe_with_keys(f"192.0.2.200:{WG_PORT}", wg_genkey().public)
    assert status == 2
    assert "192.0.2.200:51820: Network is unreachable" in err


# -- the cookie path against real servers under load ---------------------------------------------

# The wgpy daemon under load from the first handshake message on.
WGPY_UNDER_LOAD = ("env", "WGPY_UNDER_LOAD_THRESHOLD=1", sys.executable, "-m", "wgpy.cli.wgpy")
COOKIE_THEN_RESPONSE = re.compile(
    r"cookie reply \(server under load\), retried with mac2; "
    r"response in \d+\.\d+ ms, echo reply in \d+\.\d+ ms"
)


@netns
def test_a_wgpy_server_under_load_answers_with_a_cookie_and_then_the_retry_with_mac2(
    netns_pair: tuple[Namespace, Namespace], keys: Keys, probe_with_keys: Probe
) -> None:
    _, host = netns_pair
    with serving_interface(host, WGPY_UNDER_LOAD, keys.public) as (ifname, server_key):
        status, out, _ = probe_with_keys(
            endpoint_of(host), server_key,
            "--count", "2", "--interval", "0", "--ping", "192.0.2.1", "--address", "192.0.2.2",
        )  # fmt: skip
        with host.entered():
            stats = get_stats(ifname)
    assert status == 0
    assert len(COOKIE_THEN_RESPONSE.findall(out)) == 2, out
    assert stats is not None
    assert (stats.cookie_replies_sent, stats.drops["cookie_required"]) == (2, 2)


@netns
def test_the_json_report_says_the_server_sent_a_cookie_reply(
    netns_pair: tuple[Namespace, Namespace], keys: Keys
) -> None:
    client, host = netns_pair
    with serving(host, WGPY_UNDER_LOAD, keys.public) as server_key:
        completed = client.run(
            sys.executable, "-m", "wgpy.cli.probe", endpoint_of(host),
            "--peer-key", server_key, "--key-file", str(keys.file), "--json",
        )  # fmt: skip
    (attempt,) = json.loads(completed.stdout)["attempts"]
    assert (attempt["outcome"], attempt["ok"], attempt["cookie_reply"]) == ("answered", True, True)


# wireguard-go is under load while its handshake queue holds QueueHandshakeSize / 8 = 128
# messages, and for a second after (device/receive.go, RoutineHandshake and IsUnderLoad;
# device/queueconstants_default.go: QueueHandshakeSize = 1024). A flood of initiations with a
# valid mac1 fills it: each costs the server a DH until it is under load.
FLOOD_RATE = 50000.0
UNDER_LOAD_WAIT = 15.0
FLOOD_ATTEMPTS = 10


@netns
def test_wireguard_go_flooded_with_initiations_answers_the_probe_with_a_cookie(
    netns_pair: tuple[Namespace, Namespace], keys: Keys, probe_with_keys: Probe
) -> None:
    client, host = netns_pair
    with serving(host, ("wireguard-go",), keys.public) as server_key:
        target = (host.ipv4, WG_PORT)
        flood = InitiationFlood(client, target, from_base64(server_key), FLOOD_RATE).start()
        try:
            assert wait_until(lambda: flood.cookie_replies > 0, UNDER_LOAD_WAIT), (
                f"no cookie reply to {flood.sent} initiations: wireguard-go never came under load"
            )
            # The flood keeps its queue near full, where it drops what does not fit: some
            # attempts go unanswered, so several are made (each a cookie, then the retry).
            status, out, _ = probe_with_keys(
                endpoint_of(host), server_key,
                "--count", str(FLOOD_ATTEMPTS), "--interval", "0", "--timeout", "1",
            )  # fmt: skip
        finally:
            flood.stop()
    assert status == 0, out
    assert re.search(r"cookie reply \(server under load\), retried with mac2; response in", out)
