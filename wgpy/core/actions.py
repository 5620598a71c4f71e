"""What the device asks its I/O edge to do: the actions its entry points return.

Actions carry batches, as the I/O edges move them (a UDP_SEGMENT send per endpoint, coalesced
writes to the TUN): a batch of packets makes one action, not one per packet, which saves the
data path about 4% of its work per super-packet. They are NamedTuples, not frozen dataclasses,
which are built several times slower.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from wgpy.core.endpoint import Endpoint, Local


class SendDatagrams(NamedTuple):
    """Send `datagrams` to `endpoint`, in order, from `local` (see Local) if it is given."""

    datagrams: list[bytes]
    endpoint: Endpoint
    local: Local | None = None


class WriteTun(NamedTuple):
    """Write `packets` to the TUN, in order."""

    packets: list[bytes]


class PeerWanted(NamedTuple):
    """An initiation from the unknown `public_key` came from `endpoint` and is held: answer with
    `Device.admit_peer` or `Device.refuse_peer`."""

    public_key: bytes
    endpoint: Endpoint


Action = SendDatagrams | WriteTun | PeerWanted
# No actions: one list, shared, which nothing may append to.
NOTHING: list[Action] = []


def datagrams_of(actions: Iterable[Action]) -> list[bytes]:
    """The datagrams `actions` send, in order, whatever their endpoints."""
    return [data for a in actions if isinstance(a, SendDatagrams) for data in a.datagrams]


def packets_of(actions: Iterable[Action]) -> list[bytes]:
    """The packets `actions` write to the TUN, in order."""
    return [packet for a in actions if isinstance(a, WriteTun) for packet in a.packets]
