"""TCP, one connection against another in memory under a fake clock (tests/tcp_link.py): the
handshake, the byte stream through loss, reordering and duplication, retransmission timing, SACK
recovery, flow control, RST and ICMP errors, closing and TIME-WAIT."""

from __future__ import annotations

import itertools
import random

import pytest
from tcp_link import CLIENT, SERVER, Channel, Link, Side

from wgpy.netstack import tcp_reassembly
from wgpy.netstack.tcp import (
    MASK,
    RTO_AFTER_SYN_TIMEOUT,
    IcmpKind,
    TcpConfig,
    TcpConnection,
    TcpDrop,
    TcpError,
    TcpEvent,
    TcpState,
    window_scale_for,
)
from wgpy.netstack.tcp_segment import Flags, Options, TcpSegment
from wgpy.netstack.tcp_tcb import MAX_WINDOW

MiB = 1 << 20
_ADDRESSES = (CLIENT, SERVER)
TIMESTAMPS_LEN = 12  # NOP, NOP, kind 8 of 10 bytes


def make_link(seed: int = 1, **kwargs: object) -> Link:
    rng = random.Random(seed)
    return Link(Channel(rng), Channel(rng), **kwargs)  # type: ignore[arg-type]


def connected(seed: int = 1, **kwargs: object) -> Link:
    link = make_link(seed, **kwargs)
    link.run(link.established)
    for end in link.sides:
        end.pump()
    return link


def server(link: Link) -> Side:
    assert link.server is not None
    return link.server


def closed(end: Side) -> bool:
    return end.conn.state is TcpState.CLOSED


def toward(
    conn: TcpConnection, flags: Flags, *, ahead: int = 0, payload: bytes = b""
) -> TcpSegment:
    """A segment from the peer of `conn`, `ahead` bytes past RCV.NXT, acknowledging SND.NXT."""
    seq, ack = (conn.rcv_nxt + ahead) & MASK, conn.snd_nxt & MASK
    return TcpSegment(conn.remote.port, conn.local.port, seq, ack, flags, 1000, payload=payload)


# -- opening ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_the_handshake_establishes_both_ends_with_every_option_both_offered(family: int) -> None:
    link = connected(family=family)
    client, srv = link.client.conn, server(link).conn
    flags = [segment.flags for _, segment in link.client.channel.sent[:2]]
    assert flags[0] == Flags.SYN and flags[1] == Flags.ACK
    assert link.down.sent[0][1].flags == Flags.SYN | Flags.ACK
    assert link.client.events == [TcpEvent.ESTABLISHED] == server(link).events
    assert client.sack and srv.sack and client.timestamps and srv.timestamps
    scale = window_scale_for(TcpConfig().receive_buffer)
    assert client.snd_scale == srv.rcv_scale == scale == srv.snd_scale == client.rcv_scale


def test_each_end_sends_segments_no_larger_than_the_smaller_mss_less_options() -> None:
    link = connected(mss=1460, server_mss=1200)
    assert link.client.channel.sent[0][1].options.mss == 1460
    assert link.down.sent[0][1].options.mss == 1200
    data = random.Random(3).randbytes(100_000)
    link.client.to_write += data
    server(link).to_write += data
    link.run(lambda: len(server(link).read) == len(link.client.read) == len(data))
    for channel in (link.client.channel, link.down):
        assert max(length for _, length in channel.payloads()) == 1200 - TIMESTAMPS_LEN


def test_a_peer_that_offers_no_options_gets_none_and_the_stream_still_flows() -> None:
    plain = TcpConfig(sack=False, timestamps=False, window_scaling=False)
    link = connected(server_config=plain)
    client = link.client.conn
    assert not (client.sack or client.timestamps or client.snd_scale or client.rcv_scale)
    link.client.channel.loss = link.down.loss = 0.05
    data = random.Random(4).randbytes(300_000)
    link.client.to_write += data
    link.run(lambda: len(server(link).read) == len(data))
    assert server(link).read == data
    assert all(segment.window <= 0xFFFF for _, segment in link.down.sent)


