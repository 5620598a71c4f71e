"""Protocol constants, named as in the WireGuard whitepaper (section 6) and the kernel."""

from typing import Final

CONSTRUCTION: Final = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER: Final = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1: Final = b"mac1----"
LABEL_COOKIE: Final = b"cookie--"

# Limits on a keypair's use, in messages and in seconds.
REKEY_AFTER_MESSAGES: Final = 1 << 60
REJECT_AFTER_MESSAGES: Final = (1 << 64) - (1 << 13) - 1
REKEY_AFTER_TIME: Final = 120.0
REJECT_AFTER_TIME: Final = 180.0
REKEY_ATTEMPT_TIME: Final = 90.0
REKEY_TIMEOUT: Final = 5.0
REKEY_TIMEOUT_JITTER_MAX: Final = 1 / 3
KEEPALIVE_TIMEOUT: Final = 10.0
COOKIE_REFRESH_TIME: Final = 120.0
MAX_TIMER_HANDSHAKES: Final = int(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT)
# The initiator rekeys on receive this long into a session, so the new session is ready before the
# responder (who never initiates on send alone) would have to stop at REJECT_AFTER_TIME.
REKEY_ON_RECEIVE_TIME: Final = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
# A new handshake is started when data was sent and nothing came back for this long.
NEW_HANDSHAKE_TIME: Final = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
# All key material of a peer is erased after this long without a new handshake.
ZERO_KEYS_TIME: Final = REJECT_AFTER_TIME * 3

# The responder accepts at most one initiation per peer in this interval (50 per second).
MIN_INITIATION_INTERVAL: Final = 1 / 50
# The device stays "under load" this long after the handshake backlog fell below the threshold.
UNDER_LOAD_AFTER_TIME: Final = 1.0
# Default handshake backlog (initiations seen in the last second) that puts a device under load.
UNDER_LOAD_THRESHOLD: Final = 128
# Per-source token bucket for handshakes under load, as the kernel's ratelimiter.
HANDSHAKES_PER_SECOND: Final = 20
HANDSHAKE_BURST: Final = 5

# Packets held for a peer while its handshake is pending (wireguard-go's QueueStagedSize).
MAX_STAGED_PACKETS: Final = 128

# Anti-replay window, as the kernel's: 8192 bits less one machine word.
COUNTER_BITS_TOTAL: Final = 8192
COUNTER_WINDOW_SIZE: Final = COUNTER_BITS_TOTAL - 64

# Message types and sizes.
MESSAGE_INITIATION: Final = 1
MESSAGE_RESPONSE: Final = 2
MESSAGE_COOKIE_REPLY: Final = 3
MESSAGE_TRANSPORT: Final = 4
INITIATION_SIZE: Final = 148
RESPONSE_SIZE: Final = 92
COOKIE_REPLY_SIZE: Final = 64
TRANSPORT_HEADER_SIZE: Final = 16
AEAD_TAG_SIZE: Final = 16
TRANSPORT_MIN_SIZE: Final = TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE
PADDING_MULTIPLE: Final = 16

KEY_LEN: Final = 32
DEFAULT_MTU: Final = 1420
DEFAULT_PORT: Final = 51820
