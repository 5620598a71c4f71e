"""Hypothesis strategies for the values WireGuard's configuration carries, shared by the round
trips of the wg config file, the configuration protocol and the handshake."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

keys32 = st.binary(min_size=32, max_size=32)
ports = st.integers(0, 65535)
addresses = st.ip_addresses()
# Any address with any prefix length its family allows, host bits cleared.
prefixes = st.builds(
    lambda address, bits: ipaddress.ip_network(
        (address, bits % (address.max_prefixlen + 1)), False
    ),
    addresses,
    st.integers(0, 128),
)

# Text that is, or nearly is, an IP address: addresses written in each way the parsers meet them,
# and strings of the characters addresses are made of, which are mostly not addresses.
_ADDRESS_CHARS = "0123456789abcdefABCDEFxg:.%/[] \x00\uff11"
address_texts = st.one_of(
    addresses.map(str),
    addresses.map(lambda address: address.exploded),
    st.ip_addresses(v=4).map(lambda address: f"::ffff:{address}"),
    st.ip_addresses(v=4).map(lambda address: f"::{address}"),
    st.text(_ADDRESS_CHARS, max_size=48),
)
