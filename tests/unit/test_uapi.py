"""The configuration protocol, checked against wireguard-go's device/uapi.go; against a running
wireguard-go in tests/netns/test_uapi.py."""

from __future__ import annotations

import errno
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import addresses, keys32, ports, prefixes

from wgpy import uapi
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import clamp
from wgpy.errors import UapiError
from wgpy.uapi import DeviceState, DeviceUpdate, PeerState, PeerUpdate

net = ipaddress.ip_network

# Keys from the example on https://www.wireguard.com/xplatform/.
PRIVATE_HEX = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a"
PEER1_HEX = "b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33"
PSK_HEX = "188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52"
PEER2_HEX = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376"
PEER3_HEX = "662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58"
ZERO_HEX = "0" * 64


def body(text: str) -> list[str]:
    return text.strip("\n").split("\n")


# Framing ------------------------------------------------------------------------------------------


def read(*chunks: bytes) -> list[uapi.Request]:
    """The requests a reader cuts from `chunks`, received in turn."""
    reader = uapi.RequestReader()
    return [request for chunk in chunks for request in reader.feed(chunk)]


def set_request(text: str) -> uapi.Request:
    return uapi.Request("set", update=uapi.parse_set(body(text)))


def test_get_request_is_the_operation_line_and_an_empty_line() -> None:
    assert read(b"get=1\n\n") == [uapi.Request("get")]


def test_set_request_body_runs_to_the_empty_line_and_the_next_request_follows() -> None:
    assert read(b"set=1\nlisten_port=1\nfwmark=2\n\nget=1\n\n") == [
        set_request("listen_port=1\nfwmark=2"),
        uapi.Request("get"),
    ]


def test_a_request_arriving_byte_by_byte_is_complete_only_with_its_last_byte() -> None:
    request = b"set=1\nlisten_port=51820\n\n"
    reader = uapi.RequestReader()
    for byte in request[:-1]:
        assert list(reader.feed(bytes([byte]))) == []
    assert list(reader.feed(request[-1:])) == [set_request("listen_port=51820")]


def test_carriage_returns_before_newlines_are_dropped_as_bufio_scanner_does() -> None:
    assert read(b"set=1\nfwmark=7\r\n\r\n") == [set_request("fwmark=7")]


@pytest.mark.parametrize("cut", [b"set=1\n", b"set=1\nfwmark=7\n", b"set=1\nfwmark=7"])
def test_a_set_the_stream_ends_inside_gets_eproto_and_nothing_to_apply(cut: bytes) -> None:
    (request,) = read(cut, b"")
    assert request.update is None
    assert request.error is not None and request.error.errno == errno.EPROTO


def test_a_bad_line_fails_its_set_once_its_empty_line_comes_and_the_stream_goes_on() -> None:
    first, second = read(b"set=1\nfwmark=7\nlisten_port=x\nfwmark=nope\n\nget=1\n\n")
    assert first.update is None
    assert first.error is not None and "listen_port" in str(first.error)
    assert second == uapi.Request("get")


def test_at_eof_an_unfinished_get_gets_no_reply() -> None:
    assert read(b"get=1\n", b"") == []


@pytest.mark.parametrize("operation", [b"get=2\n", b"GET=1\n", b"set=1\r\n", b"\n"])
def test_an_unknown_operation_is_a_protocol_error(operation: bytes) -> None:
    with pytest.raises(UapiError) as caught:
        read(operation + b"\n")
    assert caught.value.errno == errno.EPROTO


@pytest.mark.parametrize("after", [b"x\n", b"x", b"\r\n"])
def test_anything_but_the_empty_line_after_get_is_invalid_at_once(after: bytes) -> None:
    with pytest.raises(UapiError, match="trailing character") as caught:
        read(b"get=1\n" + after)
    assert caught.value.errno == errno.EINVAL