def test_an_unanswered_syn_ack_is_resent_with_backoff_then_the_passive_end_times_out() -> None:
    link = make_link()
    link.client.channel.fate = lambda segment: [0.0] if segment.flags & Flags.SYN else []
    link.run(lambda: link.server is not None and closed(server(link)))
    config = TcpConfig()
    times = [at for at, segment in link.down.sent if segment.flags & Flags.SYN]
    first = times[0]
    expected = [first + config.rto_initial * ((1 << k) - 1) for k in range(config.syn_retries + 1)]
    assert times == pytest.approx(expected)
    assert server(link).conn.events() == [TcpEvent.TIMED_OUT]


@pytest.mark.parametrize("timestamps", [True, False])
def test_after_a_lost_syn_the_rto_falls_back_to_three_seconds_until_a_sample(
    timestamps: bool,
) -> None:
    config = TcpConfig(timestamps=timestamps)
    link = make_link(client_config=config, server_config=config)
    link.client.channel.fate = lambda segment: [] if not link.client.channel.sent[1:] else [0.0]
    link.run(link.established)
    client = link.client.conn
    assert client.rtt.rto == (client.rtt.rto_min if timestamps else RTO_AFTER_SYN_TIMEOUT)


def test_a_syn_offering_a_window_scale_of_zero_is_answered_with_ours() -> None:
    client = TcpConnection.connect(*_ADDRESSES, 0.0, iss=1, mss=1460)
    syn = client.segments_to_send(0.0)[0]
    offer = syn._replace(options=Options(mss=1460, window_scale=0))
    srv = TcpConnection.accept(offer, *reversed(_ADDRESSES), 0.0, iss=9, mss=1460)
    [syn_ack] = srv.segments_to_send(0.0)
    assert syn_ack.options.window_scale == srv.rcv_scale > 0 and srv.snd_scale == 0


def test_a_simultaneous_open_establishes_both_ends() -> None:
    a = TcpConnection.connect(*_ADDRESSES, 0.0, iss=10, mss=1460)
    b = TcpConnection.connect(*reversed(_ADDRESSES), 0.0, iss=5000, mss=1460)
    for _ in range(4):
        for sender, receiver in ((a, b), (b, a)):
            for segment in sender.segments_to_send(0.0):
                receiver.receive(segment, 0.0)
    assert a.state is b.state is TcpState.ESTABLISHED
    assert TcpEvent.ESTABLISHED in a.events() and TcpEvent.ESTABLISHED in b.events()


# -- the byte stream ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_ten_mib_each_way_through_loss_reordering_and_duplication_arrives_intact(
    family: int,
) -> None:
    link = connected(seed=7, family=family)
    for channel in (link.client.channel, link.down):
        channel.loss = channel.duplicate = channel.reorder = 0.05
    rng = random.Random(8)
    up, down = rng.randbytes(10 * MiB), rng.randbytes(10 * MiB)
    link.client.to_write += up
    server(link).to_write += down
    link.client.close_when_written = server(link).close_when_written = True
    link.run(lambda: closed(link.client) and closed(server(link)), limit=3600)
    assert server(link).read == up and link.client.read == down
    link.client.pump()
    assert link.client.events[-1] is TcpEvent.CLOSED and TcpEvent.PEER_CLOSED in link.client.events
    sent = sum(length for _, length in link.client.channel.payloads())
    assert sent > len(up)  # the loss was real: some data went twice
    client, srv = link.client.conn, server(link).conn
    assert client.bytes_acked == srv.bytes_received == len(up)
    assert srv.bytes_acked == client.bytes_received == len(down)
    assert client.retransmitted == resent(link.client.channel) > 0


