"""Send pre-built IPv4 packets through a raw socket at a steady rate, then report what was sent.

    python -m benchmarks.hardening.flooder DESTINATION RATE SECONDS SIZE PACKETS_FILE

PACKETS_FILE holds whole IPv4 packets (header included, so every one can carry its own source
address) of SIZE bytes each, back to back. The loop
sends them round-robin, RATE a second for SECONDS, in bursts of a millisecond's worth, and
prints one JSON line: {"sent": N, "errors": N, "seconds": S}. Run it in the namespace to flood
from: it sends whatever it is given, so the caller vouches for the addresses.
"""

from __future__ import annotations

import itertools
import json
import socket
import sys
import time
from pathlib import Path

BURST_SECONDS = 0.001


def flood(destination: str, rate: float, seconds: float, packets: list[bytes]) -> dict[str, float]:
    # IPPROTO_RAW implies IP_HDRINCL: the kernel fills in the IP checksum, id and total length.
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    target = (destination, 0)
    send = raw.sendto
    cycle = itertools.cycle(packets)
    sent = errors = 0
    started = time.monotonic()
    deadline = started + seconds
    while (now := time.monotonic()) < deadline:
        due = int((now - started) * rate) - sent - errors
        for packet in itertools.islice(cycle, max(due, 0)):
            try:
                send(packet, target)
                sent += 1
            except OSError:  # ENOBUFS when the device queue is full: count it, go on.
                errors += 1
        time.sleep(BURST_SECONDS)
    raw.close()
    return {"sent": sent, "errors": errors, "seconds": time.monotonic() - started}


def main(argv: list[str]) -> int:
    destination, rate, seconds, size, path = argv
    data = Path(path).read_bytes()
    step = int(size)
    packets = [data[offset : offset + step] for offset in range(0, len(data), step)]
    print(json.dumps(flood(destination, float(rate), float(seconds), packets)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
