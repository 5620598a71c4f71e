"""The timer queue against its trivially correct twin: a scan of every peer's deadlines."""

from __future__ import annotations

import gc
import os

from hypothesis import given
from hypothesis import strategies as st

from wgpy.core.constants import KEEPALIVE_TIMEOUT, NEW_HANDSHAKE_TIME
from wgpy.core.device import TIMER_PEERS_PER_CALL, Device
from wgpy.core.keys import generate_private_key, public_key
from wgpy.core.peer import Peer
from wgpy.core.timers import PeerTimers, TimerQueue

PEERS = 4


def arm(timers: PeerTimers, hook: int, now: float) -> None:
    """One of the events the device reports to a peer's timers."""
    [
        lambda: timers.data_sent(now, lambda: 0.25),
        lambda: timers.data_received(now),
        lambda: timers.any_authenticated_packet_sent(),
        lambda: timers.any_authenticated_packet_received(),
        lambda: timers.any_authenticated_packet_traversal(now),
        lambda: timers.handshake_initiated(now, 0.1),
        lambda: timers.handshake_complete(),
        lambda: timers.session_derived(now),
        lambda: timers.handshake_gave_up(now),
        lambda: timers.set_persistent_keepalive(1 + hook % 30, now),
        lambda: timers.set_persistent_keepalive(0, now),
    ][hook % 11]()


def scan_deadline(peers: list[Peer]) -> float | None:
    return min((d for p in peers if (d := p.timers.next_deadline()) is not None), default=None)


events = st.lists(
    st.tuples(st.integers(0, PEERS - 1), st.integers(0, 10**6), st.floats(0, 30)), max_size=60
)


def assert_no_later_than_a_scan(queue: TimerQueue, peers: list[Peer]) -> None:
    """The queue's deadline may be early (a timer disarmed or re-armed later), never late."""
    scanned = scan_deadline(peers)
    if scanned is not None:
        deadline = queue.next_deadline()
        assert deadline is not None and deadline <= scanned


@given(events)
def test_the_queue_pops_the_peers_a_scan_of_every_peer_finds_due(
    steps: list[tuple[int, int, float]],
) -> None:
    queue = TimerQueue()
    peers = [Peer(bytes([n]) * 32, queue) for n in range(PEERS)]
    now = 0.0
    for index, hook, elapsed in steps:
        arm(peers[index].timers, hook, now)
        assert_no_later_than_a_scan(queue, peers)
        now += elapsed
        due = {
            p.public_key for p in peers if (d := p.timers.next_deadline()) is not None and d <= now
        }
        popped = set()
        while (timers := queue.pop_due(now)) is not None:
            popped.add(timers.public_key)
            timers.expired(now)
            timers.file()
        assert popped == due
        assert_no_later_than_a_scan(queue, peers)
        deadline = queue.next_deadline()
        assert deadline is None or deadline > now, "an early entry is filed again once due"


def test_a_timer_re_armed_later_leaves_an_early_deadline_that_pops_nothing() -> None:
    queue = TimerQueue()
    timers = Peer(bytes(32), queue).timers
    timers.data_received(0.0)  # send_keepalive at KEEPALIVE_TIMEOUT
    timers.data_sent(1.0, lambda: 0.0)  # new_handshake, later
    timers.any_authenticated_packet_sent()  # send_keepalive disarmed
    assert queue.next_deadline() == KEEPALIVE_TIMEOUT
    assert queue.pop_due(KEEPALIVE_TIMEOUT) is None
    assert queue.next_deadline() == timers.new_handshake == 1.0 + NEW_HANDSHAKE_TIME


def test_stopped_peers_leave_the_queue_once_their_entries_are_half_of_it() -> None:
    queue = TimerQueue()
    peers = [Peer(n.to_bytes(32, "big"), queue) for n in range(1000)]
    for n, peer in enumerate(peers):
        peer.timers.session_derived(float(n))
    for peer in peers[:900]:
        peer.timers.stop()
    assert len(queue) <= 2 * 100
    assert queue.next_deadline() == peers[900].timers.zero_key_material


def test_a_burst_of_due_timers_runs_a_bounded_number_of_peers_per_call() -> None:
    device = Device(os.urandom, generate_private_key(os.urandom))
    for _ in range(3 * TIMER_PEERS_PER_CALL):
        peer = device.add_peer(public_key(generate_private_key(os.urandom)))
        device.set_persistent_keepalive(peer, 25, 0.0)
    calls = 0
    while (deadline := device.next_timer()) is not None and deadline <= 0.0:
        device.handle_timer(0.0, 0.0)
        calls += 1
    assert calls == 3


def live_peers() -> int:
    return sum(isinstance(thing, Peer) for thing in gc.get_objects())


def test_a_removed_peer_is_freed_at_once_not_left_to_the_cycle_collector() -> None:
    device = Device(os.urandom)
    peer = device.add_peer(bytes(range(32)), persistent_keepalive=25)
    gc.collect()
    gc.disable()
    try:
        before = live_peers()
        device.remove_peer(peer.public_key)
        del peer
        assert live_peers() == before - 1
    finally:
        gc.enable()
