"""`wgpy metrics` against a live daemon: scraped inside its namespace over TCP and a unix socket,
and answering 503 once the daemon is gone. The text and the server are tested in process in
tests/unit/test_metrics.py.
"""

from __future__ import annotations

import http.client
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
from scrapes import get, lines_of

from wgpy import metrics
from wgpy.cli import metrics as cli
from wgpy.core.drops import DropReason
from wgpy.core.keys import from_base64
from wgpy.core.probe import ProbeKeys
from wgpy.io.probe import probe
from wgpy.lab.netns import (
    WG_PORT,
    Namespace,
    configured_daemon,
    one_peer_config,
    unique_ifname,
    veth_pair,
    wait_until,
    wg_genkey,
)

METRICS_PORT = 9586
STARTUP_TIMEOUT = 15.0


class LiveDaemon(NamedTuple):
    ns: Namespace
    ifname: str
    peer_key: str  # base64
    process: subprocess.Popen[bytes]


@contextmanager
def daemon_with_a_session() -> Iterator[LiveDaemon]:
    """A wgpy daemon in one namespace of a pair, its peer a `wgpy probe` from the other that
    handshook and pinged through it."""
    wgpy = (sys.executable, "-m", "wgpy.cli.wgpy")
    ifname, server, peer = unique_ifname(), wg_genkey(), wg_genkey()
    config = one_peer_config(server.private, peer.public, "192.0.2.2/32")
    with (
        veth_pair() as (client, host),
        configured_daemon(host, wgpy, ifname, config, "192.0.2.1/24") as process,
    ):
        keys = ProbeKeys(from_base64(peer.private), from_base64(server.public))
        inner = (ipaddress.ip_address("192.0.2.2"), ipaddress.ip_address("192.0.2.1"))
        with client.entered():
            (result,) = probe((host.ipv4, WG_PORT), keys, ping=inner)
        assert result.ok, result.reason
        yield LiveDaemon(host, ifname, peer.public, process)


def start_metrics(ns: Namespace, ifname: str, listen: str, log: Path) -> None:
    with open(log, "wb") as output:
        process = ns.popen(
            sys.executable, "-m", "wgpy.cli.wgpy", "metrics", ifname, "--listen", listen,
            stdout=output, stderr=output,
        )  # fmt: skip
    started = wait_until(
        lambda: b"serving" in log.read_bytes() or process.poll() is not None, STARTUP_TIMEOUT
    )
    assert started and process.poll() is None, log.read_text()


def scrape_over(ns: Namespace, listen: str) -> tuple[int, str, str]:
    """(status, Content-Type, body) of GET /metrics at `listen`, from inside `ns`."""
    address = cli.parse_listen(listen)
    if address.path is not None:
        return get(address.path, "/metrics")
    with ns.entered():
        connection = http.client.HTTPConnection(address.host, address.port, timeout=10)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            body = response.read().decode()
        finally:
            connection.close()
    return response.status, response.getheader("Content-Type") or "", body


def sample(text: str, name: str, *labels: str) -> float:
    """The value of the one `name` sample whose labels include each of `labels` (k="v")."""
    values = [
        float(line.rpartition(" ")[2])
        for line in lines_of(name, text)
        if all(label in line for label in labels)
    ]
    assert len(values) == 1, f"{name} {labels}: {values}"
    return values[0]


@pytest.mark.netns("wg")
@pytest.mark.parametrize(
    "listen", [f"127.0.0.1:{METRICS_PORT}", f"[::1]:{METRICS_PORT}", "unix"], ids=str
)
def test_a_live_daemon_is_scraped_inside_its_namespace(listen: str, tmp_path: Path) -> None:
    if listen == "unix":
        listen = f"unix:{tmp_path}/metrics.sock"
    with daemon_with_a_session() as daemon:
        start_metrics(daemon.ns, daemon.ifname, listen, tmp_path / "metrics.log")
        status, content_type, text = scrape_over(daemon.ns, listen)
    assert (status, content_type) == (200, metrics.CONTENT_TYPE)
    interface = f'interface="{daemon.ifname}"'
    of_peer = (interface, f'public_key="{daemon.peer_key}"')
    assert sample(text, "wireguard_peers", interface) == 1
    assert sample(text, "wireguard_sent_bytes_total", *of_peer, 'allowed_ips="192.0.2.2/32"') > 0
    assert sample(text, "wireguard_received_bytes_total", *of_peer) > 0
    assert sample(text, "wireguard_latest_handshake_seconds", *of_peer) > 1_600_000_000
    assert 0 <= sample(text, "wgpy_keypair_age_seconds", *of_peer) < 60
    # The probe initiated, so the daemon made no handshake attempt of its own.
    assert sample(text, "wgpy_handshake_attempts_total", *of_peer) == 0
    assert len(lines_of("wgpy_drops_total", text)) == len(DropReason)


@pytest.mark.netns("wg")
def test_a_scrape_while_the_daemon_is_down_answers_503_with_the_reason(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{METRICS_PORT}"
    with daemon_with_a_session() as daemon:
        start_metrics(daemon.ns, daemon.ifname, listen, tmp_path / "metrics.log")
        assert scrape_over(daemon.ns, listen)[0] == 200
        daemon.ns.stop(daemon.process)
        status, content_type, body = scrape_over(daemon.ns, listen)
    assert (status, content_type) == (503, "text/plain")
    assert body.startswith(f"{daemon.ifname}: the interface is not running (")