def test_the_fast_paths_change_nothing_a_lossy_transfer_sends() -> None:
    # Header prediction (receiving) and bulk sending against the full RFC 9293 path alone: every
    # segment of both ends, to the byte and the timestamp, is the same.
    def transfer(fast_paths: bool) -> tuple[list[tuple[float, TcpSegment]], ...]:
        config = TcpConfig(fast_paths=fast_paths)
        link = connected(seed=11, client_config=config, server_config=config)
        for channel in (link.client.channel, link.down):
            channel.loss = channel.duplicate = channel.reorder = 0.02
        data = random.Random(12).randbytes(2 * MiB)
        link.client.to_write += data
        server(link).to_write += data[::-1]
        link.client.close_when_written = server(link).close_when_written = True
        link.run(lambda: closed(link.client) and closed(server(link)), limit=3600)
        assert server(link).read == data and link.client.read == data[::-1]
        ends = link.client.conn, server(link).conn
        if fast_paths:  # both ends took both, often
            assert all(end.predicted > 100 and end.bulk_runs > 100 for end in ends)
        else:
            assert all(end.predicted == end.bulk_runs == 0 for end in ends)
        return link.client.channel.sent, link.down.sent

    assert transfer(fast_paths=False) == transfer(fast_paths=True)


def resent(channel: Channel) -> int:
    """How many segments carrying data or FIN started below the highest one sent before."""
    count, highest = 0, 0
    for _, segment in channel.sent:
        if segment.payload or segment.flags & Flags.FIN:
            count += segment.seq < highest
            highest = max(highest, segment.seq + segment.length)
    return count


@pytest.mark.parametrize("timestamps", [True, False])
def test_the_rtt_is_measured_with_timestamps_or_by_timing_one_segment(timestamps: bool) -> None:
    config = TcpConfig(timestamps=timestamps)
    link = connected(client_config=config, server_config=config)
    link.client.to_write += bytes(200_000)
    link.run(lambda: len(server(link).read) == 200_000)
    round_trip = link.client.channel.delay + link.down.delay
    assert link.client.conn.rtt.srtt == pytest.approx(round_trip, abs=0.002)


def test_window_scaling_lets_more_than_64_kib_be_in_flight() -> None:
    link = connected()
    client = link.client.conn
    link.client.to_write += bytes(4 * MiB)
    flights: list[int] = []

    def all_read() -> bool:
        flights.append(client.snd_max - client.snd_una)
        return len(server(link).read) == 4 * MiB

    link.run(all_read)
    assert max(flights) > 0xFFFF


# -- retransmission ----------------------------------------------------------------------------


def test_the_syn_is_resent_with_exponential_backoff_then_times_out() -> None:
    link = make_link()
    link.client.channel.fate = lambda segment: []
    link.run(lambda: closed(link.client))
    config = TcpConfig()
    times = [at for at, segment in link.client.channel.sent if segment.flags & Flags.SYN]
    assert times == [config.rto_initial * ((1 << k) - 1) for k in range(config.syn_retries + 1)]
    assert link.now == config.rto_initial * ((1 << (config.syn_retries + 1)) - 1)
    link.client.pump()
    assert link.client.events == [TcpEvent.TIMED_OUT]


def test_data_is_resent_with_the_rto_doubling_up_to_its_maximum_then_times_out() -> None:
    link = connected()
    client, config = link.client.conn, TcpConfig()
    rto = client.rtt.rto
    assert rto == config.rto_min  # an RTT of 10 ms in memory: RFC 6298's value is below the floor
    link.client.channel.fate = lambda segment: []
    link.client.to_write += b"x" * 100
    link.run(lambda: closed(link.client), limit=10_000)
    times = [at for at, segment in link.client.channel.sent if segment.payload]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    expected = [min(rto * (1 << k), config.rto_max) for k in range(config.max_retries)]
    assert gaps == pytest.approx(expected)
    link.client.pump()
    assert link.client.events[-1] is TcpEvent.TIMED_OUT


