"""Peers admitted on their first handshake (issue 20): a wgpy server that lists no peers and runs
WGPY_PEER_HOOK for each unknown key, with wgpy or wireguard-go as the client.

The server is in the first namespace of the pair (198.18.0.1, tunnel 192.0.2.1), the client in
the second (198.18.0.2, tunnel 192.0.2.2). The hook, a shell script, notes each call in a file
and admits the client's key only when the test says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from peers import WGPY, WIREGUARD_GO, Peer, make_peers, processes_in, running

from wgpy import client
from wgpy.lab.netns import Namespace, can_ping, wait_until, wg_genkey

pytestmark = pytest.mark.netns("wireguard-go", "wg", "ping")

CLIENT_LINES = "allowed_ip=192.0.2.2/32\nallowed_ip=fd00:2::2/128\n"
# Another peer of the server's, configured, owns this address.
TAKEN = "192.0.2.9/32"
# What each hook does after it notes its call; "admit" gives the client's addresses.
ANSWERS = {
    "admit": f"printf '{CLIENT_LINES}'",
    "refuse": "exit 1",
    "hang": "sleep 30",
    "crash": "kill -SEGV $$",
    "garbage": "echo 'this is not a peer line'",
    "taken": f"echo allowed_ip={TAKEN}",
}
HOOK_TIMEOUT = "0.5"


class Scene:
    """The server, the client and the hook's record of its calls."""

    def __init__(self, server: Peer, client_peer: Peer, calls: Path) -> None:
        self.server = server
        self.client = client_peer
        self.calls = calls

    def hook_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def handshake_made(self) -> bool:
        dump = self.client.dump().peers[self.server.keys.public]
        return dump.latest_handshake != 0 or dump.rx_bytes != 0


@pytest.fixture
def scene(
    request: pytest.FixtureRequest, netns_pair: tuple[Namespace, Namespace], tmp_path: Path
) -> Iterator[Scene]:
    """`request.param`: (the client's implementation, the hook's answer)."""
    implementation, answer = request.param
    server, client_peer = make_peers((WGPY, implementation), *netns_pair)
    calls = tmp_path / "calls"
    hook = tmp_path / "hook"
    hook.write_text(
        "#!/bin/sh\n"
        f'echo "$WGPY_INTERFACE $WGPY_PUBLIC_KEY $WGPY_ENDPOINT" >> {calls}\n'
        f"{ANSWERS[answer]}\n"
    )
    hook.chmod(0o755)
    # The server lists no peer of the client's, only one that owns TAKEN.
    interface = server.config.partition("[Peer]")[0]
    server.config = f"{interface}[Peer]\nPublicKey = {wg_genkey().public}\nAllowedIPs = {TAKEN}\n"
    server.env = {"WGPY_PEER_HOOK": str(hook), "WGPY_PEER_HOOK_TIMEOUT": HOOK_TIMEOUT}
    with running((server, client_peer)):
        yield Scene(server, client_peer, calls)


@pytest.mark.parametrize(
    "scene", [pytest.param((WGPY, "admit"), id="wgpy"),
              pytest.param((WIREGUARD_GO, "admit"), id="wireguard-go")],
    indirect=True,
)  # fmt: skip
def test_a_client_the_server_does_not_list_connects_through_the_hook(scene: Scene) -> None:
    assert can_ping(scene.client.ns, "192.0.2.1")
    assert can_ping(scene.client.ns, "fd00:2::1")
    client_key = scene.client.keys.public
    assert scene.hook_calls() == [f"{scene.server.ifname} {client_key} 198.18.0.2:51820"]
    admitted = scene.server.dump().peers[client_key]
    assert admitted.allowed_ips == {"192.0.2.2/32", "fd00:2::2/128"}
    assert admitted.endpoint == "198.18.0.2:51820"


@pytest.mark.parametrize("scene", [pytest.param((WGPY, "refuse"), id="wgpy")], indirect=True)
def test_a_refused_key_gets_no_response_and_the_hook_runs_once_a_minute(scene: Scene) -> None:
    assert not can_ping(scene.client.ns, "192.0.2.1", deadline=7)  # spans a retransmission
    assert not scene.handshake_made()
    assert len(scene.hook_calls()) == 1
    stats = client.get_stats(scene.server.ifname)
    assert stats is not None and stats.drops.get("peer_refused", 0) >= 1
    assert scene.client.keys.public not in scene.server.dump().peers


@pytest.mark.parametrize(
    "scene",
    [pytest.param((WGPY, answer), id=answer) for answer in ("hang", "crash", "garbage", "taken")],
    indirect=True,
)
def test_a_hook_that_fails_refuses_and_leaves_the_daemon_serving(scene: Scene) -> None:
    assert not can_ping(scene.client.ns, "192.0.2.1", deadline=3)
    assert wait_until(lambda: len(scene.hook_calls()) == 1, 5.0)
    assert not scene.handshake_made()
    assert scene.server.alive()
    peers = scene.server.dump().peers
    assert scene.client.keys.public not in peers
    # The peer that owns TAKEN still does, alone.
    assert [p.allowed_ips for p in peers.values()] == [frozenset({TAKEN})]
    # The hook's processes are gone: nothing of the hang is left in the server's namespace.
    assert wait_until(lambda: "sleep" not in commands_in(scene.server.ns), 3.0)


def commands_in(ns: Namespace) -> list[str]:
    """The command names of the processes in `ns`."""
    names = []
    for pid in processes_in(ns):
        with suppress(FileNotFoundError):
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
    return names
