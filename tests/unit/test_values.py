"""The values wg reads, by wireguard-tools' src/config.c: what each parser takes, what it refuses,
and which refusals carry a kind of their own for wg's wording (the wording itself is pinned in
tests/test_cli_wg.py, the configuration file's in tests/test_config.py)."""

from __future__ import annotations

import ipaddress

import pytest

from wgpy import values
from wgpy.values import InvalidAddress, InvalidValue, UnmatchedBrace

KEY = "6EtabScXwQA6E7QxVwNT26ypFGzxUMX4V1aA/rpSAno="


def test_a_key_is_exactly_44_characters_of_canonical_base64() -> None:
    assert values.parse_key(KEY) == bytes.fromhex(
        "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a"
    )
    for text in (f" {KEY}", f"{KEY}\n", KEY[:-2] + "==", KEY[:42] + "B=", "A" * 44):
        with pytest.raises(InvalidValue):
            values.parse_key(text)


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("51820", 51820),
        ("0", 0),
        ("https", 443),  # a service name, as getaddrinfo reads it for wg
        ("70000", 70000 - 65536),  # glibc keeps the low 16 bits
        (" 5", 5),  # strtoul skips leading space
    ],
)
def test_a_port_is_what_getaddrinfo_makes_of_it_for_wg(text: str, port: int) -> None:
    assert values.parse_port(text) == port


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Unable to parse empty port"),
        ("nosuchservice", "Servname not supported for ai_socktype: `nosuchservice'"),
        ("-1", "Servname not supported for ai_socktype: `-1'"),
        ("\udcff", "Servname not supported for ai_socktype: `\udcff'"),  # bytes from argv
    ],
)
def test_a_port_getaddrinfo_refuses_is_refused_in_wg_s_words(text: str, message: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        values.parse_port(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "fwmark"),
    [
        ("off", 0),
        ("OfF", 0),
        ("0", 0),
        ("4660", 4660),
        ("0x1234", 0x1234),
        ("0xFFFFFFFF", 2**32 - 1),
    ],
)
def test_a_fwmark_is_off_or_32_bits_in_decimal_or_lowercase_0x_hexadecimal(
    text: str, fwmark: int
) -> None:
    assert values.parse_fwmark(text) == fwmark


@pytest.mark.parametrize("text", ["0X10", "0x", "0x100000000", "4294967296", "-1", " 1", "on"])
def test_any_other_fwmark_is_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="neither off nor a number in 0-0xffffffff"):
        values.parse_fwmark(text)


@pytest.mark.parametrize(("text", "interval"), [("off", 0), ("Off", 0), ("0", 0), ("65535", 65535)])
def test_a_persistent_keepalive_is_off_or_seconds(text: str, interval: int) -> None:
    assert values.parse_persistent_keepalive(text) == interval


@pytest.mark.parametrize("text", ["65536", "on", "+1", "1_0", "\u0661", ""])
def test_a_number_is_ascii_decimal_digits_in_range(text: str) -> None:
    with pytest.raises(InvalidValue, match="not a number in 0-65535"):
        values.parse_number(text, 0xFFFF)


def test_a_number_with_leading_zeros_is_read_like_strtoul_however_many() -> None:
    assert values.parse_number("0" * 5000 + "15", 32) == 15
    with pytest.raises(InvalidValue):
        values.parse_number("1" * 5000, 2**64)


def test_an_allowed_ip_keeps_its_host_part_for_the_caller_and_is_a_host_without_a_mask() -> None:
    written = values.parse_allowed_ip("192.0.2.7/24")
    assert (written.ip, written.network) == (
        ipaddress.ip_address("192.0.2.7"),
        ipaddress.ip_network("192.0.2.0/24"),
    )
    assert values.parse_allowed_ip("fd00::7").network == ipaddress.ip_network("fd00::7/128")
    assert values.parse_allowed_ip("198.18.0.9/015").network.prefixlen == 15


@pytest.mark.parametrize("text", ["", "192.0.2.256", "fe80::1%eth0", "01.2.3.4", "host"])
def test_an_address_inet_pton_refuses_is_an_invalid_address_naming_it(text: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        values.parse_allowed_ip(f"{text}/8")
    assert caught.value.text == text


@pytest.mark.parametrize("text", ["192.0.2.0/33", "fd00::/129", "192.0.2.0/", "192.0.2.0/+8"])
def test_a_bad_prefix_length_is_invalid_but_not_an_invalid_address(text: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        values.parse_allowed_ip(text)
    assert not isinstance(caught.value, InvalidAddress)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("192.0.2.1:51820", "192.0.2.1", "51820"),
        ("[fd00::1]:51820", "fd00::1", "51820"),
        ("fd00::1:51820", "fd00::1", "51820"),  # cut at the last colon
        ("vpn.example.com:https", "vpn.example.com", "https"),
        (":1", "", "1"),  # getaddrinfo's to refuse
    ],
)
def test_an_endpoint_is_split_into_host_and_port_as_wg_splits_it(
    text: str, host: str, port: str
) -> None:
    assert values.parse_endpoint(text) == (host, port)


def test_an_endpoint_without_its_closing_bracket_is_an_unmatched_brace() -> None:
    with pytest.raises(UnmatchedBrace):
        values.parse_endpoint("[fd00::1:51820")


@pytest.mark.parametrize("text", ["", "192.0.2.1", "192.0.2.1:", "[fd00::1]", "[fd00::1]51820"])
def test_an_endpoint_without_a_port_is_invalid_but_not_an_unmatched_brace(text: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        values.parse_endpoint(text)
    assert not isinstance(caught.value, UnmatchedBrace)
