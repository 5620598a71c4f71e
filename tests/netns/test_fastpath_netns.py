"""The fast data path against the real kernel, in network namespaces: the TUN's offloads, what
the kernel makes of the super-packets we write, and whole transfers through wgpy with the
offloads on and with them off (the plain path).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

from wgpy.client import socket_path
from wgpy.io import accel
from wgpy.io.interface import Interface
from wgpy.io.tun import IFF_VNET_HDR, Tun, open_tun
from wgpy.io.tun_offload import enable_offloads, flags
from wgpy.io.udp_batches import SOL_UDP, UDP_SEGMENT
from wgpy.io.vnet.coalesce import coalesce
from wgpy.io.vnet.segment import (
    GSO_UDP_L4,
    NO_OFFLOAD,
    VNET_HDR_LEN,
    VnetHdr,
    segment,
)
from wgpy.lab.netns import (
    WG_PORT,
    Namespace,
    ip_up,
    one_peer_config,
    start_wireguard_go,
    unique_ifname,
    veth_pair,
    wait_until,
    wg_genkey,
    wg_setconf,
)

# Each test here needs a namespace, so `-m netns` selects it as it selects the rest of tests/netns.
pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
LOCAL, REMOTE = ("192.0.2.1", "fd00:2::1"), ("192.0.2.2", "fd00:2::2")
# wgpy with the offloads refused: the plain path, as on a kernel without them.
PLAIN_WGPY = (
    "import logging, sys\n"
    "from wgpy.io.interface import Interface\n"
    "from wgpy.io.tun import open_tun\n"
    "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
    "interface = Interface(open_tun(sys.argv[1]), offloads=False)\n"
    "try:\n    interface.run()\nfinally:\n    interface.close()\n"
)


@pytest.fixture
def inside(netns: Namespace) -> Iterator[Namespace]:
    with netns.entered():
        yield netns


@pytest.fixture
def offload_tun(inside: Namespace) -> Iterator[Tun]:
    """A TUN with its offloads on, addressed LOCAL, with REMOTE beyond it."""
    tun, offloads = enable_offloads(open_tun("wgfast0"))
    assert offloads is not None
    try:
        ip_up(inside, "wgfast0", f"{LOCAL[0]}/24", f"{LOCAL[1]}/64")
        yield tun
    finally:
        tun.close()


def read_packet(tun: Tun, wanted: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
    """The first buffer (virtio-net header and packet) from `tun` that `wanted` accepts."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([tun], [], [], left)[0]:
            buffer = tun.read()
            if wanted(buffer[VNET_HDR_LEN:]):
                return buffer
    raise AssertionError(f"no wanted packet from {tun.name} within {timeout} s")


# -- the TUN's offloads ------------------------------------------------------------------------


def test_a_plain_tun_is_reattached_with_the_virtio_net_header_and_keeps_its_settings(
    inside: Namespace,
) -> None:
    plain = open_tun("wgfast0", mtu=1380)
    ip_up(inside, "wgfast0", f"{LOCAL[0]}/24")

    tun, offloads = enable_offloads(plain)

    with tun:
        assert offloads is not None
        assert flags(tun) & IFF_VNET_HDR
        assert plain.fileno() == -1  # the old file is closed
        assert tun.name == "wgfast0" and tun.mtu() == 1380
        link = inside.run("ip", "-d", "address", "show", "wgfast0").stdout
        assert f"inet {LOCAL[0]}/24" in link
    # Not left persistent: the interface goes with its last file, as before.
    assert inside.run("ip", "link", "show", "wgfast0", check=False).returncode != 0


