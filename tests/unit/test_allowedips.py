"""The cryptokey-routing table: its spec, and agreement with trivially correct twins."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wgpy.core.allowedips import AllowedIPs, Network, _Node


class Peer:
    """A stand-in for a peer: distinct objects are distinct peers."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Peer({self.name!r})"


def addr(text: str) -> bytes:
    return ip_address(text).packed


def net(text: str) -> Network:
    return ip_network(text)


def make_network(bits: int, key: int, cidr: int) -> Network:
    """The prefix key/cidr of the family `bits` wide, host bits masked off."""
    family = IPv4Network if bits == 32 else IPv6Network
    return family((key, cidr), strict=False)


A, B, C = Peer("A"), Peer("B"), Peer("C")


# Spec


def test_an_empty_table_routes_nothing() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    assert table.lookup(addr("192.0.2.1")) is None
    assert table.lookup(addr("fd00::1")) is None
    assert len(table) == 0


def test_host_bits_are_masked_off_as_wg_does() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(ip_network("192.0.2.77/24", strict=False), A)
    assert table.entries(A) == [net("192.0.2.0/24")]
    assert table.lookup(addr("192.0.2.0")) is A
    assert table.lookup(addr("192.0.2.255")) is A
    assert table.lookup(addr("192.0.3.0")) is None


def test_the_longest_matching_prefix_wins() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("198.18.0.0/15"), A)
    table.insert(net("198.18.0.0/24"), C)
    table.insert(net("198.18.0.0/16"), B)
    assert table.lookup(addr("198.18.0.9")) is C
    assert table.lookup(addr("198.18.1.9")) is B
    assert table.lookup(addr("198.19.0.9")) is A
    assert table.lookup(addr("198.20.0.9")) is None


def test_a_default_route_covers_every_address_of_its_family_only() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("0.0.0.0/0"), A)
    assert table.lookup(addr("0.0.0.0")) is A
    assert table.lookup(addr("255.255.255.255")) is A
    assert table.lookup(addr("::")) is None
    table.insert(net("::/0"), B)
    assert table.lookup(addr("::")) is B
    assert table.lookup(addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")) is B
    assert table.lookup(addr("192.0.2.1")) is A


@pytest.mark.parametrize(
    ("host_route", "inside", "neighbours"),
    [
        ("192.0.2.1/32", "192.0.2.1", ["192.0.2.0", "192.0.2.2"]),
        ("fd00::1/128", "fd00::1", ["fd00::", "fd00::2"]),
    ],
)
def test_a_host_route_covers_exactly_one_address(
    host_route: str, inside: str, neighbours: list[str]
) -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net(host_route), A)
    assert table.lookup(addr(inside)) is A
    for neighbour in neighbours:
        assert table.lookup(addr(neighbour)) is None


def test_inserting_an_existing_prefix_moves_it_to_the_new_peer() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("fd00::/64"), A)
    table.insert(net("fd00::/64"), B)
    assert table.lookup(addr("fd00::1")) is B
    assert table.entries(A) == []
    assert table.entries(B) == [net("fd00::/64")]
    assert len(table) == 1


def test_a_prefix_is_removed_only_on_behalf_of_its_owner() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("192.0.2.0/24"), A)
    assert table.remove(net("192.0.2.0/24"), B) is False
    assert table.lookup(addr("192.0.2.1")) is A
    assert table.remove(net("192.0.2.0/24"), A) is True
    assert table.lookup(addr("192.0.2.1")) is None
    assert table.remove(net("192.0.2.0/24"), A) is False


def test_removing_an_absent_prefix_leaves_a_covering_one_alone() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("192.0.2.0/24"), A)
    assert table.remove(net("192.0.2.0/25"), A) is False
    assert table.remove(net("192.0.0.0/16"), A) is False
    assert table.entries(A) == [net("192.0.2.0/24")]


