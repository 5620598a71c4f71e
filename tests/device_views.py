"""What a device did, in forms two runs can be compared by: its state after a step (drops,
counters, timers, endpoints, sessions) and the outcome of the actions it returned."""

from __future__ import annotations

from wgpy.core.device import Action, Device, SendDatagrams, packets_of
from wgpy.core.endpoint import Endpoint
from wgpy.core.peer import Peer


def state(device: Device) -> list[object]:
    """Everything a batch could get wrong: drops, counters, timers, endpoints, sessions."""
    peers: list[Peer] = list(device.peers.values())
    return [
        dict(device.drops),
        [
            (
                dict(p.drops),
                p.tx_bytes,
                p.rx_bytes,
                p.endpoint,
                p.timers,
                list(p.staged),
                p.last_handshake_wall,
                [
                    (k.local_index, k.send_counter, k.replay.greatest)
                    for k in (p.keypairs.current, p.keypairs.previous, p.keypairs.next)
                    if k is not None
                ],
            )
            for p in peers
        ],
    ]


def outcome(actions: list[Action]) -> tuple[list[tuple[bytes, Endpoint]], list[bytes]]:
    """Datagrams and packets, each in order (their interleaving is the caller's business)."""
    sent = [(d, a.endpoint) for a in actions if isinstance(a, SendDatagrams) for d in a.datagrams]
    return sent, packets_of(actions)
