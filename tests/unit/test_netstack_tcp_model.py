"""TCP against the model of a byte stream: whatever the network does to the segments (Hypothesis
scripts each one's fate: delivered, lost, duplicated or late), what one end wrote is what the
other read, prefix-wise at every moment and whole at the end. And no segment, however hostile,
makes a connection raise."""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tcp_link import Channel, Link

from wgpy.netstack.tcp import TcpConfig, TcpEvent, TcpState
from wgpy.netstack.tcp_segment import Flags, Options, TcpSegment

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


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
    assert link.server is not None
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


segments = st.builds(
    TcpSegment,
    src_port=st.just(443),
    dst_port=st.just(40000),
    seq=st.integers(0, 0xFFFFFFFF),
    ack=st.integers(0, 0xFFFFFFFF),
    flags=st.integers(0, 0xFF).map(Flags),
    window=st.integers(0, 0xFFFF),
    options=st.builds(
        Options,
        sack=st.lists(
            st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=3
        ).map(tuple),
        timestamps=st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    ),
    payload=st.binary(max_size=100),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(segments, st.floats(0, 5)), max_size=30))
def test_no_segment_makes_a_connection_raise(hostile: list[tuple[TcpSegment, float]]) -> None:
    rng = random.Random(0)
    link = Link(Channel(rng), Channel(rng))
    link.run(link.established)
    client = link.client.conn
    link.client.to_write += bytes(5000)
    for segment, later in hostile:
        link.run_for(later / 10)
        client.receive(segment, link.now)
        client.segments_to_send(link.now)
        client.events()
    # State stays bounded: the buffers within their limits (plus one window-scale step).
    assert client.readable <= client.config.receive_buffer + (1 << client.rcv_scale)
    assert 0 <= client.send_space <= client.config.send_buffer
    assert client._ooo.held <= client.config.receive_buffer + (1 << client.rcv_scale)
