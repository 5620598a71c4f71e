"""TCP against the model of a byte stream: whatever the network does to the segments (Hypothesis
scripts each one's fate: delivered, lost, duplicated or late), what one end wrote is what the
other read, prefix-wise at every moment and whole at the end. And no segment, however hostile,
makes a connection raise."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tcp_link import CLIENT, SERVER, Channel, Link

from wgpy.netstack.tcp import MASK, TcpConfig, TcpConnection, TcpEvent, TcpState
from wgpy.netstack.tcp_segment import Options, TcpSegment

FATES = {"deliver": [0.0], "lose": [], "duplicate": [0.0, 0.001], "late": [0.012]}
fates = st.lists(st.sampled_from(sorted(FATES)), max_size=120)
configs = st.builds(
    TcpConfig,
    send_buffer=st.integers(2048, 65536),
    receive_buffer=st.integers(2048, 1 << 20),  # window scales 0 to 5
    sack=st.booleans(),
    timestamps=st.booleans(),
    window_scaling=st.booleans(),
)


def scripted(script: list[str]) -> Callable[[TcpSegment], list[float]]:
    """Each segment meets the script's next fate; once the script is spent, all arrive."""
    remaining = list(reversed(script))
    return lambda segment: FATES[remaining.pop()] if remaining else [0.0]


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    up=fates,
    down=fates,
    sizes=st.tuples(st.integers(0, 40_000), st.integers(0, 40_000)),
    client_config=configs,
    server_config=configs,
    mss=st.integers(536, 1460),
    seed=st.integers(0, 2**32),
    stalls=st.lists(st.booleans(), max_size=60),
)
def test_what_one_end_writes_the_other_reads_whatever_the_network_does(
    up: list[str],
    down: list[str],
    sizes: tuple[int, int],
    client_config: TcpConfig,
    server_config: TcpConfig,
    mss: int,
    seed: int,
    stalls: list[bool],
) -> None:
    """`stalls` says, step by step, when both applications stop reading (windows close)."""
    rng = random.Random(seed)
    link = Link(
        Channel(rng, fate=scripted(up)),
        Channel(rng, fate=scripted(down)),
        client_config=client_config,
        server_config=server_config,
        mss=mss,
    )
    link.run(link.established)
    if link.server is None:  # every SYN lost: the opening timed out (syn_retries)
        link.client.pump()
        assert link.client.events == [TcpEvent.TIMED_OUT]
        event("the opening timed out: every SYN lost")
        return
    client, server = link.client, link.server
    wrote_up, wrote_down = rng.randbytes(sizes[0]), rng.randbytes(sizes[1])
    client.to_write += wrote_up
    server.to_write += wrote_down
    client.close_when_written = server.close_when_written = True
    stalls.reverse()
    while not (client.conn.state is server.conn.state is TcpState.CLOSED):
        client.reading = server.reading = not (stalls and stalls.pop())
        assert wrote_up.startswith(server.read) and wrote_down.startswith(client.read)
        assert link.now < 3600, "the connection stalled"
        assert link.step()
    client.reading = server.reading = True  # what is left in the buffers
    client.pump()
    server.pump()
    if TcpEvent.TIMED_OUT in client.events + server.events:
        event("an end timed out: a long run of losses")  # what is read is still a prefix
    else:
        assert server.read == wrote_up and client.read == wrote_down


u32 = st.integers(0, 2**32 - 1)
near = st.integers(-70_000, 70_000)  # relative to RCV.NXT or SND.UNA: within a window or two


@dataclass(frozen=True)
class Hostile:
    """A segment to build against a connection's current numbers (or absolute ones)."""

    seq: int
    ack: int
    relative: bool
    flags: int
    window: int
    options: Options
    payload: bytes
    later: float

    def against(self, conn: TcpConnection) -> TcpSegment:
        seq, ack = self.seq, self.ack
        if self.relative:
            seq, ack = (conn.rcv_nxt + seq) & MASK, (conn.snd_una + ack) & MASK
        return TcpSegment(
            conn.remote.port, conn.local.port, seq & MASK, ack & MASK, self.flags, self.window,
            self.options, self.payload,
        )  # fmt: skip


hostile_segments = st.builds(
    Hostile,
    seq=near | u32,
    ack=near | u32,
    relative=st.booleans(),
    flags=st.integers(0, 0xFF),
    window=st.integers(0, 0xFFFF),
    options=st.builds(
        Options,
        window_scale=st.none() | st.integers(0, 255),
        mss=st.none() | st.integers(0, 0xFFFF),
        sack=st.lists(st.tuples(u32, u32), max_size=3).map(tuple),
        timestamps=st.none() | st.tuples(u32, u32),
    ),
    payload=st.binary(max_size=100),
    later=st.floats(0, 0.5),
)


@settings(max_examples=1000)
@given(st.lists(hostile_segments, max_size=30), st.sampled_from(["opening", "half-open", "open"]))
def test_no_segment_makes_a_connection_raise(hostile: list[Hostile], phase: str) -> None:
    """Whatever arrives, in a connection open or still opening (SYN-SENT, SYN-RECEIVED), is
    taken or dropped and counted, and the connection's state stays bounded."""
    rng = random.Random(0)
    link = Link(Channel(rng), Channel(rng))
    conn = link.client.conn
    if phase == "half-open":
        syn = conn.segments_to_send(0.0)[0]
        conn = TcpConnection.accept(syn, SERVER, CLIENT, 0.0, iss=5, mss=1460)
    elif phase == "open":
        link.run(link.established)
        link.client.to_write += bytes(5000)
    for segment in hostile:
        link.run_for(segment.later)
        conn.receive(segment.against(conn), link.now)
        conn.segments_to_send(link.now)
        conn.events()
    for reason in conn.drops:
        event(f"dropped: {reason.name}")
    assert conn.readable <= conn.config.receive_buffer + (1 << conn.rcv_scale)
    assert 0 <= conn.send_space <= conn.config.send_buffer
    assert conn._ooo.held <= conn.config.receive_buffer + (1 << conn.rcv_scale)
