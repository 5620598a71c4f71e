"""Cryptokey routing: the allowed-IPs table that maps an inner address to its peer.

One path-compressed binary trie per address family, with the semantics of the kernel's
drivers/net/wireguard/allowedips.c: the longest prefix wins, inserting an existing prefix moves it
to the new peer, a prefix is removed only on behalf of the peer that owns it, and a removed node is
spliced out together with a parent it leaves as a one-child glue node. Keys are plain ints in
network bit order, so a lookup costs a shift and a compare per level and builds no ipaddress
objects.

As in the kernel, each peer's nodes are also threaded on a list of their own (its
peer->allowedips_list), in the order they were inserted: what `wg show` prints, and what removing
a peer walks. A server holds some 4 nodes per peer, so a node holds no more than it must.

Peers are compared by identity, never by ``==`` or ``hash``.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network
from typing import Generic, TypeVar

P = TypeVar("P")
Network = IPv4Network | IPv6Network


class _Node(Generic[P]):
    """A prefix, the peer that owns it (None for a glue node) and two children.

    A glue node exists only to branch, so it always has both children. The child that holds a key
    is picked by the key's first bit after this node's prefix. An owned node is on its peer's
    ring: `later` and `earlier` are the peer's next and previous nodes in insertion order.
    """

    __slots__ = (
        "branch", "cidr", "earlier", "later", "one", "parent", "peer", "prefix", "shift", "zero"
    )  # fmt: skip

    def __init__(self, key: int, cidr: int, bits: int) -> None:
        self.cidr = cidr
        self.shift = bits - cidr  # the number of host bits
        self.prefix = key >> self.shift  # an address matches when address >> shift == prefix
        # A /bits node never has children, so any in-range bit serves as its branch bit.
        self.branch = max(self.shift - 1, 0)
        self.peer: P | None = None
        self.zero: _Node[P] | None = None
        self.one: _Node[P] | None = None
        self.parent: _Node[P] | None = None
        self.later: _Node[P] | None = None
        self.earlier: _Node[P] | None = None

    @property
    def bits(self) -> int:
        """The family's address width: 32 or 128."""
        return self.shift + self.cidr

    @property
    def key(self) -> int:
        """The network address, host bits zero."""
        return self.prefix << self.shift

    def matches(self, key: int) -> bool:
        return key >> self.shift == self.prefix

    def choose(self, key: int) -> int:
        return (key >> self.branch) & 1

    def child(self, bit: int) -> _Node[P] | None:
        return self.one if bit else self.zero

    def set_child(self, bit: int, node: _Node[P] | None) -> None:
        if bit:
            self.one = node
        else:
            self.zero = node

    def common_bits(self, key: int) -> int:
        return self.bits - (self.key ^ key).bit_length()

    def network(self) -> Network:
        if self.bits == 32:
            return IPv4Network((self.key, self.cidr))
        return IPv6Network((self.key, self.cidr))