@pytest.mark.parametrize("newline", [b"\n", b""])
def test_a_line_longer_than_the_bound_is_invalid_whether_or_not_it_has_ended(
    newline: bytes,
) -> None:
    line = b"fwmark=" + b"7" * uapi.MAX_LINE_BYTES
    with pytest.raises(UapiError, match="longer than") as caught:
        read(b"set=1\n" + line + newline)
    assert caught.value.errno == errno.EINVAL


def test_a_line_trickling_in_a_byte_at_a_time_is_refused_at_the_byte_past_the_bound() -> None:
    reader = uapi.RequestReader()
    assert list(reader.feed(b"set=1\n")) == []
    for _ in range(uapi.MAX_LINE_BYTES):
        assert list(reader.feed(b"x")) == []
    with pytest.raises(UapiError, match="longer than"):
        list(reader.feed(b"x"))


def test_a_line_at_the_bound_is_read() -> None:
    line = b"fwmark=" + b"0" * (uapi.MAX_LINE_BYTES - 8) + b"7"
    assert len(line) == uapi.MAX_LINE_BYTES
    assert read(b"set=1\n", line, b"\n\n") == [set_request("fwmark=7")]


def test_format_errno_writes_the_negated_errno_and_ends_the_reply() -> None:
    assert uapi.format_errno(0) == "errno=0\n\n"
    assert uapi.format_errno(errno.EINVAL) == "errno=-22\n\n"


@pytest.mark.parametrize("error", [0, errno.EINVAL, errno.EADDRINUSE])
def test_parse_errno_reads_back_what_format_errno_writes(error: int) -> None:
    assert uapi.parse_errno(uapi.format_errno(error)) == error


@pytest.mark.parametrize("reply", ["", "errno=\n\n", "errno=x\n\n", "listen_port=1\n"])
def test_a_reply_without_an_errno_is_a_protocol_error(reply: str) -> None:
    assert uapi.parse_errno(reply) == errno.EPROTO


# set ----------------------------------------------------------------------------------------------


def test_set_request_parses_into_one_update_of_device_and_peers() -> None:
    update = uapi.parse_set(
        body(f"""
private_key={PRIVATE_HEX}
listen_port=12912
fwmark=0
replace_peers=true
public_key={PEER1_HEX}
preshared_key={PSK_HEX}
replace_allowed_ips=true
allowed_ip=192.0.2.4/32
endpoint=[fd00:23::33%2]:51820
public_key={PEER2_HEX}
update_only=true
protocol_version=1
allowed_ip=198.18.4.6/32
persistent_keepalive_interval=111
endpoint=192.0.2.19:3233
public_key={PEER3_HEX}
remove=true
""")
    )
    assert update == DeviceUpdate(
        private_key=bytes.fromhex(PRIVATE_HEX),  # already clamped
        listen_port=12912,
        fwmark=0,
        replace_peers=True,
        peers=[
            PeerUpdate(
                public_key=bytes.fromhex(PEER1_HEX),
                preshared_key=bytes.fromhex(PSK_HEX),
                replace_allowed_ips=True,
                allowed_ips=[net("192.0.2.4/32")],
                endpoint=Endpoint("fd00:23::33%2", 51820),
            ),
            PeerUpdate(
                public_key=bytes.fromhex(PEER2_HEX),
                update_only=True,
                protocol_version=1,
                allowed_ips=[net("198.18.4.6/32")],
                persistent_keepalive_interval=111,
                endpoint=Endpoint("192.0.2.19", 3233),
            ),
            PeerUpdate(public_key=bytes.fromhex(PEER3_HEX), remove=True),
        ],
    )


def test_an_empty_set_changes_nothing() -> None:
    assert uapi.parse_set([]) == DeviceUpdate()


def test_private_key_is_clamped_as_wireguard_go_stores_it() -> None:
    update = uapi.parse_set([f"private_key={'ff' * 32}"])
    assert update.private_key == clamp(b"\xff" * 32)


