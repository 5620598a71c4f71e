"""The pcapng writer: block layout by the format's rules, and tshark reading what it writes."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from pcapng_blocks import blocks

from wgpy import pcapng
from wgpy.core.ippacket import ipv4_packet, ipv6_packet

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="needs tshark (apt-get install tshark)")

PING = ipv4_packet("192.0.2.1", "192.0.2.2", b"odd-sized payload")  # not a multiple of 4
PONG = ipv6_packet("fd00::2", "fd00::1", b"pong")


def written(*packets: tuple[bytes, float, int, str]) -> bytes:
    stream = io.BytesIO()
    writer = pcapng.PcapngWriter(stream, interface="wg0", application="wgpy test")
    for packet, wall, direction, comment in packets:
        writer.write_packet(packet, wall, direction, comment)
    assert writer.packets == len(packets)
    return stream.getvalue()


def test_a_file_is_a_section_header_an_interface_and_one_enhanced_packet_block_each() -> None:
    data = written((PING, 1.0, pcapng.OUTBOUND, "a"), (PONG, 2.0, pcapng.INBOUND, ""))
    kinds = [kind for kind, _ in blocks(data)]
    assert kinds == [0x0A0D0D0A, 1, 6, 6]
    section, interface = blocks(data)[0][1], blocks(data)[1][1]
    assert struct.unpack_from("<IHHq", section) == (0x1A2B3C4D, 1, 0, -1)
    assert struct.unpack_from("<HHI", interface) == (pcapng.LINKTYPE_RAW, 0, 0)


def test_an_enhanced_packet_block_holds_the_packet_padded_and_its_microsecond_time() -> None:
    wall = 1_700_000_000.123456
    body = blocks(pcapng.enhanced_packet(PING, wall))[0][1]
    interface, high, low, captured, original = struct.unpack_from("<IIIII", body)
    assert (interface, captured, original) == (0, len(PING), len(PING))
    assert (high << 32 | low) == 1_700_000_000_123_456
    assert body[20 : 20 + len(PING)] == PING
    assert len(body) == 20 + len(PING) + (-len(PING) % 4)  # no options: no end-of-options


@needs_tshark
def test_tshark_reads_each_packet_with_its_time_direction_comment_and_addresses(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inner.pcapng"
    path.write_bytes(
        written(
            (PING, 1_700_000_000.25, pcapng.OUTBOUND, "peer AAAA="),
            (PONG, 1_700_000_001.5, pcapng.INBOUND, "peer BBBB="),
            (PING, 1_700_000_002.0, pcapng.DIRECTION_UNKNOWN, ""),
        )
    )
    fields = ["frame.time_epoch", "frame.packet_flags_direction", "frame.comment"]
    fields += ["ip.src", "ipv6.src", "frame.interface_name"]
    assert tshark_fields(path, fields) == [
        ["1700000000.250000000", "0x00000002", "peer AAAA=", "192.0.2.1", "", "wg0"],
        ["1700000001.500000000", "0x00000001", "peer BBBB=", "", "fd00::2", "wg0"],
        ["1700000002.000000000", "", "", "192.0.2.1", "", "wg0"],
    ]


@needs_tshark
def test_a_file_with_no_packet_yet_is_a_valid_empty_capture(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcapng"
    path.write_bytes(written())
    assert tshark_fields(path, ["frame.number"]) == []


def tshark_fields(path: Path, fields: list[str]) -> list[list[str]]:
    assert TSHARK is not None
    command = [TSHARK, "-r", str(path), "-T", "fields"]
    for name in fields:
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return [line.split("\t") for line in result.stdout.splitlines()]
