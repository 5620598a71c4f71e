"""Capture: the device's observer hook, the capture stream's records, the key log, the
`capture=1` request, and the daemon's capture hub (bounded queues, secrets only on request)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fakes import Link

from wgpy.capture import (
    RECORD_HEADER,
    DroppedRecord,
    Kind,
    PacketRecord,
    RecordReader,
    SecretsRecord,
    encode_dropped,
    encode_packet,
    encode_secrets,
    keylog_lines,
)
from wgpy.core.device import Device, datagrams_of, packets_of
from wgpy.core.ippacket import ipv4_packet
from wgpy.core.keys import public_key, to_base64
from wgpy.core.messages import Initiation, Response
from wgpy.core.observer import Direction, HandshakeSecrets
from wgpy.errors import UapiError
from wgpy.io import capture_server
from wgpy.io.capture_server import CaptureHub
from wgpy.io.uapi_server import Connection
from wgpy.lab.netns import wait_until
from wgpy.uapi import CaptureRequest, Request, RequestReader, format_capture, parse_capture

A_TO_B = ipv4_packet("10.0.0.1", "10.0.0.2", b"ping")
B_TO_A = ipv4_packet("10.0.0.2", "10.0.0.1", b"pong")


class Recorder:
    """An observer that keeps what it is shown."""

    def __init__(self) -> None:
        self.packets: list[tuple[bytes, Direction, bytes, float]] = []
        self.secrets: list[HandshakeSecrets] = []

    def inner_packet(self, peer: bytes, direction: Direction, packet: bytes, wall: float) -> None:
        self.packets.append((peer, direction, packet, wall))

    def handshake_secrets(self, secrets: HandshakeSecrets, wall: float) -> None:
        self.secrets.append(secrets)


def observed_link(psk: bytes | None = None) -> tuple[Link, Recorder, Recorder]:
    link = Link(psk=psk)
    recorders = Recorder(), Recorder()
    link.a.device.observer, link.b.device.observer = recorders
    return link, *recorders


# The hook in Device -------------------------------------------------------------------------------


def test_the_observer_sees_each_inner_packet_sent_and_received_with_its_peer_and_direction() -> (
    None
):
    link, at_a, at_b = observed_link()
    link.send("a", A_TO_B)
    link.send("b", B_TO_A)

    a_key, b_key = link.peer_of_a.public_key, link.peer_of_b.public_key
    assert at_a.packets == [
        (b_key, Direction.OUTBOUND, A_TO_B, link.wall),
        (b_key, Direction.INBOUND, B_TO_A, link.wall),
    ]
    assert at_b.packets == [
        (a_key, Direction.INBOUND, A_TO_B, link.wall),
        (a_key, Direction.OUTBOUND, B_TO_A, link.wall),
    ]


def test_keepalives_and_packets_never_sent_or_rejected_on_arrival_are_not_shown() -> None:
    link, at_a, at_b = observed_link()
    link.send("a", A_TO_B)
    link.advance(30)  # b's passive keepalive, then quiet
    link.send("a", ipv4_packet("10.0.0.1", "10.0.0.9"))  # no route: never sent
    spoofed = ipv4_packet("10.0.0.9", "10.0.0.2")  # sent, but not from an address b allows a
    link.send("a", spoofed)

    assert [p[2] for p in at_a.packets] == [A_TO_B, spoofed]
    assert [p[2] for p in at_b.packets] == [A_TO_B]


def test_the_batch_paths_show_the_observer_every_packet_in_order() -> None:
    link, at_a, at_b = observed_link()
    link.send("a", A_TO_B)  # a session, through the one-at-a-time path
    at_a.packets.clear()
    at_b.packets.clear()
    batch = [ipv4_packet("10.0.0.1", "10.0.0.2", bytes([n]) * n) for n in range(1, 6)]

    actions = link.a.device.handle_tun_packets(batch, link.now, link.wall)
    datagrams = datagrams_of(actions)
    written = link.b.device.handle_datagrams(datagrams, link.a.endpoint, link.now, link.wall)

    assert packets_of(written) == batch
    assert [(p[1], p[2]) for p in at_a.packets] == [(Direction.OUTBOUND, p) for p in batch]
    assert [(p[1], p[2]) for p in at_b.packets] == [(Direction.INBOUND, p) for p in batch]


@pytest.mark.parametrize("psk", [None, bytes(range(32))], ids=["no-psk", "psk"])
def test_each_handshake_shows_the_secrets_of_the_ephemeral_key_it_sent(psk: bytes | None) -> None:
    link, at_a, at_b = observed_link(psk)
    link.send("a", A_TO_B)

    initiation = Initiation.parse(next(d for n, _, d in link.sent if n == "a" and d[0] == 1))
    response = Response.parse(next(d for n, _, d in link.sent if n == "b" and d[0] == 2))
    [initiator], [responder] = at_a.secrets, at_b.secrets
    assert public_key(initiator.local_ephemeral_private) == initiation.ephemeral
    assert public_key(responder.local_ephemeral_private) == response.ephemeral
    assert initiator.local_static_private == link.a.device.private_key
    assert responder.local_static_private == link.b.device.private_key
    assert initiator.remote_static_public == link.peer_of_b.public_key
    assert responder.remote_static_public == link.peer_of_a.public_key
    assert initiator.preshared_key == responder.preshared_key == psk


def test_an_observer_changes_nothing_the_devices_send() -> None:
    def wire_bytes(observed: bool) -> list[bytes]:
        link = observed_link()[0] if observed else Link()
        link.send("a", A_TO_B)
        link.send("b", B_TO_A)
        link.advance(200)  # keepalives and a rekey
        link.send("a", A_TO_B)
        return [data for _, _, data in link.sent]

    assert wire_bytes(observed=True) == wire_bytes(observed=False)


def test_a_device_has_no_observer_until_one_is_set() -> None:
    assert Device(Link().a.device.rng).observer is None


# The stream's records -----------------------------------------------------------------------------


SECRETS = HandshakeSecrets(bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32, bytes([4]) * 32)


def test_records_survive_the_stream_cut_at_any_byte() -> None:
    peer = bytes(range(32))
    stream = (
        encode_packet(peer, Direction.OUTBOUND, A_TO_B, 1700000000.25)
        + encode_secrets(SECRETS, 1700000001.5)
        + encode_secrets(HandshakeSecrets(*([bytes(32)] * 3)), 1700000001.5)
        + encode_dropped(7, 1700000002.0)
        + encode_packet(peer, Direction.INBOUND, B_TO_A, 1700000003.0)
    )
    expected = [
        PacketRecord(1700000000.25, peer, Direction.OUTBOUND, A_TO_B),
        SecretsRecord(1700000001.5, SECRETS),
        SecretsRecord(1700000001.5, HandshakeSecrets(*([bytes(32)] * 3), preshared_key=None)),
        DroppedRecord(1700000002.0, 7),
        PacketRecord(1700000003.0, peer, Direction.INBOUND, B_TO_A),
    ]
    for cut in range(len(stream) + 1):
        reader = RecordReader()
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == expected
        assert reader.pending == 0


@pytest.mark.parametrize(
    "record",
    [
        RECORD_HEADER.pack(9, 0, 0, 0, 0),
        RECORD_HEADER.pack(Kind.PACKET, 3, 0, 32, 0) + bytes(32),
        RECORD_HEADER.pack(Kind.PACKET, Direction.INBOUND, 0, 31, 0) + bytes(31),
        RECORD_HEADER.pack(Kind.SECRETS, 0, 0, 127, 0) + bytes(127),
        RECORD_HEADER.pack(Kind.DROPPED, 0, 0, 4, 0) + bytes(4),
        RECORD_HEADER.pack(Kind.PACKET, Direction.INBOUND, 0, 1 << 20, 0),
    ],
    ids=["unknown-kind", "bad-direction", "no-peer", "short-secrets", "short-count", "oversized"],
)
def test_a_malformed_record_is_a_protocol_error(record: bytes) -> None:
    with pytest.raises(UapiError) as raised:
        RecordReader().feed(record)
    assert raised.value.errno == errno.EPROTO


def test_the_secrets_never_show_in_a_repr() -> None:
    assert to_base64(SECRETS.local_static_private) not in repr(SECRETS)
    assert "0101" not in repr(SECRETS) and "0303" not in repr(SECRETS)


# The key log --------------------------------------------------------------------------------------


def test_the_key_log_has_the_lines_wiresharks_dissector_reads_psk_after_its_ephemeral() -> None:
    # Names and "NAME = base64" as wireguard-tools contrib/extract-handshakes prints them.
    assert keylog_lines(SECRETS).splitlines() == [
        f"LOCAL_STATIC_PRIVATE_KEY = {to_base64(bytes([1]) * 32)}",
        f"REMOTE_STATIC_PUBLIC_KEY = {to_base64(bytes([2]) * 32)}",
        f"LOCAL_EPHEMERAL_PRIVATE_KEY = {to_base64(bytes([3]) * 32)}",
        f"PRESHARED_KEY = {to_base64(bytes([4]) * 32)}",
    ]


def test_the_key_log_has_no_preshared_key_line_without_a_preshared_key() -> None:
    lines = keylog_lines(HandshakeSecrets(*([bytes([5]) * 32] * 3))).splitlines()
    assert [line.split(" = ")[0] for line in lines] == [
        "LOCAL_STATIC_PRIVATE_KEY",
        "REMOTE_STATIC_PUBLIC_KEY",
        "LOCAL_EPHEMERAL_PRIVATE_KEY",
    ]


# The request --------------------------------------------------------------------------------------


@pytest.mark.parametrize("keylog", [False, True])
def test_a_capture_request_round_trips(keylog: bool) -> None:
    text = format_capture(CaptureRequest(keylog)).encode()
    assert list(RequestReader().feed(text + b"get=1\n\n")) == [
        Request("capture", capture=CaptureRequest(keylog)),
        Request("get"),
    ]


@pytest.mark.parametrize("line", ["keylog=yes", "pcap=true"])
def test_a_capture_request_with_an_unknown_setting_is_refused_with_einval(line: str) -> None:
    with pytest.raises(UapiError) as raised:
        parse_capture([line])
    assert raised.value.errno == errno.EINVAL


def test_a_capture_request_ends_the_exchange_and_is_left_for_the_stream() -> None:
    server, client = socket.socketpair()
    with server, client:
        connection = Connection(server, lambda request: [f"{request.operation}\n"])
        reply = b"".join(connection.feed(b"get=1\n\ncapture=1\nkeylog=true\n\nget=1\n\n"))
    assert (reply, connection.closing) == (b"get\n", True)
    assert connection.capture == Request("capture", capture=CaptureRequest(keylog=True))


# The hub ------------------------------------------------------------------------------------------


class Client:
    """The client end of a capture connection, reading the stream as `wgpy capture` does."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = RecordReader()
        self.status = b""

    def read(self, until: int, timeout: float = 10.0) -> list[object]:
        """Records until `until` of them came, the stream ended, or `timeout` passed."""
        records: list[object] = []
        deadline = time.monotonic() + timeout
        while len(records) < until:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            if len(self.status) < len(STATUS_OK):
                taken = len(STATUS_OK) - len(self.status)
                self.status, data = self.status + data[:taken], data[taken:]
            records += self.reader.feed(data)
        return records