def test_sack_recovery_retransmits_only_the_holes_before_any_timeout() -> None:
    link = connected()
    client = link.client.conn
    size = client.mss - TIMESTAMPS_LEN
    first_sent: dict[int, int] = {}

    def lose_second_and_fifth(segment: TcpSegment) -> list[float]:
        if not segment.payload or segment.seq in first_sent:
            return [0.0]
        first_sent[segment.seq] = len(first_sent)
        return [] if first_sent[segment.seq] in (1, 4) else [0.0]

    link.client.channel.fate = lose_second_and_fifth
    start = link.now
    link.client.to_write += bytes(10 * size)  # the initial window: one flight
    link.run(lambda: len(server(link).read) == 10 * size)
    seqs = [seq for seq, _ in link.client.channel.payloads()]
    resent = sorted(seq for seq in set(seqs) if seqs.count(seq) > 1)
    holes = sorted(seq for seq, index in first_sent.items() if index in (1, 4))
    assert resent == holes and len(seqs) == 12
    assert link.now < start + TcpConfig().rto_min  # fast recovery, not a timeout
    assert client.congestion.cwnd < 10 * client.mss  # and the window was halved


def test_without_sack_newreno_resends_one_hole_per_partial_ack() -> None:
    link = connected(server_config=TcpConfig(sack=False))
    size = link.client.conn.mss - TIMESTAMPS_LEN
    seen: set[int] = set()

    def lose_first_copy_of_third_and_sixth(segment: TcpSegment) -> list[float]:
        index = len(seen)
        if not segment.payload or segment.seq in seen:
            return [0.0]
        seen.add(segment.seq)
        return [] if index in (2, 5) else [0.0]

    link.client.channel.fate = lose_first_copy_of_third_and_sixth
    link.client.to_write += bytes(10 * size)
    link.run(lambda: len(server(link).read) == 10 * size)
    seqs = [seq for seq, _ in link.client.channel.payloads()]
    assert len(seqs) == 12 and link.client.conn.retries == 0


# -- flow control ------------------------------------------------------------------------------


def test_a_full_receiver_closes_the_window_the_sender_probes_and_reading_reopens_it() -> None:
    buffer = 64 * 1024
    link = connected(server_config=TcpConfig(receive_buffer=buffer))
    client, srv = link.client.conn, server(link)
    srv.reading = False
    data = random.Random(5).randbytes(4 * buffer)
    link.client.to_write += data
    link.run_for(30.0)
    assert client.snd_wnd == 0 and srv.conn.readable >= buffer - client.mss
    probes = [at for at, s in link.client.channel.sent if s.seq == (client.snd_una - 1) & MASK]
    gaps = [later - earlier for earlier, later in itertools.pairwise(probes)]
    assert len(probes) >= 3 and gaps == sorted(gaps) and gaps[-1] > gaps[0]
    srv.reading = True
    link.run(lambda: len(srv.read) == len(data), limit=1.0)
    assert srv.read == data


def test_a_window_held_shut_for_an_hour_does_not_time_the_sender_out() -> None:
    link = connected(server_config=TcpConfig(receive_buffer=16 * 1024))
    server(link).reading = False
    link.client.to_write += bytes(64 * 1024)
    link.run_for(3600.0)
    assert link.client.conn.state is TcpState.ESTABLISHED and link.client.conn.snd_wnd == 0
    server(link).reading = True  # the window update goes out at once: no waiting for a probe
    link.run(lambda: len(server(link).read) == 64 * 1024, limit=1.0)


def test_send_takes_what_fits_and_says_when_there_is_room_again() -> None:
    config = TcpConfig(send_buffer=10_000)
    link = connected(client_config=config)
    client = link.client.conn
    assert client.send(bytes(25_000)) == config.send_buffer
    assert client.send(b"more") == 0
    link.run(lambda: TcpEvent.WRITABLE_AGAIN in link.client.conn._events)
    assert client.send_space >= config.send_buffer // 2


# -- RST, SYN and ICMP -------------------------------------------------------------------------


def test_an_abort_resets_the_peer() -> None:
    link = connected()
    server(link).conn.abort()
    link.run(lambda: closed(link.client))
    link.client.pump()
    assert link.client.events[-1] is TcpEvent.RESET
    assert server(link).events[-1] is TcpEvent.CLOSED


