"""Peers admitted on their first handshake (issue 20), the device's part, under a fake clock.

A responder that lists no peers asks about each unknown key whose initiation passed the macs
(and the cookie, under load): `ask_for_peers` returns a PeerWanted and holds the initiation
until `admit_peer` or `refuse_peer`; `peer_lookup` is asked at once. Each test states one rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from fakes import WALL_EPOCH, seeded_rng

from wgpy.core.admission import (
    ASK_BURST,
    HOLD_TIME,
    MAX_HELD,
    MAX_REFUSED,
    REFUSAL_TIME,
    Admissions,
    Asked,
    PeerSettings,
)
from wgpy.core.device import (
    Action,
    Device,
    PeerWanted,
    SendDatagrams,
    datagrams_of,
    packets_of,
)
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.keys import generate_private_key, public_key
from wgpy.core.messages import Initiation

SERVER = Endpoint("192.0.2.1", 51820)
SERVER_NET = ipaddress.ip_network("10.0.0.1/32")
SETTINGS = PeerSettings(allowed_ips=(ipaddress.ip_network("10.0.0.2/32"),))
INITIATION, RESPONSE, COOKIE_REPLY = 1, 2, 3


class Client:
    """A device that knows the server; the server does not know it."""

    def __init__(self, server: Device, seed: int, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.device = Device(seeded_rng(seed), generate_private_key(seeded_rng(seed + 1000)))
        assert self.device.static_public is not None and server.static_public is not None
        self.public_key = self.device.static_public
        peer = self.device.add_peer(server.static_public, endpoint=SERVER)
        self.device.allowed_ips.insert(SERVER_NET, peer)

    def send(self, payload: bytes, now: float) -> list[bytes]:
        """What the client sends for an inner packet to the server (an initiation at first)."""
        packet = ipv4_packet("10.0.0.2", "10.0.0.1", payload)
        return datagrams_of(self.device.handle_tun_packet(packet, now, WALL_EPOCH + now))

    def receive(self, data: list[bytes], now: float) -> list[bytes]:
        actions: list[Action] = []
        for datagram in data:
            actions += self.device.handle_datagram(datagram, SERVER, now, WALL_EPOCH + now)
        return datagrams_of(actions)

    def retransmit(self) -> tuple[list[bytes], float]:
        """The client's next initiation, sent when its retransmission timer fires, and when."""
        now = self.device.next_timer()
        assert now is not None
        return datagrams_of(self.device.handle_timer(now, WALL_EPOCH + now)), now


def server_device(**options: object) -> Device:
    rng = seeded_rng(1)
    return Device(rng, generate_private_key(rng), **options)  # type: ignore[arg-type]


def deliver(server: Device, data: list[bytes], client: Client, now: float) -> list[Action]:
    actions: list[Action] = []
    for datagram in data:
        actions += server.handle_datagram(datagram, client.endpoint, now, WALL_EPOCH + now)
    return actions


def client_at(server: Device, index: int, host: str | None = None) -> Client:
    return Client(server, 10 + index, Endpoint(host or f"198.18.0.{index + 1}", 40000 + index))


@pytest.fixture
def server() -> Device:
    return server_device(ask_for_peers=True)


def test_an_unknown_key_is_reported_with_its_endpoint_and_nothing_is_sent(server: Device) -> None:
    client = client_at(server, 1)
    actions = deliver(server, client.send(b"hello", 0.0), client, 0.0)
    assert actions == [PeerWanted(client.public_key, client.endpoint)]
    assert server.peers == {}


def test_admitting_the_key_answers_the_held_initiation_at_once(server: Device) -> None:
    client = client_at(server, 1)
    deliver(server, client.send(b"hello", 0.0), client, 0.0)
    actions = server.admit_peer(client.public_key, SETTINGS, 0.5, WALL_EPOCH + 0.5)
    assert [data[0] for data in datagrams_of(actions)] == [RESPONSE]
    assert actions[0] == SendDatagrams(datagrams_of(actions), client.endpoint)
    # The client's session is up: the packet it staged reaches the server's side.
    confirmed = client.receive(datagrams_of(actions), 0.5)
    delivered = packets_of(deliver(server, confirmed, client, 0.5))
    assert delivered == [ipv4_packet("10.0.0.2", "10.0.0.1", b"hello")]
    peer = server.peers[client.public_key]
    assert server.allowed_ips.entries(peer) == list(SETTINGS.allowed_ips)


