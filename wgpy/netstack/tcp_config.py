"""What a TCP connection may be tuned by, with Linux's values as defaults where the RFCs leave
room."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class TcpConfig:
    send_buffer: int = 1 << 20
    receive_buffer: int = 1 << 20
    initial_window: int = 10  # segments, RFC 6928 and Linux
    delayed_ack: float = 0.040  # Linux's TCP_DELACK_MIN
    rto_initial: float = 1.0  # RFC 6298 2.1
    rto_min: float = 0.2  # Linux's TCP_RTO_MIN
    rto_max: float = 120.0  # Linux's TCP_RTO_MAX
    syn_retries: int = 6  # Linux's tcp_syn_retries
    max_retries: int = 15  # Linux's tcp_retries2
    time_wait: float = 60.0  # 2*MSL with Linux's TCP_TIMEWAIT_LEN
    fin_wait_2: float = 60.0  # an orphan's wait for the peer's FIN, Linux's tcp_fin_timeout
    keepalive: bool = False  # SO_KEEPALIVE, off by default as on Linux
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_probes: int = 9
    sack: bool = True
    timestamps: bool = True
    window_scaling: bool = True
    # Header prediction (tcp_input) and bulk sending (tcp_output); off, every segment takes the
    # full RFC 9293 path, which tests hold the fast paths to.
    fast_paths: bool = True


DEFAULT_CONFIG: Final = TcpConfig()