def test_an_rst_answering_the_syn_refuses_the_connection() -> None:
    client = TcpConnection.connect(*_ADDRESSES, 0.0, iss=77, mss=1460)
    syn = client.segments_to_send(0.0)[0]
    rst = TcpSegment(syn.dst_port, syn.src_port, 0, syn.seq + 1, Flags.RST | Flags.ACK, 0)
    client.receive(rst, 0.01)
    assert client.state is TcpState.CLOSED and client.events() == [TcpEvent.REFUSED]


def test_a_syn_ack_for_another_syn_is_answered_by_rst_and_ignored() -> None:
    client = TcpConnection.connect(*_ADDRESSES, 0.0, iss=77, mss=1460)
    syn = client.segments_to_send(0.0)[0]
    bogus = TcpSegment(syn.dst_port, syn.src_port, 5, 9999, Flags.SYN | Flags.ACK, 1000)
    client.receive(bogus, 0.01)
    [rst] = client.segments_to_send(0.01)
    assert rst.flags == Flags.RST and rst.seq == 9999
    assert client.state is TcpState.SYN_SENT and client.drops[TcpDrop.BAD_SYN_ACK] == 1


def test_an_rst_at_rcv_nxt_resets_the_connection() -> None:
    client = connected().client.conn
    client.receive(toward(client, Flags.RST), 1.0)
    assert client.state is TcpState.CLOSED and client.events() == [TcpEvent.RESET]


def test_an_rst_outside_the_window_is_dropped_and_counted() -> None:
    client = connected().client.conn
    client.receive(toward(client, Flags.RST, ahead=client.rcv_adv - client.rcv_nxt + 1), 1.0)
    assert client.state is TcpState.ESTABLISHED
    assert client.drops[TcpDrop.RST_OUT_OF_WINDOW] == 1 and client.segments_to_send(1.0) == []


@pytest.mark.parametrize(
    ("flags", "reason"),
    [(Flags.RST, TcpDrop.RST_NOT_EXACT), (Flags.SYN, TcpDrop.SYN_SYNCHRONIZED)],
)
def test_an_rst_or_syn_inside_the_window_but_not_exact_draws_a_challenge_ack(
    flags: Flags, reason: TcpDrop
) -> None:
    client = connected().client.conn
    client.receive(toward(client, flags, ahead=1), 1.0)
    assert client.state is TcpState.ESTABLISHED and client.drops[reason] == 1
    [challenge] = client.segments_to_send(1.0)
    assert challenge.flags == Flags.ACK and challenge.ack == client.rcv_nxt & MASK


def test_challenge_acks_are_rate_limited() -> None:
    client = connected().client.conn
    sent = []
    for at in (1.0, 1.1, 1.2, 1.6):
        client.receive(toward(client, Flags.RST, ahead=1), at)
        sent += client.segments_to_send(at)
    assert client.drops[TcpDrop.RST_NOT_EXACT] == 4 and len(sent) == 2


def test_data_beyond_the_window_is_dropped_counted_and_answered_with_an_ack() -> None:
    client = connected().client.conn
    beyond = client.rcv_adv - client.rcv_nxt
    client.receive(toward(client, Flags.ACK, ahead=beyond, payload=b"late"), 1.0)
    assert client.drops[TcpDrop.OUT_OF_WINDOW] == 1 and client.readable == 0
    [ack] = client.segments_to_send(1.0)
    assert ack.ack == client.rcv_nxt & MASK


def test_a_flood_of_tiny_out_of_order_segments_holds_bounded_state() -> None:
    client = connected().client.conn
    for offset in range(2, 20_000, 2):
        client.receive(toward(client, Flags.ACK, ahead=offset, payload=b"x"), 1.0)
    assert client.drops[TcpDrop.REASSEMBLY_FULL] == 10_000 - 1 - tcp_reassembly.MAX_RUNS
    assert client._ooo.held == tcp_reassembly.MAX_RUNS