def test_an_admitted_peer_gets_its_preshared_key_and_keepalive(server: Device) -> None:
    client = client_at(server, 1)
    deliver(server, client.send(b"hello", 0.0), client, 0.0)
    settings = PeerSettings(
        SETTINGS.allowed_ips, preshared_key=bytes(range(32)), persistent_keepalive=25
    )
    server.admit_peer(client.public_key, settings, 0.0, WALL_EPOCH)
    peer = server.peers[client.public_key]
    assert (peer.preshared_key, peer.persistent_keepalive_interval) == (bytes(range(32)), 25)


def test_a_refused_key_gets_no_answer_and_is_not_asked_about_for_60_seconds(
    server: Device,
) -> None:
    client = client_at(server, 1)
    deliver(server, client.send(b"hello", 0.0), client, 0.0)
    server.refuse_peer(client.public_key, 0.0)
    retries = 0
    while True:
        initiation, now = client.retransmit()
        if now >= REFUSAL_TIME:
            break
        assert deliver(server, initiation, client, now) == []
        retries += 1
    assert retries >= 10
    assert server.drops[DropReason.PEER_REFUSED] == retries
    assert server.peers == {}
    # A minute on, the key is asked about again.
    asked = deliver(server, initiation, client, now)
    assert asked == [PeerWanted(client.public_key, client.endpoint)]


def test_an_initiation_again_while_asked_is_held_without_asking_again(server: Device) -> None:
    client = client_at(server, 1)
    initiation = client.send(b"hello", 0.0)
    deliver(server, initiation, client, 0.0)
    assert deliver(server, initiation, client, 1.0) == []
    response = datagrams_of(server.admit_peer(client.public_key, SETTINGS, 1.0, WALL_EPOCH + 1))
    assert [data[0] for data in response] == [RESPONSE]


def test_a_retransmission_after_the_hold_asks_again(server: Device) -> None:
    client = client_at(server, 1)
    deliver(server, client.send(b"hello", 0.0), client, 0.0)
    initiation, now = client.retransmit()
    assert now >= HOLD_TIME
    assert deliver(server, initiation, client, now) == [
        PeerWanted(client.public_key, client.endpoint)
    ]
    # The answer is to the retransmission, the one initiation the client still waits on.
    response = datagrams_of(server.admit_peer(client.public_key, SETTINGS, now, WALL_EPOCH + now))
    confirmed = client.receive(response, now)
    assert packets_of(deliver(server, confirmed, client, now)) != []


def test_an_answer_later_than_the_hold_admits_the_key_for_the_next_initiation(
    server: Device,
) -> None:
    client = client_at(server, 1)
    deliver(server, client.send(b"hello", 0.0), client, 0.0)
    assert server.admit_peer(client.public_key, SETTINGS, HOLD_TIME, WALL_EPOCH + HOLD_TIME) == []
    assert client.public_key in server.peers
    initiation, now = client.retransmit()
    response = datagrams_of(deliver(server, initiation, client, now))
    assert [data[0] for data in response] == [RESPONSE]


def test_at_most_max_held_initiations_wait(server: Device) -> None:
    clients = [client_at(server, index) for index in range(MAX_HELD + 1)]
    asked = [deliver(server, c.send(b"hi", 0.0), c, 0.0) for c in clients]
    assert all(actions != [] for actions in asked[:MAX_HELD])
    assert asked[MAX_HELD] == []
    assert server.drops[DropReason.ADMISSIONS_FULL] == 1
    # Once the hold has passed the table has room again.
    last = clients[MAX_HELD]
    initiation, now = last.retransmit()
    assert now >= HOLD_TIME
    assert deliver(server, initiation, last, now) == [PeerWanted(last.public_key, last.endpoint)]


def test_one_source_asks_about_at_most_a_burst_of_keys_at_once(server: Device) -> None:
    clients = [client_at(server, index, host="198.18.0.9") for index in range(ASK_BURST + 1)]
    asked = [deliver(server, c.send(b"hi", 0.0), c, 0.0) for c in clients]
    assert [len(actions) for actions in asked] == [1] * ASK_BURST + [0]
    assert server.drops[DropReason.ADMISSIONS_RATE_LIMITED] == 1
    other = client_at(server, ASK_BURST + 1, host="198.18.0.10")
    assert deliver(server, other.send(b"hi", 0.0), other, 0.0) != []


