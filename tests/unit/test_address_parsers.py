"""The address parsers read addresses with inet_pton, for speed (a `set` of 10,000 peers holds
30,000 of them). Each must take and refuse exactly what it did when it read them with the ipaddress
module, and say so in the same words: here that module is the trivially correct twin. So must
numbers, read with str.isdigit where a pattern read them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from hypothesis import example, given
from hypothesis import strategies as st
from strategies import address_texts

from wgpy import uapi, values
from wgpy.core.endpoint import Endpoint

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
bit_texts = st.one_of(st.integers(0, 129).map(str), st.text("0123456789+-", max_size=4))
ports = st.sampled_from(["0", "51820", "65536", "x", ""])


def twin_number(text: str, maximum: int) -> int:
    """wgpy.values.parse_number as it was: a pattern of ASCII digits."""
    significant = text.lstrip("0")
    ascii_digits = re.fullmatch(r"[0-9]+", text) and len(significant) <= 20
    if ascii_digits and int(significant or "0") <= maximum:
        return int(significant or "0")
    raise values.InvalidValue(f"not a number in 0-{maximum}: {text!r}")


def twin_ip(text: str) -> IPAddress:
    """wgpy.values.parse_ip as it was: the ipaddress module, zones refused."""
    if "%" not in text:
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            pass
    raise values.InvalidAddress(text)


def twin_allowed_ip(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """wgpy.values.parse_allowed_ip as it was."""
    address_text, slash, cidr = text.partition("/")
    address = twin_ip(address_text)
    bits = values.parse_number(cidr, address.max_prefixlen) if slash else address.max_prefixlen
    return ipaddress.ip_interface((address, bits))


def twin_uapi_endpoint(value: str) -> Endpoint:
    """wgpy.uapi.parse_endpoint as it was (it split the text as it does now)."""
    host, bracketed, port = uapi.split_endpoint(value)
    address = ipaddress.ip_address(host)
    if bracketed != (address.version == 6):
        raise ValueError(f"IPv6 addresses, and only they, go in [brackets]: {value!r}")
    zone = getattr(address, "scope_id", None)
    if zone is not None and not uapi._ZONE.fullmatch(zone):
        raise ValueError(f"a zone is an interface name or index: {value!r}")
    return Endpoint(uapi.format_ip(address), uapi._parse_uint(port, 16))


def twin_uapi_allowed_ip(value: str) -> uapi.AllowedIP:
    """wgpy.uapi.parse_allowed_ip as it was."""
    address_text, sep, bits = value.rpartition("/")
    if not sep:
        raise ValueError(f"no '/' in prefix {value!r}")
    address = twin_ip(address_text)
    if not uapi._PREFIX_BITS.fullmatch(bits) or int(bits) > address.max_prefixlen:
        raise ValueError(f"bad bits after slash: {value!r}")
    return ipaddress.ip_network((address, int(bits)), strict=False)


def outcome(parse: Callable[[str], object], text: str) -> object:
    """What `parse` makes of `text`: its result, or the kind and words of its refusal."""
    try:
        return parse(text)
    except ValueError as error:
        return type(error), str(error)


@given(address_texts)
@example("fe80::1%eth0")
@example("1.2.3.4\x00")
@example("\udcff")
def test_an_address_is_read_as_the_ipaddress_module_reads_it(text: str) -> None:
    assert outcome(values.parse_ip, text) == outcome(twin_ip, text)


@given(address_texts, st.one_of(st.just(""), bit_texts.map(lambda bits: f"/{bits}")))
def test_an_allowed_ip_of_a_configuration_is_read_as_before(address: str, suffix: str) -> None:
    text = address + suffix
    assert outcome(values.parse_allowed_ip, text) == outcome(twin_allowed_ip, text)


@given(address_texts, bit_texts)
@example("192.0.2.7", "24")
@example("fd00::1", "0")
def test_an_allowed_ip_of_a_set_is_read_and_masked_as_before(address: str, bits: str) -> None:
    text = f"{address}/{bits}"
    assert outcome(uapi.parse_allowed_ip, text) == outcome(twin_uapi_allowed_ip, text)


@given(
    address_texts, st.booleans(), st.sampled_from(["", "%eth0", "%", "%a%b", "%a b", "%7"]), ports
)
@example("fe80::1", True, "%eth0", "1")
@example("::ffff:192.0.2.1", True, "", "7")
@example("192.0.2.1", False, "%eth0", "1")
def test_an_endpoint_of_a_set_is_read_as_before(
    address: str, bracketed: bool, zone: str, port: str
) -> None:
    host = f"[{address}{zone}]" if bracketed else f"{address}{zone}"
    text = f"{host}:{port}"
    assert outcome(uapi.parse_endpoint, text) == outcome(twin_uapi_endpoint, text)


@given(
    st.one_of(st.text("0123456789", max_size=24), st.text(max_size=6)), st.sampled_from([1, 65535])
)
@example("\uff11", 65535)  # a fullwidth digit: isdigit, but not ASCII
@example("٣", 65535)
@example("0" * 30 + "1", 1)
def test_a_number_is_read_as_the_pattern_read_it(text: str, maximum: int) -> None:
    ours = outcome(lambda t: values.parse_number(t, maximum), text)
    assert ours == outcome(lambda t: twin_number(t, maximum), text)