def test_a_segment_with_an_older_timestamp_is_an_old_duplicate_and_dropped() -> None:
    client = connected().client.conn
    current = toward(client, Flags.ACK, payload=b"new")
    stale = Options(timestamps=((client.ts_recent - 1) & MASK, 0))
    client.receive(current._replace(options=stale), 1.0)
    assert client.drops[TcpDrop.PAWS] == 1 and client.readable == 0
    [ack] = client.segments_to_send(1.0)
    assert ack.ack == client.rcv_nxt & MASK  # answered, as any unacceptable segment
    fresh = Options(timestamps=((client.ts_recent + 1) & MASK, 0))
    client.receive(current._replace(options=fresh), 1.1)
    assert client.receive_data(10) == b"new"


def test_an_ack_for_data_never_sent_is_dropped_and_answered() -> None:
    client = connected().client.conn
    bogus = toward(client, Flags.ACK)
    client.receive(bogus._replace(ack=(client.snd_max + 10) & MASK), 1.0)
    assert client.drops[TcpDrop.ACK_UNSENT] == 1 and len(client.segments_to_send(1.0)) == 1


def test_an_ack_older_than_the_window_is_dropped_unanswered() -> None:
    client = connected().client.conn
    stale = toward(client, Flags.ACK, payload=b"data")
    too_old = client.snd_una - max(client.max_snd_wnd, MAX_WINDOW) - 1  # RFC 5961 5.2
    client.receive(stale._replace(ack=too_old & MASK), 1.0)
    assert client.drops[TcpDrop.ACK_TOO_OLD] == 1 and client.readable == 0
    assert client.segments_to_send(1.0) == []


def test_a_segment_without_ack_on_a_synchronized_connection_is_dropped_unanswered() -> None:
    client = connected().client.conn
    client.receive(toward(client, Flags(0), payload=b"data"), 1.0)
    assert client.drops[TcpDrop.NO_ACK] == 1 and client.readable == 0
    assert client.segments_to_send(1.0) == []


def test_icmp_unreachable_refuses_an_opening_connection() -> None:
    client = TcpConnection.connect(*_ADDRESSES, 0.0, iss=1, mss=1460)
    client.segments_to_send(0.0)
    client.icmp_error(IcmpKind.PORT_UNREACHABLE)
    assert client.state is TcpState.CLOSED and client.events() == [TcpEvent.REFUSED]
    assert client.error is IcmpKind.PORT_UNREACHABLE


def test_icmp_unreachable_is_only_a_soft_error_once_established() -> None:
    client = connected().client.conn
    client.icmp_error(IcmpKind.HOST_UNREACHABLE)
    assert client.state is TcpState.ESTABLISHED and client.soft_error is IcmpKind.HOST_UNREACHABLE


# -- closing -----------------------------------------------------------------------------------


def test_the_active_closer_waits_in_time_wait_and_re_acks_a_resent_fin() -> None:
    link = connected()
    client, srv = link.client, server(link)
    dropped: list[float] = []

    def lose_the_first_final_ack(segment: TcpSegment) -> list[float]:
        if client.conn.state is TcpState.TIME_WAIT and not dropped:
            dropped.append(link.now)
            return []
        return [0.0]

    link.client.channel.fate = lose_the_first_final_ack
    client.conn.close()
    link.run(lambda: srv.conn.state is TcpState.CLOSE_WAIT)
    srv.conn.close()
    link.run(lambda: closed(srv))
    assert dropped and client.conn.state is TcpState.TIME_WAIT
    assert client.conn.drops[TcpDrop.OUT_OF_WINDOW] == 1  # the FIN again
    last_fin = max(at for at, segment in link.down.sent if segment.flags & Flags.FIN)
    link.run(lambda: closed(client))
    assert link.now == pytest.approx(last_fin + link.down.delay + TcpConfig().time_wait)
    client.pump()
    srv.pump()
    assert client.events[-2:] == [TcpEvent.PEER_CLOSED, TcpEvent.CLOSED]
    assert srv.events[-2:] == [TcpEvent.PEER_CLOSED, TcpEvent.CLOSED]


def test_a_simultaneous_close_passes_through_closing_to_time_wait_on_both_ends() -> None:
    link = connected()
    link.client.conn.close()
    server(link).conn.close()
    states: set[TcpState] = set()
    link.run(lambda: bool(states.add(link.client.conn.state)) or closed(link.client))
    assert {TcpState.CLOSING, TcpState.TIME_WAIT} <= states
    assert closed(server(link))


