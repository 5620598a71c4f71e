"""The one Endpoint type: a peer's UDP address, as wg writes it and the socket module takes it."""

from __future__ import annotations

from wgpy.core.endpoint import Endpoint


def test_an_endpoint_writes_ipv6_in_brackets() -> None:
    assert str(Endpoint("fd00::1", 51820)) == "[fd00::1]:51820"
    assert str(Endpoint("fe80::1%eth0", 1)) == "[fe80::1%eth0]:1"
    assert str(Endpoint("192.0.2.1", 51820)) == "192.0.2.1:51820"


def test_an_endpoint_equals_and_hashes_as_the_address_tuple_recvfrom_gives() -> None:
    endpoint = Endpoint("192.0.2.1", 51820)
    assert endpoint == ("192.0.2.1", 51820)
    assert {("192.0.2.1", 51820): "peer"}[endpoint] == "peer"
