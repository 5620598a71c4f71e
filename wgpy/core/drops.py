"""Why a packet was dropped. The device counts every drop by reason; none raises."""

from enum import Enum


class DropReason(Enum):
    # From the network.
    UNKNOWN_TYPE = "unknown message type"
    BAD_LENGTH = "wrong message length"
    INVALID_MAC = "invalid mac1"
    COOKIE_REQUIRED = "under load without a valid mac2 (cookie reply sent)"
    RATE_LIMITED = "handshake rate-limited under load"
    HANDSHAKE_INVALID = "handshake failed to authenticate"
    UNKNOWN_PEER = "handshake from an unknown static key"
    PEER_REFUSED = "handshake from an unknown key refused within the last 60 s"
    ADMISSIONS_FULL = "too many handshakes from unknown keys wait for admission"
    ADMISSIONS_RATE_LIMITED = "handshakes from unknown keys beyond the source's rate"
    REPLAYED_TIMESTAMP = "initiation timestamp not newer than the last"
    INITIATION_FLOOD = "initiations from one peer less than 20 ms apart"
    UNKNOWN_INDEX = "unknown receiver index"
    INVALID_COOKIE_REPLY = "cookie reply failed to authenticate"
    KEYPAIR_EXPIRED = "keypair expired"
    DECRYPT_FAILED = "transport data failed to authenticate"
    REPLAYED_COUNTER = "counter replayed or outside the window"
    INVALID_INNER_PACKET = "decrypted packet is not valid IP"
    DISALLOWED_SOURCE = "inner source address not in the peer's AllowedIPs"
    # From the TUN side.
    NO_ROUTE = "no peer's AllowedIPs match the destination"
    NO_ENDPOINT = "peer has no endpoint"
    STAGED_OVERFLOW = "too many packets waiting for a handshake"
    HANDSHAKE_GAVE_UP = "handshake attempts exhausted"
    NO_PRIVATE_KEY = "device has no private key"