STATUS_OK = b"errno=0\n\n"


@dataclass
class Hub:
    """A capture hub on a device, with clients on socket pairs."""

    device: Device = field(default_factory=lambda: Link().a.device)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clients: list[Client] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hub = CaptureHub("wgtest", self.device, self.lock)

    def attach(self, *, keylog: bool = False) -> Client:
        server, client = socket.socketpair()
        try:
            self.hub.attach(server, keylog=keylog)
        except UapiError:
            server.close()
            client.close()
            raise
        self.clients.append(Client(client))
        return self.clients[-1]


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub()
    yield hub
    hub.hub.close()
    for client in hub.clients:
        client.sock.close()


def test_the_hub_is_the_observer_while_a_client_captures_and_only_then(hub: Hub) -> None:
    client = hub.attach()
    assert hub.device.observer is hub.hub
    client.sock.close()
    assert wait_until(lambda: hub.device.observer is None, timeout=10.0)


def test_every_client_gets_the_packets_and_only_a_keylog_client_the_secrets(hub: Hub) -> None:
    plain, keylog = hub.attach(), hub.attach(keylog=True)
    with hub.lock:
        hub.hub.inner_packet(bytes(32), Direction.OUTBOUND, A_TO_B, 5.0)
        hub.hub.handshake_secrets(SECRETS, 6.0)
        hub.hub.inner_packet(bytes(32), Direction.INBOUND, B_TO_A, 7.0)
    packets = [
        PacketRecord(5.0, bytes(32), Direction.OUTBOUND, A_TO_B),
        PacketRecord(7.0, bytes(32), Direction.INBOUND, B_TO_A),
    ]
    assert plain.read(until=2) == packets
    assert keylog.read(until=3) == [packets[0], SecretsRecord(6.0, SECRETS), packets[1]]
    assert plain.status == keylog.status == STATUS_OK


