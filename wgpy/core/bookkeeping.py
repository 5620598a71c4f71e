"""What every path of the device records as it goes: drops counted, events told, where a peer
is, a completed handshake, and a handshake's secrets for a capture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wgpy.core.actions import NOTHING, Action
from wgpy.core.drops import DropReason
from wgpy.core.endpoint import Endpoint, Local
from wgpy.core.events import Event
from wgpy.core.observer import HandshakeSecrets
from wgpy.core.peer import Peer

if TYPE_CHECKING:
    from wgpy.core.device import Device


def drop(device: Device, reason: DropReason, peer: Peer | None = None) -> list[Action]:
    """Count a drop for `reason`, the peer's too when it is known; nothing to do."""
    device.drops[reason] += 1
    if peer is not None:
        peer.drops[reason] += 1
    return NOTHING


def tell(device: Device, peer: Peer, event: Event, detail: object = None) -> None:
    if device.events is not None:
        device.events(peer.public_key, event, detail)


def set_endpoint(device: Device, peer: Peer, source: Endpoint, local: Local | None) -> None:
    """Roaming: the peer is where its last authenticated message came from."""
    if device.events is not None and peer.endpoint is not None and peer.endpoint != source:
        device.events(peer.public_key, Event.ROAMED, source)
    peer.endpoint, peer.local = source, local


def handshake_complete(device: Device, peer: Peer, wall: float) -> None:
    peer.timers.handshake_complete()
    peer.last_handshake_wall = wall
    tell(device, peer, Event.HANDSHAKE_COMPLETED)


def observe_handshake(device: Device, peer: Peer, ephemeral_private: bytes, wall: float) -> None:
    """Hand the observer (which is set) what decrypts the handshake's session."""
    assert device.observer is not None and device._static_private is not None
    secrets = HandshakeSecrets(
        device._static_private, peer.public_key, ephemeral_private, peer.preshared_key
    )
    device.observer.handshake_secrets(secrets, wall)
