"""The compiled accelerator (wgpy/io/accel.py) against its references, wgpy/core/transport.py
and wgpy/io/vnet/: for random batches, keys and counters, the same transport messages byte for
byte, the same packets opened, and a failed tag (a flipped bit, the wrong key, a counter past
REJECT_AFTER_MESSAGES) reported the same; random TSO and USO super-packets cut into the same
segments, which, some damaged, are merged the same when coalesced, runs of them followed on
the same; a batch's headers read the same; and two links, one accelerated, in step through
whole batches, forgeries among them; and a lone message sealed and opened over libsodium as
the references do it, a forged tag refused.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Sequence
from unittest.mock import patch

import pytest
from device_views import outcome, state
from fakes import Link
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import keys32

from wgpy.core import ippacket
from wgpy.core.constants import AEAD_TAG_SIZE, REJECT_AFTER_MESSAGES, TRANSPORT_HEADER_SIZE
from wgpy.core.endpoint import Endpoint
from wgpy.core.ippacket import ipv4_packet, ipv6_packet
from wgpy.core.keypair import Keypair
from wgpy.core.noise import TransportKeys
from wgpy.core.observer import Direction, HandshakeSecrets
from wgpy.core.transport import decrypt_packet, encrypt_packet, encrypt_packets, transport_run
from wgpy.io import accel
from wgpy.io.vnet import coalesce as coalesce_module
from wgpy.io.vnet import segment as segment_module
from wgpy.io.vnet.coalesce import _Run
from wgpy.io.vnet.segment import F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VnetHdr, segment

pytestmark = pytest.mark.skipif(not accel.available, reason=accel.reason or "built")

indices = st.integers(0, 2**32 - 1)
counters = st.integers(0, REJECT_AFTER_MESSAGES + 8) | st.integers(0, 1 << 20)
packets = st.lists(st.binary(max_size=1600), max_size=24)
mtus = st.integers(1, 1500)


def keypair(send: bytes, receive: bytes, remote: int = 0, counter: int = 0) -> Keypair:
    pair = Keypair.from_keys(TransportKeys(send, receive), 0, remote, True, 0.0)
    pair.send_counter = counter
    return pair


def counter_of(message: bytes | memoryview) -> int:
    return int.from_bytes(message[8:16], "little")


def gro_buffer(messages: Sequence[bytes]) -> list[memoryview]:
    """`messages` as a UDP_GRO receive hands them over: views of one buffer."""
    view = memoryview(b"".join(messages))
    ends = [sum(map(len, messages[: i + 1])) for i in range(len(messages))]
    return [view[end - len(m) : end] for m, end in zip(messages, ends, strict=True)]


@given(keys32, indices, st.integers(0, REJECT_AFTER_MESSAGES - 64), packets, mtus)
def test_a_batch_seals_to_the_same_messages(
    key: bytes, remote: int, counter: int, batch: list[bytes], mtu: int
) -> None:
    pure, compiled = keypair(key, key, remote, counter), keypair(key, key, remote, counter)
    assert accel.CompiledCipher().seal(compiled, batch, mtu) == encrypt_packets(pure, batch, mtu)
    assert compiled.send_counter == pure.send_counter == counter + len(batch)


@given(
    keys32,
    keys32,
    st.lists(st.tuples(st.binary(max_size=1500), counters, st.integers(0, 4)), max_size=24),
    st.data(),
)
def test_a_batch_opens_to_the_same_packets_and_failures(
    key: bytes, wrong: bytes, batch: list[tuple[bytes, int, int]], data: st.DataObject
) -> None:
    """Each message is sealed under its own counter, then (by its fate) left whole, given a
    flipped bit, sealed under the wrong key, left without a keypair, or cut to its header and
    tag: the compiled open says what decrypt_packet says of each."""
    receiver, other = keypair(key, key), keypair(wrong, wrong)
    messages, keypairs = [], []
    for packet, counter, fate in batch:
        sealer = keypair(wrong if fate == 2 else key, key, 7, counter)
        message = bytearray(encrypt_packets(sealer, [b"" if fate == 4 else packet], 1500)[0])
        if fate == 1:
            at = data.draw(st.integers(TRANSPORT_HEADER_SIZE - 8, len(message) - 1))
            message[at] ^= 1 << data.draw(st.integers(0, 7))
        messages.append(bytes(message))
        keypairs.append(None if fate == 3 else data.draw(st.sampled_from([receiver, other])))
    datagrams = gro_buffer(messages)
    expected = [
        None if pair is None else decrypt_packet(pair, counter_of(data), data[16:])
        for pair, data in zip(keypairs, datagrams, strict=True)
    ]
    assert accel.CompiledCipher().open(keypairs, datagrams) == expected


@given(keys32, st.lists(st.tuples(st.binary(max_size=1500), counters, st.booleans()), max_size=24))
def test_a_run_opens_under_one_keypair_as_under_that_keypair_for_each(
    key: bytes, batch: list[tuple[bytes, int, bool]]
) -> None:
    """open_all(keypair, ...), which hands the compiled open one key for all, says what open
    says given the keypair once for each message, forgeries (a flipped bit) among them."""
    receiver = keypair(key, key)
    messages = []
    for packet, counter, forged in batch:
        message = bytearray(encrypt_packets(keypair(key, key, 7, counter), [packet], 1500)[0])
        message[-1] ^= forged
        messages.append(bytes(message))
    datagrams = gro_buffer(messages)
    cipher = accel.CompiledCipher()
    expected = cipher.open([receiver] * len(datagrams), datagrams)
    assert cipher.open_all(receiver, datagrams) == expected


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 1419, 1420])
def test_a_message_opens_whole_and_not_with_one_tag_byte_changed(length: int) -> None:
    """The compiled open computes the tag itself and compares all 16 bytes: a copy whose tag
    differs only in its first, or only in its last, byte is refused. The lengths reach the
    empty packet (a 32-byte message, no ciphertext), one block and a byte either side, and a
    packet that fills a 1420-byte MTU, whose ciphertext (not padded to 16) Poly1305 pads."""
    key = os.urandom(32)
    packet = os.urandom(length)
    (message,) = encrypt_packets(keypair(key, key, 7, 5), [packet], 1420)
    forgeries = []
    for at in (-AEAD_TAG_SIZE, -1):
        forged = bytearray(message)
        forged[at] ^= 0x80
        forgeries.append(bytes(forged))
    opened = accel.CompiledCipher().open_all(keypair(key, key), [message, *forgeries])
    assert opened == [decrypt_packet(keypair(key, key), 5, message[16:]), None, None]
    assert opened[0] is not None and opened[0][:length] == packet


def test_a_keypair_without_raw_keys_takes_the_pure_path() -> None:
    """Keypairs built from cipher objects alone still seal and open, the pure way."""
    key = os.urandom(32)
    bare = keypair(key, key)
    bare.send_key = bare.receive_key = b""
    (message,) = accel.CompiledCipher().seal(bare, [b"hello"], 1420)
    assert accel.CompiledCipher().open([bare], [message]) == [b"hello" + bytes(11)]
    assert accel.CompiledCipher().open_all(bare, [message]) == [b"hello" + bytes(11)]


def test_a_malformed_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        accel._accel.open([b"short"], [bytes(32)], REJECT_AFTER_MESSAGES)


# -- lone messages, over libsodium ---------------------------------------------------------------

needs_sodium = pytest.mark.skipif(
    accel.sodium is None, reason="the accelerator was built without libsodium's headers"
)


@needs_sodium
@given(keys32, indices, st.integers(0, REJECT_AFTER_MESSAGES - 1), st.binary(max_size=1600), mtus)
def test_a_lone_packet_seals_to_the_same_message(
    key: bytes, remote: int, counter: int, packet: bytes, mtu: int
) -> None:
    pure, compiled = keypair(key, key, remote, counter), keypair(key, key, remote, counter)
    assert accel.SodiumCipher().seal(compiled, packet, mtu) == encrypt_packet(pure, packet, mtu)
    assert compiled.send_counter == pure.send_counter == counter + 1


@needs_sodium
@given(keys32, keys32, st.binary(max_size=1500), counters, st.integers(0, 4), st.data())
def test_a_lone_message_opens_to_the_same_packet_or_failure(
    key: bytes, wrong: bytes, packet: bytes, counter: int, fate: int, data: st.DataObject
) -> None:
    """As the batch's: the message left whole, given a flipped bit, sealed under the wrong key,
    cut to its header and tag, or opened from a view of a larger buffer: libsodium's open
    says what decrypt_packet says of it."""
    sealer = keypair(wrong if fate == 2 else key, key, 7, counter)
    message = bytearray(encrypt_packets(sealer, [b"" if fate == 3 else packet], 1500)[0])
    if fate == 1:
        at = data.draw(st.integers(TRANSPORT_HEADER_SIZE - 8, len(message) - 1))
        message[at] ^= 1 << data.draw(st.integers(0, 7))
    view = memoryview(bytes(8) + message)[8:] if fate == 4 else memoryview(message)
    receiver = keypair(key, key)
    expected = decrypt_packet(receiver, counter_of(message), bytes(message[16:]))
    assert accel.SodiumCipher().open(receiver, view) == expected


@needs_sodium
def test_a_lone_message_with_a_forged_tag_is_not_opened() -> None:
    key = os.urandom(32)
    message = bytearray(encrypt_packet(keypair(key, key), b"ping", 1420))
    message[-1] ^= 0x80
    assert accel.SodiumCipher().open(keypair(key, key), bytes(message)) is None


@needs_sodium
def test_a_lone_message_past_reject_after_messages_is_not_opened() -> None:
    """Its tag holds, but its counter is one no sender may use (decrypt_packet's check)."""
    key = os.urandom(32)
    message = encrypt_packet(keypair(key, key, counter=REJECT_AFTER_MESSAGES), b"", 1420)
    assert accel.SodiumCipher().open(keypair(key, key), message) is None


@needs_sodium
def test_a_keypair_without_raw_keys_takes_the_pure_path_alone_too() -> None:
    key = os.urandom(32)
    bare = keypair(key, key)
    bare.send_key = bare.receive_key = b""
    message = accel.SodiumCipher().seal(bare, b"hello", 1420)
    assert accel.SodiumCipher().open(bare, message) == b"hello" + bytes(11)


@needs_sodium
def test_a_malformed_key_is_refused_alone_too() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        accel._accel.open_lone(b"short", bytes(32), REJECT_AFTER_MESSAGES)
    with pytest.raises(ValueError, match="32 bytes"):
        accel._accel.seal_lone(bytearray(32), 0, 0, b"", 1420)


def test_the_version_names_the_libraries_in_use() -> None:
    """`wgpy --version` and the log say which libraries seal and open."""
    with patch.dict(os.environ, {accel.PURE_VARIABLE: ""}):
        described = accel.path()
    assert described.startswith("accelerated (OpenSSL")
    assert (f"libsodium {accel.sodium} for lone packets" in described) == (accel.sodium is not None)
    with patch.dict(os.environ, {accel.PURE_VARIABLE: "1"}):
        assert accel.path() == "pure Python (WGPY_PURE is set)"
        assert accel.lone_cipher() is None


# -- two links in step, one accelerated --------------------------------------------------------

inner = st.lists(
    st.binary(max_size=1380).map(lambda p: ipv4_packet("10.0.0.1", "10.0.0.2", p)), min_size=1
)


def accelerated_twins() -> tuple[Link, Link]:
    """Two identical established links (same seed), the second's devices accelerated."""
    pure, fast = Link(seed=19), Link(seed=19)
    for node in (fast.a, fast.b):
        node.device.batch_cipher = accel.CompiledCipher()
        node.device.lone_cipher = accel.SodiumCipher() if accel.sodium is not None else None
    for link in (pure, fast):
        link.send("a", ipv4_packet("10.0.0.1", "10.0.0.2", b"hello"))
    return pure, fast


@settings(max_examples=40)
@given(st.lists(inner, min_size=1, max_size=3), st.data())
def test_accelerated_devices_send_and_receive_the_same(
    batches: list[list[bytes]], data: st.DataObject
) -> None:
    """Super-packets' worth of packets sealed by a, and opened by b from GRO buffers in which
    some datagrams are forged (a flipped bit, in their place or as copies after them) or
    replayed: the same datagrams, packets, drops,
    counters and timers on both links after every batch, and the same shown to a capture."""
    pure, fast = accelerated_twins()
    source = Endpoint("192.0.2.1", 51820)
    seen: tuple[list[object], list[object]] = ([], [])
    for link, record in zip((pure, fast), seen, strict=True):
        link.b.device.observer = Recorder(record)
    for packets in batches:
        sent = [
            link.a.device.handle_tun_packets(packets, link.now, link.wall) for link in (pure, fast)
        ]
        assert outcome(sent[0]) == outcome(sent[1])
        received = [datagram for datagram, _ in outcome(sent[0])[0]]
        in_place = data.draw(st.booleans())  # a forgery amid an in-order run, or after it
        for index in data.draw(st.sets(st.integers(0, max(0, len(received) - 1)))):
            forged = bytearray(received[index])
            forged[-1 - index % 16] ^= 1
            if in_place:
                received[index] = bytes(forged)
            else:
                received.append(bytes(forged))
        received += received[: data.draw(st.integers(0, 2))]  # replays
        results = [
            link.b.device.handle_datagrams(gro_buffer(received), source, link.now, link.wall)
            for link in (pure, fast)
        ]
        assert outcome(results[0]) == outcome(results[1])
        assert state(pure.b.device) == state(fast.b.device)
        assert state(pure.a.device) == state(fast.a.device)
        assert seen[0] == seen[1]  # what a capture is shown, in order


class Recorder:
    """An observer that notes what it is shown."""

    def __init__(self, record: list[object]) -> None:
        self.record = record

    def inner_packet(self, peer: bytes, direction: Direction, packet: bytes, wall: float) -> None:
        self.record.append((peer, direction, packet, wall))

    def handshake_secrets(self, secrets: HandshakeSecrets, wall: float) -> None:
        self.record.append((secrets, wall))


# -- headers of a batch ------------------------------------------------------------------------


@st.composite
def transport_batches(draw: st.DrawFn) -> list[bytes]:
    """Datagrams that mostly make a run (one receiver, counters in turn, from near 2**64 at
    times), broken here and there by another type, receiver or counter, or a short length."""
    receiver = draw(st.sampled_from([0, 7, 2**32 - 1]))
    counter = draw(st.integers(0, 2**64 - 1) | st.integers(2**64 - 4, 2**64 - 1))
    batch = []
    for index in range(draw(st.integers(0, 8))):
        kind, to, number = 4, receiver, (counter + index) % 2**64
        match draw(st.integers(0, 9)):
            case 0:
                kind = draw(st.integers(0, 2**32 - 1))
            case 1:
                to = draw(indices)
            case 2:
                number = draw(st.integers(0, 2**64 - 1))
        header = struct.pack("<IIQ", kind, to, number)
        batch.append(header + bytes(draw(st.sampled_from([16, 0, 15, 1400]))))
    return batch


@given(transport_batches())
def test_a_batch_s_run_of_transport_messages_is_read_the_same(batch: list[bytes]) -> None:
    assert accel.CompiledCipher().transport_run(gro_buffer(batch)) == transport_run(batch)


@st.composite
def plaintexts(draw: st.DrawFn) -> bytes | None:
    """An opened message: an IPv4 or IPv6 packet, padded, its length field at times wrong;
    a keepalive; a failure; or bytes of no version."""
    match draw(st.integers(0, 5)):
        case 0:
            return None
        case 1:
            return draw(st.binary(max_size=48))
    payload = draw(st.binary(max_size=64))
    packet = bytearray(
        ipv4_packet("10.0.0.1", "10.0.0.2", payload)
        if draw(st.booleans())
        else ipv6_packet("fd00::1", "fd00::2", payload)
    )
    if draw(st.booleans()):
        at = 2 if packet[0] == 0x45 else 4
        packet[at : at + 2] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    return bytes(packet) + bytes(draw(st.integers(0, 15)))


@given(st.lists(plaintexts(), max_size=6) | st.lists(plaintexts().filter(bool), max_size=6))
def test_a_batch_s_inner_packets_are_read_the_same(batch: list[bytes | None]) -> None:
    assert accel.CompiledCipher().inner_packets(batch) == ippacket.inner_packets(batch)


@given(
    st.lists(st.sampled_from([b"", b"E" + bytes(18), b"`" + bytes(38)]) | plaintexts())
    | st.lists(st.sampled_from([ipv4_packet("10.0.0.1", "10.0.0.2"), b"E" + bytes(19)]))
)
def test_a_batch_s_common_destination_is_read_the_same(batch: list[bytes | None]) -> None:
    packets = [packet or b"" for packet in batch]
    compiled = accel.CompiledCipher().common_destination(packets)
    assert compiled == ippacket.common_destination(packets)


# -- segmentation ------------------------------------------------------------------------------


@st.composite
def super_packets(draw: st.DrawFn, min_segments: int = 0) -> tuple[bytes, VnetHdr]:
    """A TSO or USO super-packet as the TUN hands it over, with random header fields (IPv4 ID,
    TCP sequence number near its wrap, flags, options) and payload; its lengths and partial
    checksum are not looked at."""
    ipv4, tcp = draw(st.booleans()), draw(st.booleans())
    ip = bytearray(draw(st.binary(min_size=20 if ipv4 else 40, max_size=20 if ipv4 else 40)))
    ip[0] = 0x45 if ipv4 else 0x60 | ip[0] & 0x0F
    if tcp:
        options = draw(st.integers(0, 10)) * 4
        l4 = bytearray(draw(st.binary(min_size=20 + options, max_size=20 + options)))
        l4[12] = (20 + options) // 4 << 4
        l4[4:8] = draw(st.integers(0xFFFF0000, 0xFFFFFFFF)).to_bytes(4, "big")
    else:
        l4 = bytearray(draw(st.binary(min_size=8, max_size=8)))
    size = draw(st.integers(1, 1500))
    length = draw(st.integers(min_segments * size, 6 * size))
    payload = random.Random(draw(st.integers())).randbytes(length)
    gso = (GSO_TCPV4 if ipv4 else GSO_TCPV6) if tcp else GSO_UDP_L4
    hdr = VnetHdr(F_NEEDS_CSUM, gso, len(ip) + len(l4), size, len(ip), 16 if tcp else 6)
    return bytes(ip + l4 + payload), hdr


@settings(max_examples=300)
@given(super_packets())
def test_a_super_packet_is_cut_into_the_same_segments(case: tuple[bytes, VnetHdr]) -> None:
    packet, hdr = case
    # The compiled split whether or not WGPY_PURE keeps it out of the data path.
    with patch.object(segment_module, "compiled_split", accel._accel.split):
        assert segment(packet, hdr) == segment(packet, hdr, pure=True)


@given(super_packets(min_segments=2), st.data())
def test_a_run_to_coalesce_is_merged_the_same(
    case: tuple[bytes, VnetHdr], data: st.DataObject
) -> None:
    """A super-packet's segments, some with a flipped bit (merged unchecked all the same), as a
    run to merge on receive: the same buffer from the compiled merge as from the reference."""
    packet, hdr = case
    segments = segment(packet, hdr, pure=True)
    for index in data.draw(st.sets(st.sampled_from(range(len(segments))))):
        damaged = bytearray(segments[index])
        damaged[data.draw(st.integers(hdr.csum_start, len(damaged) - 1))] ^= 0x10
        segments[index] = bytes(damaged)
    run = _Run(segments[0], hdr.csum_start, hdr.hdr_len, hdr.gso_type != GSO_UDP_L4)
    run.packets = segments
    with patch.object(coalesce_module, "compiled_merge", accel._accel.merge):
        compiled = run.build()
    with patch.object(coalesce_module, "compiled_merge", None):
        assert compiled == run.build()


@settings(max_examples=300)
@given(st.lists(super_packets(min_segments=1), min_size=1, max_size=3), st.booleans(), st.data())
def test_segments_coalesce_into_the_same_super_packets(
    cases: list[tuple[bytes, VnetHdr]], udp: bool, data: st.DataObject
) -> None:
    """The segments of a few super-packets, some with a header byte changed, some swapped with
    their neighbour, coalesced with runs followed on in C and with the reference, `_Run.follows`
    and `append` one packet at a time: the same buffers for the TUN."""
    packets = [packet for case in cases for packet in segment(*case, pure=True)]
    for index in data.draw(st.sets(st.sampled_from(range(len(packets))))):
        changed = bytearray(packets[index])
        at = data.draw(st.integers(0, min(len(changed), 80) - 1))
        changed[at] ^= data.draw(st.sampled_from([0x01, 0x08, 0x10, 0x80]))
        packets[index] = bytes(changed)
    for index in data.draw(st.sets(st.integers(1, len(packets)), max_size=3)):
        packets[index - 1 : index + 1] = packets[index - 1 : index + 1][::-1]
    with patch.object(coalesce_module, "compiled_follow_on", accel._accel.follow_on):
        compiled = coalesce_module.coalesce(packets, udp=udp)
    with patch.object(coalesce_module, "compiled_follow_on", None):
        assert compiled == coalesce_module.coalesce(packets, udp=udp)
