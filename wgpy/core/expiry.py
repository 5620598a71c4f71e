"""What each of a peer's timers does when it expires (the kernel's timers.c, wg_expired_*):
retransmit or give up a handshake, send a keepalive, start a new handshake, erase old keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wgpy.core.actions import NOTHING, Action
from wgpy.core.bookkeeping import drop, tell
from wgpy.core.constants import MAX_TIMER_HANDSHAKES
from wgpy.core.drops import DropReason
from wgpy.core.events import Event
from wgpy.core.indices import zero_key_material
from wgpy.core.peer import Peer
from wgpy.core.send import send_keepalive, send_queued_handshake_initiation
from wgpy.core.timers import Timer

if TYPE_CHECKING:
    from wgpy.core.device import Device


def expired(device: Device, peer: Peer, timer: Timer, now: float, wall: float) -> list[Action]:
    """What the expiry of `timer`, one of the peer's, makes the device do."""
    timers = peer.timers
    if timer is Timer.RETRANSMIT_HANDSHAKE:
        if timers.handshake_attempts > MAX_TIMER_HANDSHAKES:
            # Give up: drop what waited for this handshake, and erase its residue later.
            tell(device, peer, Event.HANDSHAKE_GAVE_UP)
            timers.handshake_gave_up(now)
            for _ in range(len(peer.staged)):
                drop(device, DropReason.HANDSHAKE_GAVE_UP, peer)
            peer.staged.clear()
            return NOTHING
        timers.handshake_attempts += 1
        tell(device, peer, Event.HANDSHAKE_RETRY, timers.handshake_attempts + 1)
        # Forget where we sent from, as the kernel does, "in case this is the cause of
        # trouble" (timers.c).
        peer.local = None
        return send_queued_handshake_initiation(device, peer, now, wall, is_retry=True)
    if timer is Timer.SEND_KEEPALIVE:
        actions = send_keepalive(device, peer, now, wall)
        if timers.need_another_keepalive:
            timers.need_another_keepalive = False
            timers.data_received(now)
        return actions
    if timer is Timer.NEW_HANDSHAKE:
        tell(device, peer, Event.STOPPED_HEARING)
        return send_queued_handshake_initiation(device, peer, now, wall, is_retry=False)
    if timer is Timer.ZERO_KEY_MATERIAL:
        zero_key_material(device._indices, peer)
        return NOTHING
    if peer.persistent_keepalive_interval:  # PERSISTENT_KEEPALIVE
        return send_keepalive(device, peer, now, wall)
    return NOTHING
