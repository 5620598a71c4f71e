"""Fuzzing (issue 8): the fuzzers' pieces hold in process, where no root is needed. The short run
of benchmarks/hardening/fuzz.py, in network namespaces, is tests/netns/test_hardening_fuzz.py.
"""

from __future__ import annotations

import random

from fakes import Link
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.hardening.fuzz_config import fuzz_config_files
from benchmarks.hardening.fuzz_datagrams import TRANSPORT_TYPE, Corpus
from benchmarks.hardening.fuzz_uapi import fuzz_in_process
from wgpy.core.device import SendDatagrams, WriteTun
from wgpy.core.ippacket import ipv4_packet

ATTACKER = ("198.18.0.66", 40000)


# The device, in process ---------------------------------------------------------------------


def established_link() -> tuple[Link, list[bytes]]:
    """Two devices with a session, and transport data that went from a to b on it."""
    link = Link()
    sent_to_b = []
    for number in range(8):
        mark = link.mark()
        link.send("a", ipv4_packet("10.0.0.1", "10.0.0.2", bytes([number]) * 40))
        sent_to_b += [data for name, _, data in link.sent[mark:] if name == "a"]
    return link, [data for data in sent_to_b if data[:4] == TRANSPORT_TYPE]


def test_every_kind_of_generated_garbage_is_dropped_and_counted_once() -> None:
    link, captured = established_link()
    device = link.b.device
    corpus = Corpus(random.Random(1), device.static_public or b"")
    garbage = corpus.blind(3000) + corpus.informed(600, captured[0][4:8], captured)
    before = sum(device.drops.values())

    actions = []
    for datagram in garbage:
        actions += device.handle_datagram(datagram, ATTACKER, link.now, link.wall)

    assert sum(device.drops.values()) - before == len(garbage)
    assert not any(isinstance(action, WriteTun) for action in actions)
    assert all(action.endpoint == ATTACKER for action in actions)  # cookie replies, if any
    assert all(isinstance(action, SendDatagrams) for action in actions)


def test_garbage_in_one_receive_batch_is_counted_as_it_is_one_by_one() -> None:
    link, captured = established_link()
    device = link.b.device
    corpus = Corpus(random.Random(2), device.static_public or b"")
    garbage = corpus.informed(300, captured[0][4:8], captured) + corpus.blind(300)
    before = sum(device.drops.values())

    device.handle_datagrams(garbage, ATTACKER, link.now, link.wall)

    assert sum(device.drops.values()) - before == len(garbage)


@settings(max_examples=300)
@given(datagram=st.binary(max_size=300))
def test_any_bytes_at_the_port_are_one_counted_drop_and_nothing_else(datagram: bytes) -> None:
    link, _ = established_link()
    device = link.b.device
    before = sum(device.drops.values())

    actions = device.handle_datagram(datagram, ATTACKER, link.now, link.wall)

    assert sum(device.drops.values()) - before == 1
    assert actions == []


# The configuration protocol and files, in process ---------------------------------------------


def test_mutated_configuration_requests_get_errnos_and_change_nothing_when_rejected() -> None:
    result = fuzz_in_process(2000, seed=1)

    assert result.crashes == []
    assert result.rejected_sets > 0
    assert result.unchanged_after_rejected_set == result.rejected_sets
    assert result.replies >= result.rejected > 0


def test_mutated_configuration_files_are_read_or_rejected_naming_file_and_line() -> None:
    result = fuzz_config_files(3000, seed=1)

    assert result.crashes == []
    assert result.rejected_with_line == result.rejected > 0
    assert result.round_trips == result.accepted > 0
