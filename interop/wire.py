"""The wire between wgpy and its peer: captures read with tshark's WireGuard dissector, and
packets crafted with scapy's WireGuard layers (floods of initiations, malformed and replayed
packets), sent from namespace W.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from scapy.contrib.wireguard import (
    Wireguard,
    WireguardCookieReply,
    WireguardInitiation,
    WireguardResponse,
    WireguardTransport,
)
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from interop._harness import Namespace, wait_until
from interop.errors import ScenarioFailure

# Message types (whitepaper section 5.4).
INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
KEEPALIVE_LENGTH = 32  # a transport message with nothing inside: header 16 + tag 16
MAC1_LABEL = b"mac1----"
STOP_TIMEOUT = 10.0
BLOCK_TIMEOUT = 1.5
SETTLE_TIME = 0.5


@dataclass(frozen=True)
class WireMessage:
    """One WireGuard message seen on the wire, as tshark dissected it."""

    time: float
    source: str  # "address:port"
    destination: str
    type: int
    length: int  # of the UDP payload
    mac2: bytes

    @property
    def is_keepalive(self) -> bool:
        return self.type == TRANSPORT and self.length == KEEPALIVE_LENGTH


class Capture:
    """tshark on an interface of namespace `ns`, decoding the given UDP ports as WireGuard."""

    def __init__(self, ns: Namespace, ifname: str, path: Path, ports: list[int]) -> None:
        self._ns = ns
        self._ifname = ifname
        self._path = path
        self._ports = ports
        self._process: subprocess.Popen[bytes] | None = None
        self._log = path.with_suffix(".log")

    def start(self, capture_filter: str = "udp") -> Capture:
        """Start capturing; return once tshark says it is capturing, and a moment more."""
        with open(self._log, "wb") as log:
            self._process = self._ns.popen(
                "tshark", "-q", "-i", self._ifname, "-f", capture_filter, "-w", str(self._path),
                stdout=log, stderr=log,
            )  # fmt: skip
        if not wait_until(lambda: b"Capturing on" in self._log.read_bytes(), 15.0, 0.05):
            self.stop()
            raise ScenarioFailure(f"tshark did not start: {self._log.read_text(errors='replace')}")
        # Once, packets of the next second went missing after "Capturing on" was printed.
        time.sleep(SETTLE_TIME)
        return self

    def stop(self) -> None:
        """End tshark as ^C does, so what it captured is flushed to the file."""
        if self._process is None:
            return
        # libpcap hands packets over a block at a time, a block at the latest once its timeout
        # passes; a block still open when capturing stops is lost.
        time.sleep(BLOCK_TIMEOUT)
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._ns.stop(self._process)
        self._ns.processes.remove(self._process)
        self._process = None

    def messages(self) -> list[WireMessage]:
        """Every WireGuard message captured so far (stops the capture first)."""
        self.stop()
        decode = [arg for port in self._ports for arg in ("-d", f"udp.port=={port},wg")]
        fields = ["frame.time_relative", "ip.src", "ipv6.src", "udp.srcport", "ip.dst",
                  "ipv6.dst", "udp.dstport", "wg.type", "udp.length", "wg.mac2"]  # fmt: skip
        result = subprocess.run(
            ["tshark", "-r", str(self._path), *decode, "-Y", "wg", "-T", "fields",
             *(arg for name in fields for arg in ("-e", name)), "-E", "separator=|"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ScenarioFailure(f"tshark could not read the capture: {result.stderr}")
        return [_message(line) for line in result.stdout.splitlines() if line]

    def decrypted(self, keylog: Path, display_filter: str) -> int:
        """How many captured frames match `display_filter` once tshark decrypts the transport
        data with `keylog` (Wireshark's WireGuard key log); stops the capture first."""
        self.stop()
        decode = [arg for port in self._ports for arg in ("-d", f"udp.port=={port},wg")]
        result = subprocess.run(
            ["tshark", "-r", str(self._path), *decode, "-o", f"wg.keylog_file:{keylog}",
             "-o", "wg.dissect_packet:TRUE", "-Y", display_filter, "-T", "fields",
             "-e", "frame.number"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ScenarioFailure(f"tshark could not read the capture: {result.stderr}")
        return len(result.stdout.split())

    def datagrams(self) -> list[tuple[str, str, bytes]]:
        """(source, destination, UDP payload) of every datagram captured (stops the capture)."""
        self.stop()
        found = []
        for packet in rdpcap(str(self._path)):
            network = packet.getlayer(IP) or packet.getlayer(IPv6)
            if network is not None and UDP in network:
                udp = network[UDP]
                found.append(
                    (f"{network.src}:{udp.sport}", f"{network.dst}:{udp.dport}", bytes(udp.payload))
                )
        return found


def _message(line: str) -> WireMessage:
    seconds, src4, src6, sport, dst4, dst6, dport, kind, udp_length, mac2 = line.split("|")
    return WireMessage(
        float(seconds),
        f"{src4 or src6}:{sport}",
        f"{dst4 or dst6}:{dport}",
        int(kind.split(",")[0]),
        int(udp_length) - 8,
        bytes.fromhex(mac2.replace(":", "")),
    )


def mac1(public_key: bytes, message: bytes) -> bytes:
    """MAC1 of a handshake message to the owner of `public_key` (whitepaper 5.4.4)."""
    key = hashlib.blake2s(MAC1_LABEL + public_key).digest()
    return hashlib.blake2s(message, digest_size=16, key=key).digest()


def bogus_initiation(public_key: bytes) -> bytes:
    """An initiation with random contents and a valid mac1 for `public_key`: it passes the
    cheap check, so a receiver must either spend a DH on it or, under load, send a cookie."""
    message = bytes(
        Wireguard()
        / WireguardInitiation(
            sender_index=int.from_bytes(os.urandom(4), "little"),
            unencrypted_ephemeral=os.urandom(32),
            encrypted_static=os.urandom(48),
            encrypted_timestamp=os.urandom(28),
        )
    )
    body = message[:116]
    return body + mac1(public_key, body) + bytes(16)


class InitiationFlood:
    """Send bogus initiations to `target` from a thread inside `ns`, as fast as `rate` allows,
    and count the cookie replies that come back.

    With a `window`, at most that many initiations are unanswered at once: each cookie reply
    lets another go. A peer's handshake queue then holds about `window`, enough to put it under
    load and too few to fill it, so the genuine initiations the scenario waits for are queued
    rather than dropped (a slow peer, the kernel under TCG, fell behind a flood at its rate and
    dropped every one for 40 s). Unanswered ones older than SILENCE are taken as lost."""

    SILENCE = 0.5  # seconds without a cookie reply before the unanswered count is let go

    def __init__(
        self,
        ns: Namespace,
        target: tuple[str, int],
        public_key: bytes,
        rate: float,
        window: int | None = None,
    ):
        self._target = target
        self._interval = 1.0 / rate
        self._window = window
        self._packets = [bogus_initiation(public_key) for _ in range(256)]
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        with ns.entered():
            self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0
        self.cookie_replies = 0
        self._lost = 0  # unanswered initiations given up on, outside the window
        self._last_reply = time.monotonic()

    def start(self) -> InitiationFlood:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending (idempotent); the counts stay readable."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)
        self._socket.close()

    def _run(self) -> None:
        next_send = time.monotonic()
        while not self._stop.is_set():
            # Send in bursts of up to 32, paced to the rate on average.
            for _ in range(self._allowed(32)):
                try:
                    self._socket.sendto(self._packets[self.sent % 256], self._target)
                except OSError:  # the socket's buffer is full (EAGAIN, ENOBUFS): next burst
                    break
                self.sent += 1
            self._drain()
            next_send += 32 * self._interval
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_send = time.monotonic()

    def _allowed(self, burst: int) -> int:
        """How many of a `burst` the window lets go now."""
        if self._window is None:
            return burst
        unanswered = self.sent - self.cookie_replies - self._lost
        if unanswered >= self._window and time.monotonic() - self._last_reply > self.SILENCE:
            self._lost += unanswered
            self._last_reply = time.monotonic()
            unanswered = 0
        return max(0, min(burst, self._window - unanswered))

    def _drain(self) -> None:
        while True:
            try:
                reply = self._socket.recv(256)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if reply[:1] == bytes([COOKIE_REPLY]) and len(reply) == 64:
                self.cookie_replies += 1
                self._last_reply = time.monotonic()


def malformed(public_key: bytes, live_index: int) -> list[bytes]:
    """Datagrams no WireGuard may act on: wrong lengths, bad MACs, unknown types and receivers,
    transport data that fails authentication. `live_index` is a receiver index in use."""

    def random_index() -> int:
        return int.from_bytes(os.urandom(4), "little")

    initiation = bytes(Wireguard() / WireguardInitiation(sender_index=random_index()))
    response = bytes(
        Wireguard() / WireguardResponse(sender_index=random_index(), receiver_index=live_index)
    )
    return [
        b"",
        b"\x01",
        b"\x04\x00\x00",
        initiation[:-1],  # one byte short
        initiation + b"\x00",  # one byte long
        initiation,  # mac1 all zero
        bogus_initiation(public_key),  # mac1 right, contents garbage
        response[:60] + mac1(public_key, response[:60]) + bytes(16),  # no handshake to answer
        bytes(Wireguard() / WireguardCookieReply(receiver_index=live_index)),
        bytes(Wireguard() / WireguardCookieReply(receiver_index=random_index())),
        bytes(Wireguard() / WireguardTransport(receiver_index=live_index, counter=1)),  # no tag
        bytes(
            Wireguard()
            / WireguardTransport(
                receiver_index=live_index,
                counter=2**40,
                encrypted_encapsulated_packet=os.urandom(64),
            )
        ),
        bytes(
            Wireguard()
            / WireguardTransport(
                receiver_index=random_index(),
                counter=0,
                encrypted_encapsulated_packet=os.urandom(32),
            )
        ),
        *(bytes([kind]) + bytes(147) for kind in (0, 5, 255)),
        *(os.urandom(length) for length in (4, 16, 32, 64, 148, 1500)),
    ]


def flipped(datagram: bytes) -> bytes:
    """`datagram` with one bit of its authenticated ciphertext changed."""
    return datagram[:-1] + bytes([datagram[-1] ^ 1])


def send_bad_input(
    ns: Namespace, target: tuple[str, int], received: list[bytes], public_key: bytes
) -> int:
    """Send `target` malformed datagrams, then replays of transport data it already received
    (each replayed three times, and once with a bit flipped), from a port it has never seen."""
    live_index = int.from_bytes(received[0][4:8], "little")
    bad = malformed(public_key, live_index)
    for datagram in received:
        bad += [datagram] * 3 + [flipped(datagram)]
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    with ns.entered():
        sender = socket.socket(family, socket.SOCK_DGRAM)
    with sender:
        for datagram in bad:
            sender.sendto(datagram, target)
            time.sleep(0.002)
    return len(bad)