def test_all_zero_private_key_means_remove_and_is_not_clamped() -> None:
    assert uapi.parse_set([f"private_key={ZERO_HEX}"]).private_key == uapi.ZERO_KEY


def test_uppercase_hex_keys_are_accepted_like_go_hex_decoding() -> None:
    update = uapi.parse_set([f"public_key={PEER1_HEX.upper()}"])
    assert update.peers[0].public_key == bytes.fromhex(PEER1_HEX)


def test_remove_drops_the_rest_of_the_block_but_still_checks_it() -> None:
    lines = [f"public_key={PEER1_HEX}", "remove=true", "allowed_ip=192.0.2.0/24"]
    assert uapi.parse_set(lines).peers == [PeerUpdate(bytes.fromhex(PEER1_HEX), remove=True)]
    with pytest.raises(UapiError, match="line 3: endpoint:"):
        uapi.parse_set([*lines[:2], "endpoint=nowhere"])


def test_the_same_peer_may_appear_in_several_blocks_applied_in_order() -> None:
    update = uapi.parse_set(
        [f"public_key={PEER1_HEX}", "remove=true", f"public_key={PEER1_HEX}", "allowed_ip=::/0"]
    )
    assert update.peers == [
        PeerUpdate(bytes.fromhex(PEER1_HEX), remove=True),
        PeerUpdate(bytes.fromhex(PEER1_HEX), allowed_ips=[net("::/0")]),
    ]


def test_replace_allowed_ips_forgets_the_prefixes_named_before_it() -> None:
    update = uapi.parse_set(
        [
            f"public_key={PEER1_HEX}",
            "allowed_ip=192.0.2.0/24",
            "allowed_ip=-198.18.0.0/15",
            "replace_allowed_ips=true",
            "allowed_ip=fd00::/8",
        ]
    )
    assert update.peers[0].replace_allowed_ips
    assert update.peers[0].allowed_ips == [net("fd00::/8")]
    assert update.peers[0].removed_allowed_ips == []


def test_allowed_ip_with_a_minus_removes_and_the_last_mention_of_a_prefix_wins() -> None:
    update = uapi.parse_set(
        [
            f"public_key={PEER1_HEX}",
            "allowed_ip=192.0.2.0/24",
            "allowed_ip=-192.0.2.0/24",
            "allowed_ip=-198.18.0.0/15",
            "allowed_ip=198.18.0.0/15",
            "allowed_ip=-fd00::/8",
        ]
    )
    assert update.peers[0].allowed_ips == [net("198.18.0.0/15")]
    assert update.peers[0].removed_allowed_ips == [net("192.0.2.0/24"), net("fd00::/8")]


