"""Sticky sources, the device's half: where a peer's datagrams arrived (the Local the I/O edge
hands over with them) is kept beside the peer's endpoint and goes with every datagram to it, as
the kernel keeps endpoint->src4 and src6. Device b answers device a, whose datagrams reach it on
one of b's local addresses; the device never looks inside a Local, so any value stands for one.

The edge's half (the control messages) is in test_pktinfo.py, both halves against the kernel in
tests/netns/test_sticky_source.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from fakes import Link, seeded_rng

from wgpy import uapi
from wgpy.configure import apply_update
from wgpy.core.constants import KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_TIMEOUT
from wgpy.core.constants import REKEY_TIMEOUT_JITTER_MAX as JITTER
from wgpy.core.device import Action, SendDatagrams, datagrams_of
from wgpy.core.endpoint import Endpoint, Local
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.keys import generate_private_key, public_key

INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
A_TO_B = ipv4_packet("10.0.0.1", "10.0.0.2", b"ping")
B_TO_A = ipv4_packet("10.0.0.2", "10.0.0.1", b"pong")
PRIMARY: Local = (0, 8, b"198.18.0.2")
SECONDARY: Local = (0, 8, b"198.18.0.3")


def sends(actions: Iterable[Action]) -> list[tuple[int, Endpoint, Local | None]]:
    """Each datagram the actions send: its message type, its endpoint and its local."""
    return [
        (data[0], action.endpoint, action.local)
        for action in actions
        if isinstance(action, SendDatagrams)
        for data in action.datagrams
    ]


def from_a(link: Link) -> bytes:
    """The one datagram a sends for A_TO_B."""
    (data,) = datagrams_of(link.a.device.handle_tun_packet(A_TO_B, link.now, link.wall))
    return data


def to_b(
    link: Link, data: bytes, local: Local | None, source: Endpoint | None = None
) -> list[Action]:
    """`data` arriving at b from `source` (a's endpoint unless given) on `local`."""
    source = source or link.a.endpoint
    return link.b.device.handle_datagram(data, source, link.now, link.wall, local)


def to_a(link: Link, actions: Iterable[Action]) -> list[bytes]:
    """What a sends back for the datagrams in b's `actions`."""
    replies: list[bytes] = []
    for data in datagrams_of(actions):
        replies += datagrams_of(
            link.a.device.handle_datagram(data, link.b.endpoint, link.now, link.wall)
        )
    return replies


def b_sends_data(link: Link) -> list[tuple[int, Endpoint, Local | None]]:
    return sends(link.b.device.handle_tun_packet(B_TO_A, link.now, link.wall))


def connected_on(local: Local) -> Link:
    """a and b after a handshake a started, a's datagrams reaching b on `local`."""
    link = Link()
    (confirmation,) = to_a(link, to_b(link, from_a(link), local))
    assert datagrams_of(to_b(link, confirmation, local)) == []
    return link


def test_the_response_leaves_from_where_the_initiation_arrived() -> None:
    link = Link()
    assert sends(to_b(link, from_a(link), SECONDARY)) == [(RESPONSE, link.a.endpoint, SECONDARY)]


def test_data_and_keepalives_to_the_peer_leave_from_where_its_datagrams_arrived() -> None:
    link = connected_on(SECONDARY)
    data = link.b.device.handle_tun_packets([B_TO_A, B_TO_A], link.now, link.wall)
    assert sends(data) == [(TRANSPORT, link.a.endpoint, SECONDARY)] * 2
    to_b(link, from_a(link), SECONDARY)
    link.now += KEEPALIVE_TIMEOUT
    keepalive = link.b.device.handle_timer(link.now, link.wall)
    assert sends(keepalive) == [(TRANSPORT, link.a.endpoint, SECONDARY)]


def test_the_initiator_learns_where_the_response_arrived_too() -> None:
    link = Link()
    (response,) = to_a(link, link.b.device.handle_tun_packet(B_TO_A, link.now, link.wall))
    assert sends(to_b(link, response, SECONDARY)) == [(TRANSPORT, link.a.endpoint, SECONDARY)]


def test_the_local_moves_with_the_endpoint_when_the_peer_roams() -> None:
    link = connected_on(SECONDARY)
    roamed = Endpoint("198.18.0.9", 4444)
    to_b(link, from_a(link), PRIMARY, source=roamed)
    assert b_sends_data(link) == [(TRANSPORT, roamed, PRIMARY)]


def test_a_datagram_that_fails_authentication_moves_neither_endpoint_nor_local() -> None:
    link = connected_on(SECONDARY)
    data = from_a(link)
    forged = data[:-1] + bytes([data[-1] ^ 1])
    to_b(link, forged, PRIMARY, source=Endpoint("198.18.0.9", 4444))
    assert b_sends_data(link) == [(TRANSPORT, link.a.endpoint, SECONDARY)]


def test_under_load_the_cookie_reply_leaves_from_where_the_initiation_arrived() -> None:
    link = Link(under_load_threshold_b=1)
    reply = to_b(link, from_a(link), SECONDARY)
    assert sends(reply) == [(COOKIE_REPLY, link.a.endpoint, SECONDARY)]


def test_a_forgotten_local_leaves_the_source_to_the_routing_until_a_datagram_comes() -> None:
    link = connected_on(SECONDARY)
    link.b.device.forget_local(SECONDARY)
    assert b_sends_data(link) == [(TRANSPORT, link.a.endpoint, None)]
    to_b(link, from_a(link), PRIMARY)
    assert b_sends_data(link) == [(TRANSPORT, link.a.endpoint, PRIMARY)]


def test_forgetting_a_local_keeps_the_other_peers_locals() -> None:
    link = connected_on(SECONDARY)
    other = link.b.device.add_peer(public_key(generate_private_key(seeded_rng(2))))
    other.local = PRIMARY
    link.b.device.forget_local(SECONDARY)
    assert (link.peer_of_a.local, other.local) == (None, PRIMARY)


def test_a_retransmitted_initiation_leaves_from_the_routing_tables_choice() -> None:
    link = connected_on(SECONDARY)
    link.now += KEEPALIVE_TIMEOUT
    keepalive = link.b.device.handle_timer(link.now, link.wall)
    assert sends(keepalive) == [(TRANSPORT, link.a.endpoint, SECONDARY)]
    link.now += REJECT_AFTER_TIME
    assert b_sends_data(link) == [(INITIATION, link.a.endpoint, SECONDARY)]
    link.now += REKEY_TIMEOUT + JITTER
    retry = link.b.device.handle_timer(link.now, link.wall)
    assert sends(retry) == [(INITIATION, link.a.endpoint, None)]


def test_a_configured_endpoint_is_sent_to_from_the_routing_tables_choice() -> None:
    link = connected_on(SECONDARY)
    key = link.peer_of_a.public_key.hex()
    update = uapi.parse_set([f"public_key={key}", "endpoint=198.18.0.9:51820"])
    apply_update(link.b.device, update, link.now)
    assert b_sends_data(link) == [(TRANSPORT, Endpoint("198.18.0.9", 51820), None)]