def test_an_orphan_gives_up_on_a_silent_peer_fin_wait_2_after_the_fin_timeout() -> None:
    link = connected(client_config=TcpConfig(fin_wait_2=30.0))
    link.client.conn.close(orphan=True)
    link.run(lambda: link.client.conn.state is TcpState.FIN_WAIT_2)
    entered = link.now
    link.run(lambda: closed(link.client))
    link.client.pump()
    assert link.now == pytest.approx(entered + 30.0)
    assert link.client.events[-1] is TcpEvent.CLOSED
    assert server(link).conn.state is TcpState.CLOSE_WAIT  # the peer never closed


def test_a_half_close_waits_in_fin_wait_2_for_as_long_as_the_peer_keeps_sending() -> None:
    link = connected(client_config=TcpConfig(fin_wait_2=30.0))
    link.client.conn.close()
    link.run_for(120.0)
    assert link.client.conn.state is TcpState.FIN_WAIT_2
    server(link).conn.send(b"still talking")
    server(link).conn.close()
    link.run(lambda: closed(server(link)))
    assert link.client.read.endswith(b"still talking")


def test_send_after_close_is_an_error() -> None:
    client = connected().client.conn
    client.close()
    with pytest.raises(TcpError):
        client.send(b"late")


# -- acknowledgments and keepalive -------------------------------------------------------------


def test_one_small_segment_is_acked_after_the_delayed_ack_timeout() -> None:
    link = connected()
    link.client.to_write += b"warm"  # its reading opens the window past the SYN's 64 KiB: an ACK
    link.run(lambda: server(link).read == b"warm")
    link.run_for(1.0)
    link.client.to_write += b"hello"
    link.run(lambda: server(link).read == b"warmhello")
    link.run(lambda: link.client.conn.snd_una == link.client.conn.snd_max)
    [sent] = [at for at, segment in link.client.channel.sent if segment.payload == b"hello"]
    arrived = sent + link.client.channel.delay
    acks = [at for at, segment in link.down.sent if at >= arrived]
    assert acks[0] == pytest.approx(arrived + TcpConfig().delayed_ack)


def test_a_batch_that_fills_its_own_hole_ends_with_an_ack_of_everything() -> None:
    link = connected()
    client, srv = link.client.conn, server(link).conn
    client.send(bytes(2 * (client.mss - TIMESTAMPS_LEN)))
    first, second = client.segments_to_send(link.now)
    srv.receive(second, link.now)  # out of order: a duplicate ACK with a SACK block
    srv.receive(first, link.now)
    duplicate, last = srv.segments_to_send(link.now)
    assert duplicate.options.sack and last.ack == srv.rcv_nxt & MASK == client.snd_max & MASK


def test_every_second_full_segment_is_acked_at_once() -> None:
    link = connected()
    size = link.client.conn.mss - TIMESTAMPS_LEN
    link.client.to_write += bytes(2 * size)
    link.run(lambda: len(server(link).read) == 2 * size)
    link.run(lambda: link.client.conn.snd_una == link.client.conn.snd_max)
    sent = [at for at, segment in link.client.channel.sent if segment.payload]
    arrived = max(sent) + link.client.channel.delay
    assert [at for at, segment in link.down.sent if at >= arrived] == [arrived]


def test_keepalive_probes_an_idle_peer_and_gives_up_when_it_is_gone() -> None:
    config = TcpConfig(keepalive=True, keepalive_idle=10, keepalive_interval=1, keepalive_probes=3)
    link = connected(client_config=config)
    link.run_for(60.0)
    assert link.client.conn.state is TcpState.ESTABLISHED  # probes answered
    link.down.fate = lambda segment: []
    quiet_from = link.now
    link.run(lambda: closed(link.client))
    link.client.pump()
    assert link.client.events[-1] is TcpEvent.TIMED_OUT
    limit = config.keepalive_idle + config.keepalive_probes * config.keepalive_interval
    assert link.now <= quiet_from + limit