def test_allowed_ips_are_masked_as_the_trie_stores_them() -> None:
    update = uapi.parse_set([f"public_key={PEER1_HEX}", "allowed_ip=192.0.2.77/24"])
    assert update.peers[0].allowed_ips == [net("192.0.2.0/24")]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["listen_port=65536"], "line 1: listen_port: not a number in 0-65535: '65536'"),
        (["listen_port=+1"], "line 1: listen_port: not a number"),
        (["listen_port= 1"], "line 1: listen_port: not a number"),
        (["listen_port=1_000"], "line 1: listen_port: not a number"),
        (["listen_port=\u0661"], "line 1: listen_port: not a number"),
        (["listen_port="], "line 1: listen_port: not a number"),
        (["fwmark=4294967296"], "line 1: fwmark: not a number in 0-4294967295"),
        (["fwmark=0x10"], "line 1: fwmark: not a number"),
        ([f"private_key={'0' * 63}"], "line 1: private_key: key is not 64 hex digits"),
        ([f"private_key={'g' * 64}"], "line 1: private_key: key is not 64 hex digits"),
        (["replace_peers=false"], "line 1: replace_peers: invalid value 'false'"),
        (["replace_peers=True"], "line 1: replace_peers: invalid value 'True'"),
        (["bogus=1"], "line 1: bogus: invalid device key"),
        (["allowed_ip=192.0.2.0/24"], "line 1: allowed_ip: invalid device key"),
        (["public_key=abc"], "line 1: public_key: key is not 64 hex digits"),
        ([f"public_key={PEER1_HEX}", "listen_port=1"], "line 2: listen_port: invalid peer key"),
        ([f"public_key={PEER1_HEX}", "remove=yes"], "line 2: remove: invalid value 'yes'"),
        ([f"public_key={PEER1_HEX}", "update_only=1"], "line 2: update_only: invalid value"),
        ([f"public_key={PEER1_HEX}", "protocol_version=2"], "line 2: protocol_version: invalid"),
        ([f"public_key={PEER1_HEX}", "protocol_version=01"], "line 2: protocol_version: invalid"),
        ([f"public_key={PEER1_HEX}", "preshared_key=00"], "line 2: preshared_key: key is not"),
        (
            [f"public_key={PEER1_HEX}", "persistent_keepalive_interval=-1"],
            "line 2: persistent_keepalive_interval: not a number in 0-65535",
        ),
    ],
)
def test_every_bad_line_is_einval_naming_line_and_key(lines: list[str], expected: str) -> None:
    with pytest.raises(UapiError) as caught:
        uapi.parse_set(lines)
    assert caught.value.errno == errno.EINVAL
    assert str(caught.value).startswith(expected)


def test_a_line_without_equals_sign_is_a_protocol_error_as_in_wireguard_go() -> None:
    with pytest.raises(UapiError, match="line 2: failed to parse line: no '='") as caught:
        uapi.parse_set(["listen_port=1", "oops"])
    assert caught.value.errno == errno.EPROTO
    # wireguard-go echoes the line; wgpy does not, as it may be a key that lost its '='.
    assert "oops" not in str(caught.value)


def test_a_failing_set_yields_no_partial_update() -> None:
    # parse_set returns the whole update or raises: nothing exists for the device to apply.
    with pytest.raises(UapiError, match="line 3"):
        uapi.parse_set([f"private_key={PRIVATE_HEX}", "listen_port=1", "listen_port=x"])


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("192.0.2.1:51820", Endpoint("192.0.2.1", 51820)),
        ("[fd00::1]:0", Endpoint("fd00::1", 0)),
        ("[FD00:0::1]:1", Endpoint("fd00::1", 1)),
        ("[fe80::1%eth0]:51820", Endpoint("fe80::1%eth0", 51820)),
        ("[::ffff:192.0.2.1]:7", Endpoint("::ffff:192.0.2.1", 7)),
    ],
)
def test_endpoint_is_an_ip_and_port_as_netip_parses_it(text: str, endpoint: Endpoint) -> None:
    assert uapi.parse_endpoint(text) == endpoint


@pytest.mark.parametrize(
    "text",
    [
        "192.0.2.1",
        "192.0.2.1:",
        ":51820",
        "fd00::1:51820",
        "[192.0.2.1]:51820",
        "[fd00::1:51820",
        "example.com:51820",
        "192.0.2.1:65536",
        "192.0.02.1:1",
    ],
)
def test_endpoint_rejects_what_netip_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        uapi.parse_endpoint(text)


@pytest.mark.parametrize("zone", ["\x00", "eth\x000", "a b", "a:b", "x" * 16])
def test_an_endpoint_zone_no_interface_name_could_be_is_rejected(zone: str) -> None:
    # Found by fuzzing (benchmarks/hardening/fuzz_uapi.py): a NUL in a zone was accepted, and the
    # daemon's first send to that endpoint raised TypeError out of its loop.
    with pytest.raises(UapiError) as caught:
        uapi.parse_set([f"public_key={PEER1_HEX}", f"endpoint=[fd00::1%{zone}]:1"])
    assert caught.value.errno == errno.EINVAL
    assert "line 2: endpoint: a zone is an interface name or index" in str(caught.value)