def test_removing_a_prefix_keeps_the_longer_and_shorter_ones_around_it() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("fd00::/16"), A)
    table.insert(net("fd00:1::/32"), B)
    table.insert(net("fd00:1:2::/48"), C)
    assert table.remove(net("fd00:1::/32"), B) is True
    assert table.lookup(addr("fd00:1:2::1")) is C
    assert table.lookup(addr("fd00:1:3::1")) is A


def test_remove_peer_removes_all_its_prefixes_in_both_families() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    for prefix in ("192.0.2.0/25", "198.18.0.0/15", "fd00::/8"):
        table.insert(net(prefix), A)
    table.insert(net("192.0.2.128/25"), B)
    table.remove_peer(A)
    assert table.entries(A) == []
    assert table.lookup(addr("192.0.2.1")) is None
    assert table.lookup(addr("fd00::1")) is None
    assert table.lookup(addr("192.0.2.129")) is B
    assert len(table) == 1


def test_entries_come_in_insertion_order_like_wg_show() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    for prefix in ("fd00::/8", "192.0.2.0/24", "198.18.0.0/15"):
        table.insert(net(prefix), A)
    table.insert(net("fd00::/8"), A)  # a re-insert goes to the end, as the kernel's list_move_tail
    assert table.entries(A) == [net("192.0.2.0/24"), net("198.18.0.0/15"), net("fd00::/8")]


def test_len_counts_prefixes_not_the_trie_nodes_that_branch_between_them() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("192.0.2.0/26"), A)
    table.insert(net("192.0.2.128/26"), B)  # the two branch below a glue node at /24
    assert len(table) == 2
    table.remove_peer(A)
    assert len(table) == 1


def test_peers_are_told_apart_by_identity_not_equality() -> None:
    class EqualToAll(Peer):
        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return 0

    first, second = EqualToAll("first"), EqualToAll("second")
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("192.0.2.0/24"), first)
    table.insert(net("198.18.0.0/15"), second)
    assert table.lookup(addr("192.0.2.1")) is first
    assert table.entries(second) == [net("198.18.0.0/15")]
    assert table.remove(net("192.0.2.0/24"), second) is False
    table.remove_peer(second)
    assert table.lookup(addr("192.0.2.1")) is first


def test_an_address_of_another_length_finds_nothing() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("0.0.0.0/0"), A)
    table.insert(net("::/0"), A)
    assert table.lookup(b"") is None
    assert table.lookup(b"\xc0\x00\x02") is None
    assert table.lookup(bytes(5)) is None


def test_lookup_reads_an_address_from_any_buffer() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert(net("192.0.2.0/24"), A)
    packet = bytearray(20) + addr("192.0.2.7")
    assert table.lookup(memoryview(packet)[20:24]) is A


def test_a_prefix_needs_a_peer() -> None:
    table: AllowedIPs[Peer | None] = AllowedIPs()
    with pytest.raises(ValueError, match="needs a peer"):
        table.insert(net("192.0.2.0/24"), None)


# Twins


class Reference:
    """The obvious model: a dict from prefix to owner, keyed (width, prefix length, network)."""

    def __init__(self) -> None:
        self.owner: dict[tuple[int, int, int], Peer] = {}

    @staticmethod
    def key(network: Network) -> tuple[int, int, int]:
        return network.max_prefixlen, network.prefixlen, int(network.network_address)

    def insert(self, network: Network, peer: Peer) -> None:
        self.owner[self.key(network)] = peer

    def remove(self, network: Network, peer: Peer) -> bool:
        if self.owner.get(self.key(network)) is not peer:
            return False
        del self.owner[self.key(network)]
        return True

    def remove_peer(self, peer: Peer) -> None:
        self.owner = {key: owner for key, owner in self.owner.items() if owner is not peer}

    def entries(self, peer: Peer) -> set[Network]:
        return {
            make_network(bits, key, cidr)
            for (bits, cidr, key), owner in self.owner.items()
            if owner is peer
        }

    def lookup_by_scan(self, address: bytes) -> Peer | None:
        """Scan every prefix; the longest one containing the address wins."""
        ip = ip_address(address)
        best: tuple[int, Peer] | None = None
        for (bits, cidr, key), peer in self.owner.items():
            contains = bits == ip.max_prefixlen and ip in make_network(bits, key, cidr)
            if contains and (best is None or cidr > best[0]):
                best = (cidr, peer)
        return None if best is None else best[1]

    def lookup_by_length(self, address: bytes) -> Peer | None:
        """Try every prefix length, longest first: a scan's answer at the cost of bits dict gets."""
        bits = 8 * len(address)
        ip = int.from_bytes(address, "big")
        for cidr in range(bits, -1, -1):
            host_bits = bits - cidr
            peer = self.owner.get((bits, cidr, ip >> host_bits << host_bits))
            if peer is not None:
                return peer
        return None