def test_a_udp_super_packet_from_the_kernel_is_cut_into_the_datagrams_sent(
    offload_tun: Tun,
) -> None:
    chunks = [os.urandom(500) for _ in range(6)] + [os.urandom(123)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind((LOCAL[0], 4000))
        control = [(SOL_UDP, UDP_SEGMENT, (500).to_bytes(2, sys.byteorder))]
        sender.sendmsg([b"".join(chunks)], control, 0, (REMOTE[0], 5000))

        buffer = read_packet(offload_tun, lambda p: p[0] >> 4 == 4 and UDP in IP(p))

    hdr = VnetHdr.parse(buffer)
    assert hdr.gso_type == GSO_UDP_L4 and hdr.gso_size == 500
    datagrams = segment(buffer[VNET_HDR_LEN:], hdr)
    assert [bytes(IP(d)[UDP].payload) for d in datagrams] == chunks
    for datagram in datagrams:  # every checksum as the kernel would have computed it
        parsed = IP(datagram)
        del parsed.chksum, parsed[UDP].chksum
        assert bytes(parsed) == datagram


def test_coalesced_udp_datagrams_written_to_the_tun_arrive_one_by_one(offload_tun: Tun) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind((LOCAL[0], 5000))
        receiver.settimeout(5)
        payloads = [os.urandom(300) for _ in range(5)] + [os.urandom(77)]
        datagrams = [
            bytes(IP(src=REMOTE[0], dst=LOCAL[0], id=n) / UDP(sport=4000, dport=5000) / Raw(p))
            for n, p in enumerate(payloads)
        ]
        (buffer,) = coalesce(datagrams, udp=True)
        offload_tun.write(buffer)

        assert [receiver.recv(2048) for _ in payloads] == payloads


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_the_kernel_takes_a_coalesced_tcp_super_packet_as_the_segments_it_stands_for(
    offload_tun: Tun, family: socket.AddressFamily
) -> None:
    index = 0 if family == socket.AF_INET else 1
    local, remote = LOCAL[index], REMOTE[index]
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((local, 5001))
        listener.listen()
        listener.settimeout(5)
        layer: Callable[[], Packet] = (
            (lambda: IP(src=remote, dst=local))
            if family == socket.AF_INET
            else (lambda: IPv6(src=remote, dst=local))
        )
        # A handshake by hand, from a peer beyond the TUN.
        syn = layer() / TCP(sport=40000, dport=5001, seq=1000, flags="S", options=[("MSS", 1200)])
        offload_tun.write(NO_OFFLOAD + bytes(syn))
        answer = read_packet(
            offload_tun, lambda p: TCP in _parse(p) and _parse(p)[TCP].flags == "SA"
        )
        server_seq = _parse(answer[VNET_HDR_LEN:])[TCP].seq
        ack = layer() / TCP(sport=40000, dport=5001, seq=1001, ack=server_seq + 1, flags="A")
        offload_tun.write(NO_OFFLOAD + bytes(ack))
        connection, _ = listener.accept()

        payload = os.urandom(1200 * 8 + 345)
        segments = [
            bytes(layer() / TCP(sport=40000, dport=5001, seq=1001 + offset, ack=server_seq + 1,
                                flags="A", window=65535) / Raw(payload[offset : offset + 1200]))
            for offset in range(0, len(payload), 1200)
        ]  # fmt: skip
        (buffer,) = coalesce(segments)
        assert VnetHdr.parse(buffer).gso_size == 1200
        offload_tun.write(buffer)

        with connection:
            connection.settimeout(5)
            received = b""
            while len(received) < len(payload):
                received += connection.recv(65536)
        assert received == payload


def _parse(packet: bytes) -> Packet:
    return IP(packet) if packet[0] >> 4 == 4 else IPv6(packet)


def _is_syn_ack(packet: bytes) -> bool:
    parsed = _parse(packet)
    return TCP in parsed and parsed[TCP].flags == "SA"


# -- transfers through wgpy --------------------------------------------------------------------

SEND = (
    "import hashlib, random, socket, sys\n"
    "host, size = sys.argv[1], int(sys.argv[2])\n"
    "data = random.Random(size).randbytes(size)\n"
    "family = socket.AF_INET6 if ':' in host else socket.AF_INET\n"
    "with socket.create_connection((host, 5002), timeout=30) as s:\n"
    "    s.sendall(data)\n"
    "print(hashlib.sha256(data).hexdigest())\n"
)
RECEIVE = (
    "import hashlib, socket, sys\n"
    "family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
    "listener = socket.socket(family)\n"
    "listener.bind((sys.argv[1], 5002))\n"
    "listener.listen()\n"
    "print('listening', flush=True)\n"
    "connection, _ = listener.accept()\n"
    "digest = hashlib.sha256()\n"
    "while chunk := connection.recv(1 << 16):\n"
    "    digest.update(chunk)\n"
    "print(digest.hexdigest())\n"
)


def start_wgpy(
    ns: Namespace, ifname: str, *, plain: bool, pure: bool = False, log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """wgpy in the foreground on `ifname` (on the pure-Python data path if `pure`), logging
    verbosely to `log`."""
    code = PLAIN_WGPY if plain else "from wgpy.cli.wgpy import main; raise SystemExit(main())"
    argv = [sys.executable, "-c", code] + ([] if plain else ["-f"]) + [ifname]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "verbose"}
    if pure:
        env[accel.PURE_VARIABLE] = "1"
    output = log if log is not None else subprocess.DEVNULL
    process = ns.popen(*argv, env=env, stdout=subprocess.DEVNULL, stderr=output)
    if not wait_until(lambda: socket_path(ifname).exists(), 10):
        raise RuntimeError(f"wgpy did not start on {ifname}")
    return process


@contextmanager
def tunnel(kinds: tuple[str, str]) -> Iterator[tuple[Namespace, Namespace, IO[bytes]]]:
    """Two peers of the named kinds on a veth pair, inner addresses LOCAL and REMOTE; yields the
    namespaces and the file the wgpy peers log to."""
    with veth_pair() as (a, b), tempfile.TemporaryFile() as log:
        keys = wg_genkey(), wg_genkey()
        for index, (ns, kind) in enumerate(zip((a, b), kinds, strict=True)):
            other = (b, a)[index]
            ifname = unique_ifname("wgf")
            if kind == "wireguard-go":
                start_wireguard_go(ns, ifname)
            else:
                start_wgpy(
                    ns, ifname, plain=kind == "wgpy-plain", pure=kind == "wgpy-pure", log=log
                )
            remote = (REMOTE, LOCAL)[index]
            allowed, endpoint = f"{remote[0]}/32, {remote[1]}/128", f"{other.ipv4}:{WG_PORT}"
            config = one_peer_config(keys[index].private, keys[1 - index].public, allowed, endpoint)
            wg_setconf(ns, ifname, config)
            ip_up(ns, ifname, f"{(LOCAL, REMOTE)[index][0]}/24", f"{(LOCAL, REMOTE)[index][1]}/64")
        yield a, b, log


def transfer(source: Namespace, target: Namespace, address: str, size: int) -> tuple[str, str]:
    """`size` bytes over TCP from `source` to `address` in `target`: (sent, received) digests."""
    receiver = target.popen(sys.executable, "-c", RECEIVE, address, stdout=subprocess.PIPE)
    assert receiver.stdout is not None
    with receiver.stdout as output:
        assert output.readline() == b"listening\n"
        sent = source.run(sys.executable, "-c", SEND, address, str(size)).stdout.strip()
        received = output.readline().decode().strip()
    receiver.wait(30)
    return sent, received


@pytest.mark.netns("wg", "wireguard-go")
@pytest.mark.parametrize(
    "kinds",
    [
        ("wgpy", "wgpy"),
        ("wgpy", "wireguard-go"),
        ("wgpy-plain", "wgpy"),
        ("wgpy-pure", "wgpy"),
        ("wgpy-pure", "wireguard-go"),
    ],
    ids=["fast-fast", "fast-wireguard-go", "plain-fast", "pure-fast", "pure-wireguard-go"],
)
def test_transfers_arrive_intact_both_ways_on_both_families(kinds: tuple[str, str]) -> None:
    with tunnel(kinds) as (a, b, log):
        for family in (0, 1):
            sent, received = transfer(a, b, REMOTE[family], 6_000_000)
            assert sent == received
            sent, received = transfer(b, a, LOCAL[family], 6_000_000)
            assert sent == received
        log.seek(0)
        text = log.read().decode()
    assert "data path: TUN with TSO" in text
    # The path each daemon's crypto takes, as `wgpy --version` names it.
    if kinds[0] == "wgpy-pure":
        assert f"crypto pure Python ({accel.PURE_VARIABLE} is set)" in text
    if kinds[1] == "wgpy":
        assert f"crypto {accel.path()}" in text
    if kinds[0] == "wgpy-plain":
        assert "data path: TUN one packet per read and write" in text


def test_a_deleted_interface_ends_the_daemon_while_its_data_path_waits(
    netns: Namespace,
) -> None:
    ifname = unique_ifname("wgf")
    process = start_wgpy(netns, ifname, plain=False)
    netns.run("ip", "link", "delete", ifname)
    assert process.wait(5) == 0


def test_sigterm_ends_the_daemon_while_its_data_path_waits(netns: Namespace) -> None:
    ifname = unique_ifname("wgf")
    process = start_wgpy(netns, ifname, plain=False)
    process.terminate()
    assert process.wait(5) == 0
    assert not socket_path(ifname).exists()


# wgpy whose configuration socket appears a second before Interface.run() takes over signals.
SLOW_TO_RUN_WGPY = (
    "import time\n"
    "from wgpy.io import uapi_server\n"
    "listen = uapi_server.listen\n"
    "def slow_listen(name):\n"
    "    server = listen(name)\n"
    "    time.sleep(1.0)\n"
    "    return server\n"
    "uapi_server.listen = slow_listen\n"
    "from wgpy.cli.wgpy import main\n"
    "raise SystemExit(main())\n"
)


def test_sigterm_while_the_daemon_starts_waits_for_it_to_end_cleanly(netns: Namespace) -> None:
    ifname = unique_ifname("wgf")
    argv = [sys.executable, "-c", SLOW_TO_RUN_WGPY, "-f", ifname]
    process = netns.popen(*argv, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert wait_until(lambda: socket_path(ifname).exists(), 10)
    process.terminate()  # before the interface runs: the signal is held until it does
    assert process.wait(5) == 0
    assert not socket_path(ifname).exists()


def test_a_tun_write_after_the_interface_is_gone_reports_it(inside: Namespace) -> None:
    tun, _ = enable_offloads(open_tun("wgfast0"))
    inside.run("ip", "link", "delete", "wgfast0")
    with tun, pytest.raises(OSError) as raised:
        tun.write(NO_OFFLOAD + bytes(IP(src=REMOTE[0], dst=LOCAL[0]) / UDP()))
    assert raised.value.errno in (errno.EBADFD, errno.EIO)


@pytest.mark.netns("wg", "ping")
def test_an_interface_set_down_loses_packets_but_not_the_daemon_and_works_when_up_again() -> None:
    with tunnel(("wgpy", "wgpy")) as (a, b, _):
        assert a.run("ping", "-c", "1", "-W", "2", REMOTE[0], check=False).returncode == 0
        ifname = _tunnel_ifname(b)
        b.run("ip", "link", "set", ifname, "down")
        # Packets for b now meet a TUN that refuses writes (EIO) until it is up again.
        a.run("ping", "-c", "3", "-i", "0.2", "-W", "1", REMOTE[0], check=False)
        b.run("ip", "link", "set", ifname, "up")
        b.run("ip", "address", "add", f"{REMOTE[0]}/24", "dev", ifname, check=False)
        assert wait_until(
            lambda: a.run("ping", "-c", "1", "-W", "1", REMOTE[0], check=False).returncode == 0,
            10,
        )


def _tunnel_ifname(ns: Namespace) -> str:
    links = ns.run("ip", "-o", "link", "show").stdout.splitlines()
    return next(line.split(": ")[1] for line in links if ": wgf" in line)


def test_an_interface_with_offloads_caps_its_super_packets_at_one_udp_send(
    inside: Namespace,
) -> None:
    """A 1420-byte MTU's 64 KiB TCP super-packet would be 47 segments, sealed into datagrams
    that take two UDP_SEGMENT sends (45 and 2): capped, each goes in one."""
    interface = Interface(open_tun(unique_ifname("wgf")))
    try:
        link = inside.run("ip", "-d", "link", "show", interface.name).stdout
    finally:
        interface.close()
    assert interface.device.mtu == 1420
    assert "gso_max_segs 45 " in link


# -- the main loop -----------------------------------------------------------------------------


def test_a_failing_timer_step_costs_its_actions_never_the_interface(
    inside: Namespace, caplog: pytest.LogCaptureFixture
) -> None:
    # Its configuration socket lives in /var/run/wireguard, which every namespace shares: a name
    # of its own, so that a parallel run's socket is never mistaken for this one.
    interface = Interface(open_tun(unique_ifname("wgf")))
    steps: list[float] = []

    def failing_timers(now: float, wall: float) -> list[object]:
        steps.append(now)
        raise RuntimeError("a bug in a timer")

    interface.device.handle_timer = failing_timers  # type: ignore[method-assign]
    stopper = threading.Timer(2.5, interface.stop)
    stopper.start()
    try:
        interface.run()  # in the main thread: it installs signal handlers
    finally:
        stopper.cancel()
        interface.close()

    assert len(steps) >= 2  # the loop went on after the first failure
    assert "timer actions dropped" in caplog.text