def test_a_client_that_reads_nothing_costs_dropped_records_not_a_blocked_data_path(
    hub: Hub,
) -> None:
    client = hub.attach()
    offered = capture_server.QUEUE_RECORDS * 4
    started = time.monotonic()
    with hub.lock:
        for n in range(offered):
            hub.hub.inner_packet(bytes(32), Direction.OUTBOUND, A_TO_B, float(n))
    elapsed = time.monotonic() - started

    records = client.read(until=offered, timeout=3.0)
    packets = [r for r in records if isinstance(r, PacketRecord)]
    reported = max(r.total for r in records if isinstance(r, DroppedRecord))
    assert elapsed < 10.0  # never waited for the client (about 0.1 s; generous under load)
    assert reported > 0 and len(packets) + reported == offered


def test_closing_the_hub_ends_every_stream(hub: Hub) -> None:
    clients = [hub.attach(), hub.attach(keylog=True)]
    hub.hub.close()
    for client in clients:
        assert client.read(until=1) == []
        assert client.status == STATUS_OK
    assert hub.device.observer is None


def test_the_hub_refuses_a_client_past_its_limit_with_ebusy(hub: Hub) -> None:
    for _ in range(capture_server.MAX_CLIENTS):
        hub.attach()
    with pytest.raises(UapiError) as raised:
        hub.attach()
    assert raised.value.errno == errno.EBUSY
