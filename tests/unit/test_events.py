"""What the device tells a verbose log: wireguard-go's lines for handshakes, keepalives and
retries, and roaming, each naming its peer by the short form of its key only."""

from __future__ import annotations

from fakes import Link

from wgpy.core.constants import KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REKEY_TIMEOUT
from wgpy.core.endpoint import Endpoint
from wgpy.core.events import Event, short_peer
from wgpy.core.ippacket import ipv4_packet

A_TO_B = ipv4_packet("10.0.0.1", "10.0.0.2", b"ping")
B_TO_A = ipv4_packet("10.0.0.2", "10.0.0.1", b"pong")


class Told(list[tuple[str, bytes, Event, object]]):
    """Every event told by either device: (which device, the peer's key, the event, detail)."""

    def listen(self, link: Link) -> None:
        for node in (link.a, link.b):
            node.device.events = lambda peer, event, detail=None, name=node.name: self.append(
                (name, peer, event, detail)
            )

    def by(self, name: str) -> list[Event]:
        return [event for who, _, event, _ in self if who == name]


def told(link: Link) -> Told:
    events = Told()
    events.listen(link)
    return events


def test_a_handshake_is_told_sent_received_and_completed_on_both_sides() -> None:
    link = Link()
    events = told(link)
    link.send("a", A_TO_B)
    link.send("b", B_TO_A)
    assert events.by("a") == [
        Event.INITIATION_SENT,
        Event.RESPONSE_RECEIVED,
        Event.HANDSHAKE_COMPLETED,
    ]
    assert events.by("b") == [
        Event.INITIATION_RECEIVED,
        Event.RESPONSE_SENT,
        Event.HANDSHAKE_COMPLETED,
    ]
    assert {peer for who, peer, _, _ in events if who == "a"} == {link.peer_of_b.public_key}


def test_keepalives_sent_and_received_are_told() -> None:
    link = Link()
    link.send("a", A_TO_B)
    events = told(link)
    link.advance(KEEPALIVE_TIMEOUT + 1)  # b answers a's data with a passive keepalive
    assert events.by("b") == [Event.KEEPALIVE_SENT]
    assert events.by("a") == [Event.KEEPALIVE_RECEIVED]


def test_retries_are_counted_from_two_and_giving_up_is_told() -> None:
    link = Link()
    link.lose = lambda sender, data: True
    events = told(link)
    link.send("a", A_TO_B)
    link.advance((MAX_TIMER_HANDSHAKES + 2) * (REKEY_TIMEOUT + 1))
    retries = [detail for who, _, event, detail in events if event is Event.HANDSHAKE_RETRY]
    # wireguard-go's count: tries 2 to 20, then it gives up after 20 attempts in all.
    assert retries == list(range(2, MAX_TIMER_HANDSHAKES + 3))
    assert events.by("a")[-1] is Event.HANDSHAKE_GAVE_UP
    assert Event.HANDSHAKE_RETRY.describe(2) == (
        "Handshake did not complete after 5 seconds, retrying (try 2)"
    )


def test_a_peer_that_roams_is_told_with_its_new_endpoint() -> None:
    link = Link()
    link.send("a", A_TO_B)
    events = told(link)
    roamed = Endpoint("198.18.0.9", 40000)
    link.a.endpoint = roamed
    link.send("a", A_TO_B)
    assert ("b", link.peer_of_a.public_key, Event.ROAMED, roamed) in events
    assert Event.ROAMED.describe(roamed) == "Endpoint changed to 198.18.0.9:40000"


def test_nothing_is_told_where_no_one_listens() -> None:
    link = Link()
    link.send("a", A_TO_B)
    assert link.a.device.events is None and link.b.received == [A_TO_B]


def test_a_peer_is_named_by_the_first_and_last_four_characters_of_its_key() -> None:
    # base64 of bytes 0..31 is AAECAwQF...GxwdHh8=, its last character the padding.
    assert short_peer(bytes(range(32))) == "peer(AAEC…dHh8)"