def assert_well_formed(table: AllowedIPs[Peer]) -> None:
    """White-box: the trie's shape, on which its lookup and the kernel's removal logic rely."""
    owned = 0
    for root in (table._root4, table._root6):
        stack: list[tuple[_Node[Peer], _Node[Peer] | None]] = [] if root is None else [(root, None)]
        while stack:
            node, parent = stack.pop()
            assert node.parent is parent
            if parent is not None:
                assert node.cidr > parent.cidr and parent.matches(node.key)
                assert parent.child(parent.choose(node.key)) is node
            if node.peer is None:
                assert None not in (node.zero, node.one), "a glue node must branch"
            owned += node.peer is not None
            stack.extend((child, node) for child in (node.zero, node.one) if child is not None)
    assert owned == len(table)


def assert_same_lookups(
    table: AllowedIPs[Peer], reference: Reference, addresses: Iterable[bytes], *, scan: bool
) -> None:
    twin = reference.lookup_by_scan if scan else reference.lookup_by_length
    for address in addresses:
        assert table.lookup(address) is twin(address), ip_address(address)


# Differential test in the spirit of wireguard-go's device/allowedips_rand_test.go: random prefixes
# spread over 100 peers. The twin answers by trying every prefix length: the same answer as a scan
# over every prefix, fast enough for 10,000 prefixes times 10,000 addresses.

NUMBER_OF_PEERS = 100
NUMBER_OF_PREFIXES = 10_000
NUMBER_OF_LOOKUPS = 10_000
NUMBER_OF_REMOVALS = 2_000
NUMBER_OF_PEER_REMOVALS = 10