def test_an_allowed_ip_another_peer_owns_admits_nothing(server: Device) -> None:
    owner = server.add_peer(public_key(generate_private_key(seeded_rng(99))))
    server.allowed_ips.insert(SETTINGS.allowed_ips[0], owner)
    client = client_at(server, 1)
    deliver(server, client.send(b"hello", 0.0), client, 0.0)
    with pytest.raises(ValueError, match=r"allowed_ip=10\.0\.0\.2/32 belongs to peer"):
        server.admit_peer(client.public_key, SETTINGS, 0.0, WALL_EPOCH)
    assert list(server.peers) == [owner.public_key]
    assert server.allowed_ips.lookup(bytes([10, 0, 0, 2])) is owner


def test_under_load_an_unknown_key_is_asked_about_only_with_a_cookie() -> None:
    server = server_device(ask_for_peers=True, under_load_threshold=1)
    client = client_at(server, 1)
    first = deliver(server, client.send(b"hello", 0.0), client, 0.0)
    assert [data[0] for data in datagrams_of(first)] == [COOKIE_REPLY]
    assert client.receive(datagrams_of(first), 0.0) == []
    initiation, now = client.retransmit()  # now with mac2
    assert deliver(server, initiation, client, now) == [
        PeerWanted(client.public_key, client.endpoint)
    ]


def test_a_device_that_does_not_ask_drops_unknown_keys() -> None:
    server = server_device()
    client = client_at(server, 1)
    assert deliver(server, client.send(b"hello", 0.0), client, 0.0) == []
    assert server.drops[DropReason.UNKNOWN_PEER] == 1


# -- peer_lookup: the embedder's synchronous form ------------------------------------------------


def lookup_recording(
    answer: PeerSettings | None,
) -> tuple[Callable[[bytes, Endpoint], PeerSettings | None], list[tuple[bytes, Endpoint]]]:
    calls: list[tuple[bytes, Endpoint]] = []

    def lookup(key: bytes, endpoint: Endpoint) -> PeerSettings | None:
        calls.append((key, endpoint))
        return answer

    return lookup, calls


def test_a_lookup_that_returns_settings_is_answered_at_once() -> None:
    lookup, calls = lookup_recording(SETTINGS)
    server = server_device(peer_lookup=lookup)
    client = client_at(server, 1)
    response = datagrams_of(deliver(server, client.send(b"hello", 0.0), client, 0.0))
    assert calls == [(client.public_key, client.endpoint)]
    assert [data[0] for data in response] == [RESPONSE]
    delivered = packets_of(deliver(server, client.receive(response, 0.0), client, 0.0))
    assert delivered == [ipv4_packet("10.0.0.2", "10.0.0.1", b"hello")]


def test_a_lookup_that_returns_none_refuses_the_key_for_60_seconds() -> None:
    lookup, calls = lookup_recording(None)
    server = server_device(peer_lookup=lookup)
    client = client_at(server, 1)
    assert deliver(server, client.send(b"hello", 0.0), client, 0.0) == []
    initiation, now = client.retransmit()
    assert deliver(server, initiation, client, now) == []
    assert len(calls) == 1
    assert server.drops[DropReason.PEER_REFUSED] == 2


def test_a_lookup_whose_allowed_ip_is_taken_refuses_the_key() -> None:
    lookup, _ = lookup_recording(SETTINGS)
    server = server_device(peer_lookup=lookup)
    owner = server.add_peer(public_key(generate_private_key(seeded_rng(99))))
    server.allowed_ips.insert(SETTINGS.allowed_ips[0], owner)
    client = client_at(server, 1)
    assert deliver(server, client.send(b"hello", 0.0), client, 0.0) == []
    assert list(server.peers) == [owner.public_key]
    assert server.drops[DropReason.PEER_REFUSED] == 1


# -- the tables stay bounded ---------------------------------------------------------------------


def initiation_stub(index: int) -> Initiation:
    return Initiation(index, bytes(32), bytes(48), bytes(28))


def test_refusals_are_forgotten_oldest_first_beyond_max_refused() -> None:
    admissions = Admissions()
    keys = [index.to_bytes(32, "big") for index in range(MAX_REFUSED + 1)]
    for key in keys:
        admissions.refuse(key, 0.0)
    assert not admissions.refused(keys[0], 1.0)
    assert all(admissions.refused(key, 1.0) for key in keys[1:])


def test_a_flood_of_keys_from_many_sources_holds_at_most_max_held() -> None:
    admissions = Admissions()
    outcomes = [
        admissions.hold(
            index.to_bytes(32, "big"),
            initiation_stub(index),
            Endpoint(f"198.18.{index >> 8}.{index & 0xFF}", 1000),
            None,
            index / 10_000,
        )
        for index in range(10_000)
    ]
    assert outcomes.count(Asked.NEW) == MAX_HELD
    assert len(admissions) == MAX_HELD