@pytest.mark.parametrize(
    "text", ["192.0.2.0", "192.0.2.0/33", "fd00::/129", "192.0.2.0/08", "fe80::%eth0/64", "x/8"]
)
def test_allowed_ip_rejects_what_netip_parse_prefix_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        uapi.parse_allowed_ip(text)


# get ----------------------------------------------------------------------------------------------


def known_state() -> DeviceState:
    return DeviceState(
        private_key=bytes.fromhex(PRIVATE_HEX),
        listen_port=12912,
        fwmark=0x1234,
        peers=[
            PeerState(
                public_key=bytes.fromhex(PEER1_HEX),
                preshared_key=bytes.fromhex(PSK_HEX),
                endpoint=Endpoint("fd00:23::33", 51820),
                last_handshake_time=(1700000000, 123456789),
                tx_bytes=38333,
                rx_bytes=2224,
                persistent_keepalive_interval=25,
                allowed_ips=[net("192.0.2.4/32"), net("fd00::/64"), net("::ffff:198.18.0.0/112")],
            ),
            PeerState(public_key=bytes.fromhex(PEER2_HEX)),
        ],
    )


def test_get_reply_matches_wireguard_go_byte_for_byte() -> None:
    # IpcGetOperation: device keys only when set, then per peer public_key, preshared_key (zeros
    # when unset), protocol_version, endpoint when known, the handshake time, counters, keepalive
    # and one allowed_ip per prefix in netip.Prefix.String form.
    assert uapi.format_get(known_state()) == (
        f"private_key={PRIVATE_HEX}\n"
        "listen_port=12912\n"
        "fwmark=4660\n"
        f"public_key={PEER1_HEX}\n"
        f"preshared_key={PSK_HEX}\n"
        "protocol_version=1\n"
        "endpoint=[fd00:23::33]:51820\n"
        "last_handshake_time_sec=1700000000\n"
        "last_handshake_time_nsec=123456789\n"
        "tx_bytes=38333\n"
        "rx_bytes=2224\n"
        "persistent_keepalive_interval=25\n"
        "allowed_ip=192.0.2.4/32\n"
        "allowed_ip=fd00::/64\n"
        "allowed_ip=::ffff:198.18.0.0/112\n"
        f"public_key={PEER2_HEX}\n"
        f"preshared_key={ZERO_HEX}\n"
        "protocol_version=1\n"
        "last_handshake_time_sec=0\n"
        "last_handshake_time_nsec=0\n"
        "tx_bytes=0\n"
        "rx_bytes=0\n"
        "persistent_keepalive_interval=0\n"
        "errno=0\n"
        "\n"
    )


def test_get_of_an_unconfigured_device_is_just_the_status() -> None:
    assert uapi.format_get(DeviceState()) == "errno=0\n\n"
    assert uapi.format_get(DeviceState(private_key=uapi.ZERO_KEY)) == "errno=0\n\n"


def test_parse_get_reads_the_reply_back() -> None:
    assert uapi.parse_get(uapi.format_get(known_state())) == known_state()


def test_parse_get_raises_the_errno_of_a_failed_reply() -> None:
    with pytest.raises(UapiError) as caught:
        uapi.parse_get("errno=-22\n\n")
    assert caught.value.errno == errno.EINVAL


@pytest.mark.parametrize(
    "reply", ["listen_port=1\n", "listen_port=1\n\nerrno=0\n\n", "listen_port=x\nerrno=0\n\n"]
)
def test_parse_get_rejects_a_malformed_reply(reply: str) -> None:
    with pytest.raises(UapiError) as caught:
        uapi.parse_get(reply)
    assert caught.value.errno == errno.EPROTO


def netip_string(address: ipaddress.IPv6Address) -> str:
    """Go's netip.Addr.String, as wgpy first wrote it with ipaddress alone: RFC 5952, but the
    IPv4-mapped addresses dotted."""
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


