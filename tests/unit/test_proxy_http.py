"""The HTTP proxy's client side (wgpy.proxy.http): CONNECT becomes a tunnel, an absolute-URI
request is rewritten for its origin, and every bad request is answered with a 4xx and a close,
never an exception."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgpy.lab.proxy import response_status
from wgpy.proxy.http import Body, Forward, HttpProxyConnection, Phase, Rejected, Tunnel


def test_connect_asks_for_a_tunnel_and_keeps_what_follows_for_the_relay() -> None:
    connection = HttpProxyConnection()
    events = connection.receive(b"CONNECT svc.example:443 HTTP/1.1\r\nHost: svc.example\r\n\r\nTLS")
    assert events == [Tunnel("svc.example", 443)]
    assert response_status(connection.established()) == 200
    assert connection.trailing_data() == b"TLS"
    assert connection.phase == Phase.RELAYING


def test_connect_to_an_ipv6_literal_names_the_address_without_brackets() -> None:
    events = HttpProxyConnection().receive(b"CONNECT [fd00::7]:22 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert events == [Tunnel("fd00::7", 22)]


def test_a_failed_tunnel_is_answered_with_the_status_given() -> None:
    connection = HttpProxyConnection()
    connection.receive(b"CONNECT svc.example:443 HTTP/1.1\r\nHost: svc.example\r\n\r\n")
    assert response_status(connection.failed(502, "refused")) == 502
    assert connection.phase == Phase.CLOSED


def test_an_absolute_uri_request_is_forwarded_in_origin_form_without_hop_by_hop_headers() -> None:
    connection = HttpProxyConnection()
    events = connection.receive(
        b"POST http://svc.example:8080/a/b?c=d HTTP/1.1\r\nHost: svc.example:8080\r\n"
        b"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    forward, body, end = events
    assert isinstance(forward, Forward) and (forward.host, forward.port) == ("svc.example", 8080)
    origin = h11.Connection(h11.SERVER)
    origin.receive_data(forward.head + body.data + end.data)  # type: ignore[union-attr]
    request = origin.next_event()
    assert isinstance(request, h11.Request)
    assert request.target == b"/a/b?c=d"
    assert dict(request.headers) == {
        b"host": b"svc.example:8080",
        b"content-length": b"5",
        b"connection": b"close",
    }
    assert bytes(origin.next_event().data) == b"hello"  # type: ignore[union-attr]
    assert body == Body(b"hello", end=False) and end == Body(b"", end=True)


def test_a_chunked_body_is_forwarded_chunked() -> None:
    connection = HttpProxyConnection()
    events = connection.receive(
        b"PUT http://svc.example/ HTTP/1.1\r\nHost: svc.example\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert b"".join(e.data for e in events if isinstance(e, Body)) == b"3\r\nabc\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"GET /local HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # origin form: not for a proxy
        (b"GET https://svc.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET http://user@svc.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"CONNECT svc.example HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # no port
        (b"CONNECT svc.example:99999 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS, not HTTP
        (b"GET http://svc.example/ HTTP/1.1\r\n" + b"X-Filler: 0123456789\r\n" * 2000, 431),
    ],
)
def test_a_bad_request_is_answered_with_an_error_and_closed(request_: bytes, status: int) -> None:
    connection = HttpProxyConnection()
    events = connection.receive(request_)
    assert [type(event) for event in events] == [Rejected]
    assert response_status(connection.data_to_send()) == status
    assert connection.phase == Phase.CLOSED


def test_a_truncated_request_waits_for_the_rest() -> None:
    connection = HttpProxyConnection()
    assert connection.receive(b"CONNECT svc.example:443 HTTP/1.1\r\nHost: svc") == []
    assert connection.phase == Phase.REQUEST


@given(st.binary(max_size=2000))
def test_any_bytes_end_in_a_request_a_rejection_or_a_wait(data: bytes) -> None:
    connection = HttpProxyConnection(max_head=1024)
    events = connection.receive(data)
    if any(isinstance(event, Rejected) for event in events):
        assert connection.phase == Phase.CLOSED
        reply = connection.data_to_send()
        assert 400 <= response_status(reply) < 500 if data else reply == b""  # b"": the client left
    else:
        assert connection.data_to_send() == b""
