"""SOCKS5's server side (wgpy.proxy.socks5), byte for byte as RFC 1928 and RFC 1929 write it:
negotiation, requests of each address type, replies, UDP headers, and every bad input answered
with the RFC's reply or a close, never an exception."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgpy.proxy.socks5 import (
    Command,
    Phase,
    Rejected,
    Reply,
    Request,
    Socks5Connection,
    UdpDatagram,
    encode_address,
    parse_udp_datagram,
    udp_datagram,
)

NO_AUTH = b"\x05\x01\x00"
CONNECT_V4 = b"\x05\x01\x00\x01" + bytes([198, 18, 0, 7]) + struct.pack("!H", 80)


def negotiated(credentials: dict[str, str] | None = None) -> Socks5Connection:
    connection = Socks5Connection(credentials)
    assert connection.receive(NO_AUTH if credentials is None else b"\x05\x01\x02") == []
    connection.data_to_send()
    return connection


def test_no_authentication_is_chosen_when_no_credentials_are_configured() -> None:
    connection = Socks5Connection()
    assert connection.receive(b"\x05\x02\x02\x00") == []
    assert connection.data_to_send() == b"\x05\x00"
    assert connection.phase == Phase.REQUEST


@pytest.mark.parametrize(
    ("address", "host"),
    [
        (b"\x01\xc6\x12\x00\x07", "198.18.0.7"),
        (b"\x04" + bytes.fromhex("fd00" + "00" * 13 + "07"), "fd00::7"),
        (b"\x03\x0bsvc.example", "svc.example"),
    ],
)
def test_a_connect_request_names_its_address_of_each_type(address: bytes, host: str) -> None:
    connection = negotiated()
    events = connection.receive(b"\x05\x01\x00" + address + b"\x1f\x90")
    assert events == [Request(Command.CONNECT, host, 8080, None)]
    assert connection.phase == Phase.AWAITING_REPLY


def test_a_request_split_into_single_bytes_is_read_whole() -> None:
    connection = Socks5Connection()
    events = [event for byte in NO_AUTH + CONNECT_V4 for event in connection.receive(bytes([byte]))]
    assert events == [Request(Command.CONNECT, "198.18.0.7", 80, None)]


def test_a_successful_reply_carries_the_bound_address_and_starts_the_relay() -> None:
    connection = negotiated()
    connection.receive(CONNECT_V4 + b"GET / HTTP/1.0\r\n")
    connection.reply(Reply.SUCCEEDED, ("192.0.2.1", 40000))
    assert connection.data_to_send() == b"\x05\x00\x00\x01\xc0\x00\x02\x01" + struct.pack(
        "!H", 40000
    )
    assert connection.phase == Phase.RELAYING
    assert connection.trailing_data() == b"GET / HTTP/1.0\r\n"


def test_a_failed_reply_closes_the_connection() -> None:
    connection = negotiated()
    connection.receive(CONNECT_V4)
    connection.reply(Reply.CONNECTION_REFUSED)
    assert connection.data_to_send()[:2] == b"\x05\x05"
    assert connection.phase == Phase.CLOSED


def test_username_and_password_authenticate_the_request() -> None:
    connection = Socks5Connection({"alice": "s3cret"})
    connection.receive(b"\x05\x01\x02")
    assert connection.data_to_send() == b"\x05\x02"
    connection.receive(b"\x01\x05alice\x06s3cret")
    assert connection.data_to_send() == b"\x01\x00"
    assert connection.receive(CONNECT_V4) == [Request(Command.CONNECT, "198.18.0.7", 80, "alice")]


@pytest.mark.parametrize("login", [b"\x01\x05alice\x05wrong", b"\x01\x03bob\x06s3cret"])
def test_a_wrong_password_or_user_is_refused_and_closed(login: bytes) -> None:
    connection = negotiated({"alice": "s3cret"})
    events = connection.receive(login)
    assert connection.data_to_send() == b"\x01\x01"
    assert isinstance(events[0], Rejected) and connection.phase == Phase.CLOSED


def test_a_client_without_the_required_method_gets_no_acceptable_methods() -> None:
    connection = Socks5Connection({"alice": "s3cret"})
    events = connection.receive(NO_AUTH)
    assert connection.data_to_send() == b"\x05\xff"
    assert isinstance(events[0], Rejected)


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        (b"\x05\x02\x00\x01\xc6\x12\x00\x07\x00\x50", Reply.COMMAND_NOT_SUPPORTED),  # BIND
        (b"\x05\x09\x00\x01\xc6\x12\x00\x07\x00\x50", Reply.COMMAND_NOT_SUPPORTED),
        (b"\x05\x01\x00\x05\xc6\x12\x00\x07\x00\x50", Reply.ADDRESS_TYPE_NOT_SUPPORTED),
        (b"\x05\x01\x00\x03\x02\xff\xfe\x00\x50", Reply.ADDRESS_TYPE_NOT_SUPPORTED),
        (b"\x05\x01\x07\x01\xc6\x12\x00\x07\x00\x50", Reply.GENERAL_FAILURE),
    ],
)
def test_an_unsupported_request_gets_its_reply_and_a_close(request_: bytes, reply: Reply) -> None:
    connection = negotiated()
    events = connection.receive(request_)
    assert connection.data_to_send()[:2] == bytes([5, reply])
    assert isinstance(events[0], Rejected) and connection.phase == Phase.CLOSED


@pytest.mark.parametrize("greeting", [b"\x04\x01\x00\x50", b"GET / HTTP/1.1\r\n", b"\x00"])
def test_another_protocols_greeting_is_closed_without_a_reply(greeting: bytes) -> None:
    connection = Socks5Connection()
    assert isinstance(connection.receive(greeting)[0], Rejected)
    assert connection.data_to_send() == b""


def test_a_truncated_request_waits_for_the_rest() -> None:
    connection = negotiated()
    assert connection.receive(CONNECT_V4[:-1]) == []
    assert connection.phase == Phase.REQUEST


@given(st.binary(max_size=600), st.booleans())
def test_any_bytes_end_in_a_request_a_rejection_or_a_wait(data: bytes, auth: bool) -> None:
    connection = Socks5Connection({"u": "p"} if auth else None)
    events = connection.receive(data)
    assert len(events) <= 1
    if events and isinstance(events[0], Rejected):
        assert connection.phase == Phase.CLOSED
    elif events:
        assert connection.phase == Phase.AWAITING_REPLY
    assert len(connection.data_to_send()) <= 2 + 2 + 22  # a method choice, an auth status, a reply


def test_the_udp_header_round_trips_for_each_address_type() -> None:
    for host in ("198.18.0.7", "fd00::7", "svc.example"):
        assert parse_udp_datagram(udp_datagram(host, 53, b"payload")) == UdpDatagram(
            host, 53, b"payload"
        )


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\x00\x00",
        b"\x00\x00\x01\x01\xc6\x12\x00\x07\x00\x35x",
        b"\x01\x00\x00\x01",
        b"\x00" * 5,
    ],
)
def test_fragments_and_short_or_malformed_udp_headers_are_none(datagram: bytes) -> None:
    assert parse_udp_datagram(datagram) is None


def test_a_domain_name_longer_than_255_bytes_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="1 to 255"):
        encode_address("a." * 128, 80)