@pytest.mark.parametrize("bits", [32, 128], ids=["IPv4", "IPv6"])
def test_agrees_with_the_twin_on_random_prefixes_lookups_and_removals(bits: int) -> None:
    rng = random.Random(1)
    peers = [Peer(str(n)) for n in range(NUMBER_OF_PEERS)]
    table: AllowedIPs[Peer] = AllowedIPs()
    reference = Reference()
    inserted = []
    for _ in range(NUMBER_OF_PREFIXES):
        network = make_network(bits, rng.getrandbits(bits), rng.randint(1, bits))
        peer = rng.choice(peers)
        table.insert(network, peer)
        reference.insert(network, peer)
        inserted.append(network)

    def random_addresses() -> list[bytes]:
        # Half uniformly random, half inside an inserted prefix, to walk deep into the trie too.
        uniform = [rng.getrandbits(bits) for _ in range(NUMBER_OF_LOOKUPS // 2)]
        inside = [
            int(network.network_address)
            | rng.getrandbits(network.max_prefixlen - network.prefixlen)
            for network in rng.choices(inserted, k=NUMBER_OF_LOOKUPS // 2)
        ]
        return [key.to_bytes(bits // 8, "big") for key in uniform + inside]

    def assert_agree() -> None:
        assert len(table) == len(reference.owner)
        assert_same_lookups(table, reference, random_addresses(), scan=False)
        for peer in peers:
            assert set(table.entries(peer)) == reference.entries(peer)

    assert_agree()

    for network in rng.sample(inserted, NUMBER_OF_REMOVALS):
        # Half by the owner (if the prefix is still there), half by a peer that is most likely not.
        owner = reference.owner.get(Reference.key(network))
        peer = owner if owner is not None and rng.random() < 0.5 else rng.choice(peers)
        assert table.remove(network, peer) is reference.remove(network, peer)
    assert_agree()

    for peer in peers[:NUMBER_OF_PEER_REMOVALS]:
        table.remove_peer(peer)
        reference.remove_peer(peer)
        assert_agree()

    for peer in peers:
        table.remove_peer(peer)
    assert len(table) == 0
    assert table._root4 is None and table._root6 is None, "every node should be freed"


# Properties


@dataclass
class Insert:
    network: Network
    peer: Peer


@dataclass
class Remove:
    earlier: int  # which earlier insert's prefix, modulo their number
    peer: Peer


@dataclass
class RemovePeer:
    peer: Peer


PEERS = (A, B, C)
any_peer = st.sampled_from(PEERS)
any_prefix = st.sampled_from([32, 128]).flatmap(
    lambda bits: st.builds(
        make_network, st.just(bits), st.integers(0, 2**bits - 1), st.integers(0, bits)
    )
)
any_operation = st.one_of(
    st.builds(Insert, any_prefix, any_peer),
    st.builds(Remove, st.integers(0, 1_000), any_peer),
    st.builds(RemovePeer, any_peer),
)
any_address = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))


def probes(networks: Iterable[Network], extra: Iterable[bytes]) -> list[bytes]:
    """Each prefix's first and last address, their neighbours just outside, and `extra`."""
    found = list(extra)
    for network in networks:
        first, last = int(network.network_address), int(network.broadcast_address)
        for key in (first - 1, first, last, last + 1):
            if 0 <= key < 2**network.max_prefixlen:
                found.append(key.to_bytes(network.max_prefixlen // 8, "big"))
    return found


@settings(max_examples=300)
@given(st.lists(any_operation, max_size=40), st.lists(any_address, max_size=20))
def test_matches_a_linear_scan_after_any_sequence_of_changes(
    script: list[Insert | Remove | RemovePeer], extra: list[bytes]
) -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    reference = Reference()
    inserted: list[Network] = []
    for operation in script:
        match operation:
            case Insert(network, peer):
                table.insert(network, peer)
                reference.insert(network, peer)
                inserted.append(network)
            case Remove(earlier, peer) if inserted:
                network = inserted[earlier % len(inserted)]
                assert table.remove(network, peer) is reference.remove(network, peer)
            case RemovePeer(peer):
                table.remove_peer(peer)
                reference.remove_peer(peer)
        assert_well_formed(table)
    assert len(table) == len(reference.owner)
    for peer in PEERS:
        assert set(table.entries(peer)) == reference.entries(peer)
    assert_same_lookups(table, reference, probes(inserted, extra), scan=True)


@given(st.lists(st.tuples(any_prefix, any_peer), max_size=30), any_prefix, st.lists(any_address))
def test_inserting_then_removing_a_new_prefix_restores_every_lookup(
    contents: list[tuple[Network, Peer]], new: Network, extra: list[bytes]
) -> None:
    assume(new not in {network for network, _ in contents})
    table: AllowedIPs[Peer] = AllowedIPs()
    for network, peer in contents:
        table.insert(network, peer)
    addresses = probes([network for network, _ in contents] + [new], extra)
    before = [table.lookup(address) for address in addresses]
    newcomer = Peer("newcomer")
    table.insert(new, newcomer)
    assert table.remove(new, newcomer) is True
    assert [table.lookup(address) for address in addresses] == before
    assert_well_formed(table)


@given(st.lists(any_prefix, unique=True, max_size=30))
def test_entries_return_a_peers_distinct_prefixes_in_insertion_order(
    networks: list[Network],
) -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    for network in networks:
        table.insert(network, A)
    assert table.entries(A) == networks
    assert len(table) == len(networks)