# Sixteen bits at a time, zero most often: runs of zeros are what RFC 5952's form turns on.
hextets = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xFD00]) | st.integers(0, 0xFFFF)
ipv6_addresses = st.builds(
    lambda words: ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words)),
    st.lists(hextets, min_size=8, max_size=8),
) | st.builds(  # IPv4-compatible (::a.b.c.d) and IPv4-mapped: what libc writes dotted
    lambda tail, v4: ipaddress.IPv6Address(bytes(10) + tail + v4.packed),
    st.sampled_from([b"\x00\x00", b"\xff\xff", b"\x00\x01"]),
    st.ip_addresses(v=4),
)


@given(ipv6_addresses)
def test_an_ipv6_address_is_written_as_netip_writes_it(address: ipaddress.IPv6Address) -> None:
    assert uapi.format_packed_ip(address.packed) == netip_string(address)
    assert uapi.format_ip(address) == netip_string(address)


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_written_dotted(address: ipaddress.IPv4Address) -> None:
    assert uapi.format_packed_ip(address.packed) == uapi.format_ip(address) == str(address)


def test_a_zone_follows_the_address() -> None:
    assert uapi.format_ip(ipaddress.IPv6Address("fe80::1%eth0")) == "fe80::1%eth0"
    assert uapi.format_ip(ipaddress.IPv6Address("::ffff:1.2.3.4%7")) == "::ffff:1.2.3.4%7"


# Round trips --------------------------------------------------------------------------------------

nonzero_keys = keys32.filter(lambda key: key != uapi.ZERO_KEY)
endpoints = st.builds(lambda a, p: Endpoint(uapi.format_ip(a), p), addresses, ports)


@st.composite
def peer_updates(draw: st.DrawFn) -> PeerUpdate:
    public_key = draw(keys32)
    if draw(st.booleans()):
        return PeerUpdate(public_key, remove=True)
    changed = draw(st.lists(prefixes, unique=True))
    split = draw(st.integers(0, len(changed)))
    return PeerUpdate(
        public_key,
        update_only=draw(st.booleans()),
        preshared_key=draw(st.none() | keys32),
        endpoint=draw(st.none() | endpoints),
        persistent_keepalive_interval=draw(st.none() | st.integers(0, 65535)),
        replace_allowed_ips=draw(st.booleans()),
        allowed_ips=changed[:split],
        removed_allowed_ips=changed[split:],
        protocol_version=draw(st.sampled_from([None, 1])),
    )


device_updates = st.builds(
    DeviceUpdate,
    private_key=st.none() | st.just(uapi.ZERO_KEY) | keys32.map(clamp),
    listen_port=st.none() | ports,
    fwmark=st.none() | st.integers(0, 2**32 - 1),
    replace_peers=st.booleans(),
    peers=st.lists(peer_updates(), max_size=4),
)

device_states = st.builds(
    DeviceState,
    private_key=st.none() | nonzero_keys,
    listen_port=st.integers(0, 65535),
    fwmark=st.integers(0, 2**32 - 1),
    peers=st.lists(
        st.builds(
            PeerState,
            public_key=keys32,
            preshared_key=st.none() | nonzero_keys,
            endpoint=st.none() | endpoints,
            last_handshake_time=st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 999_999_999)),
            tx_bytes=st.integers(0, 2**64 - 1),
            rx_bytes=st.integers(0, 2**64 - 1),
            persistent_keepalive_interval=st.integers(0, 65535),
            allowed_ips=st.lists(prefixes, unique=True),
        ),
        max_size=4,
    ),
)


@given(device_updates)
def test_set_round_trips_through_its_wire_form(update: DeviceUpdate) -> None:
    assert read(uapi.format_set(update).encode()) == [uapi.Request("set", update=update)]


@given(device_states)
def test_get_round_trips_through_its_wire_form(state: DeviceState) -> None:
    assert uapi.parse_get(uapi.format_get(state)) == state