class AllowedIPs(Generic[P]):
    """Prefixes of both families, each owned by one peer, with longest-prefix-match lookup."""

    def __init__(self) -> None:
        self._root4: _Node[P] | None = None
        self._root6: _Node[P] | None = None
        # The first node of each peer's ring. Keyed by id(): a peer in here is kept alive by its
        # nodes, so its id cannot be reused by another object.
        self._first: dict[int, _Node[P]] = {}
        self._owned = 0

    def __len__(self) -> int:
        return self._owned

    def lookup(self, address: bytes | bytearray | memoryview) -> P | None:
        """The peer owning the longest prefix that contains `address` (4 or 16 raw bytes)."""
        size = len(address)
        if size == 4:
            node = self._root4
        elif size == 16:
            node = self._root6
        else:
            return None
        key = int.from_bytes(address, "big")
        found: P | None = None
        # The per-packet hot path: _Node.matches, choose and child inlined.
        while node is not None and key >> node.shift == node.prefix:
            if node.peer is not None:
                found = node.peer
            node = node.one if (key >> node.branch) & 1 else node.zero
        return found

    def insert(self, network: Network, peer: P) -> None:
        """Route `network` to `peer`, taking it over from its previous owner if it had one."""
        if peer is None:
            raise ValueError("an allowed IP needs a peer")
        bits, key, cidr = _parts(network)
        parent = self._placement(bits, key, cidr)
        if parent is not None and parent.cidr == cidr:
            self._assign(parent, peer)
            return
        node: _Node[P] = _Node(key, cidr, bits)
        self._assign(node, peer)
        down = self._root(bits) if parent is None else parent.child(parent.choose(key))
        if down is None:
            self._attach(parent, node)
            return
        # `down` is no prefix of the new one: the new node goes above it, or both below a glue node.
        common = min(cidr, down.common_bits(key))
        if common == cidr:  # the new prefix contains `down`: slot it in between
            top = node
        else:  # neither contains the other: a glue node branches to both
            top = _Node(key, common, bits)
            self._attach(top, node)
        self._attach(top, down)
        self._attach(parent, top)

    def remove(self, network: Network, peer: P) -> bool:
        """Remove `network` if `peer` owns it (wg's `allowed-ips -prefix`); say whether it did."""
        bits, key, cidr = _parts(network)
        node = self._placement(bits, key, cidr)
        if node is None or node.cidr != cidr or node.peer is not peer:
            return False
        self._remove(node)
        return True

    def owner(self, network: Network) -> P | None:
        """The peer that owns exactly `network`, if one does."""
        bits, key, cidr = _parts(network)
        node = self._placement(bits, key, cidr)
        return node.peer if node is not None and node.cidr == cidr else None

    def remove_peer(self, peer: P) -> None:
        """Remove every prefix that `peer` owns."""
        for node in list(self._ring(peer)):
            self._remove(node)

    def entries(self, peer: P) -> list[Network]:
        """The prefixes `peer` owns, in the order they were (last) inserted."""
        return [node.network() for node in self._ring(peer)]

    def prefixes(self, peer: P) -> list[tuple[bytes, int]]:
        """As `entries`, each as (network address in 4 or 16 bytes, prefix length): several
        times cheaper to make, to compare and to write out than networks."""
        return [
            ((node.prefix << node.shift).to_bytes((node.shift + node.cidr) >> 3, "big"), node.cidr)
            for node in self._ring(peer)
        ]

    def _ring(self, peer: P) -> Iterator[_Node[P]]:
        """`peer`'s nodes, in the order they were (last) inserted."""
        first = node = self._first.get(id(peer))
        while node is not None:
            yield node
            node = node.later
            if node is first:
                return

    def _root(self, bits: int) -> _Node[P] | None:
        return self._root4 if bits == 32 else self._root6

    def _placement(self, bits: int, key: int, cidr: int) -> _Node[P] | None:
        """The deepest node whose prefix contains key/cidr: key/cidr itself if it is present."""
        node, parent = self._root(bits), None
        while node is not None and node.cidr <= cidr and node.matches(key):
            parent = node
            node = node.child(node.choose(key))
        return parent

    def _attach(self, parent: _Node[P] | None, child: _Node[P]) -> None:
        """Hang `child` below `parent`, or make it the root when there is no parent."""
        child.parent = parent
        if parent is None:
            self._set_root(child.bits, child)
        else:
            parent.set_child(parent.choose(child.key), child)

    def _replace(self, old: _Node[P], new: _Node[P] | None) -> None:
        """Put `new` (a child of `old`, or nothing) where `old` hangs."""
        parent = old.parent
        if new is not None:
            new.parent = parent
        if parent is None:
            self._set_root(old.bits, new)
        else:
            parent.set_child(parent.choose(old.key), new)

    def _set_root(self, bits: int, node: _Node[P] | None) -> None:
        if bits == 32:
            self._root4 = node
        else:
            self._root6 = node

    def _remove(self, node: _Node[P]) -> None:
        # As the kernel's remove_node(): a node with two children stays to branch, as glue.
        self._unassign(node)
        zero, one = node.zero, node.one
        if zero is not None and one is not None:
            return
        parent = node.parent
        self._replace(node, zero if zero is not None else one)
        # A removed leaf leaves its parent one child; a glue parent then has no reason to exist.
        if zero is None and one is None and parent is not None and parent.peer is None:
            self._replace(parent, parent.zero if parent.zero is not None else parent.one)

    def _assign(self, node: _Node[P], peer: P) -> None:
        """Give `node` to `peer`, last on its ring."""
        if node.peer is not None:
            self._unassign(node)
        node.peer = peer
        self._owned += 1
        first = self._first.get(id(peer))
        if first is None:
            self._first[id(peer)] = node.later = node.earlier = node
            return
        last = first.earlier
        assert last is not None
        node.earlier, node.later = last, first
        last.later = first.earlier = node

    def _unassign(self, node: _Node[P]) -> None:
        """Take `node` from its peer, and off the peer's ring."""
        owner = id(node.peer)
        later, earlier = node.later, node.earlier
        assert later is not None and earlier is not None
        if later is node:
            del self._first[owner]
        else:
            earlier.later, later.earlier = later, earlier
            if self._first[owner] is node:
                self._first[owner] = later
        node.peer = node.later = node.earlier = None
        self._owned -= 1


def _parts(network: Network) -> tuple[int, int, int]:
    """(address width, network address as an int, prefix length)."""
    return network.max_prefixlen, int(network.network_address), network.prefixlen
