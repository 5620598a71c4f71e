"""The device's receiver indices: each index it gave out, with the peer it stands for and that
peer's keypair, or None while the handshake that claimed it is in flight (the kernel's
peerlookup.c index_hashtable). A transport message or a response names its receiver by index;
an index leaves the table when its handshake or keypair goes.
"""

from __future__ import annotations

from collections.abc import Callable

from wgpy.core.keypair import Keypair
from wgpy.core.peer import Peer

Indices = dict[int, tuple[Peer, Keypair | None]]


def new_index(
    indices: Indices, rng: Callable[[int], bytes], peer: Peer, keypair: Keypair | None
) -> int:
    """A random index not in use, now `peer`'s, for `keypair` (None: for its handshake)."""
    while True:
        index = int.from_bytes(rng(4), "little")
        if index not in indices:
            indices[index] = (peer, keypair)
            return index


def add_keypair(indices: Indices, peer: Peer, keypair: Keypair) -> None:
    """`keypair` joins the peer's; those it pushes out give up their indices."""
    for retired in peer.keypairs.add(keypair):
        retire(indices, retired)


def retire(indices: Indices, keypair: Keypair | None) -> None:
    if keypair is not None:
        indices.pop(keypair.local_index, None)


def release_handshake(indices: Indices, peer: Peer) -> None:
    """Forget the peer's handshake in flight, and its index."""
    if peer.handshake.local_index is not None:
        indices.pop(peer.handshake.local_index, None)
    peer.handshake.clear()


def zero_key_material(indices: Indices, peer: Peer) -> None:
    """Forget every session of the peer's and its handshake in flight, and their indices."""
    release_handshake(indices, peer)
    for keypair in peer.keypairs.clear():
        retire(indices, keypair)
