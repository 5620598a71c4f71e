"""What the offload tests (segmentation and coalescing) build their packets from."""

from __future__ import annotations

# The addresses of the flow, as scapy's IP() and IPv6() take them.
V4 = {"src": "192.0.2.1", "dst": "192.0.2.2"}
V6 = {"src": "fd00:2::1", "dst": "fd00:2::2"}
# The TCP options on every segment of a Linux connection: NOP, NOP, Timestamp (12 bytes).
TIMESTAMP = [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]
