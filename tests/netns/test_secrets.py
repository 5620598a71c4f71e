"""Private and preshared keys never leave a live wgpy daemon unless asked for (issue 8, secrets):
not in its log at LOG_LEVEL=debug, not in `wgpy show` unless WG_HIDE_KEYS=never, and its
configuration socket is its owner's alone. tests/unit/test_secrets.py holds the promises kept in
process; benchmarks/hardening/secrets.py holds the audit.
"""

from __future__ import annotations

import stat

import pytest

from benchmarks.hardening.secrets import SOCKET_MODE, LogAudit, audit_daemon_log, leaked
from wgpy.core.events import Event, short_peer
from wgpy.core.keys import public_key, to_base64


@pytest.fixture(scope="module")
def audit() -> LogAudit:
    """One daemon at LOG_LEVEL=debug through a handshake, data, a `set` and refusals."""
    return audit_daemon_log()


@pytest.mark.netns("wg", "ping")
def test_the_daemon_log_at_debug_holds_no_key_after_handshake_data_set_and_refusals(
    audit: LogAudit,
) -> None:
    assert audit.pinged, "the tunnel carried no data: the audit saw nothing"
    assert audit.log.count("configuration rejected") >= audit.refusals > 0
    assert leaked(audit.log, audit.secrets) == []


@pytest.mark.netns("wg", "ping")
def test_wgpy_show_on_a_live_daemon_hides_keys_unless_wg_hide_keys_is_never(
    audit: LogAudit,
) -> None:
    private_a, _, psk = audit.secrets
    assert leaked(audit.show, audit.secrets) == [] and audit.show.count("(hidden)") == 2
    assert leaked(audit.show_never, [private_a]) and leaked(audit.show_never, [psk])


@pytest.mark.netns("wg", "ping")
def test_the_live_daemons_socket_is_its_owners_alone(audit: LogAudit) -> None:
    assert audit.socket_mode == SOCKET_MODE
    assert not audit.socket_mode & (stat.S_IRWXG | stat.S_IRWXO)


@pytest.mark.netns("wg", "ping")
def test_the_daemon_log_tells_handshakes_as_wireguard_go_does_with_short_keys_only(
    audit: LogAudit,
) -> None:
    private_a, private_b, _ = audit.secrets
    publics = [public_key(private) for private in (private_a, private_b)]
    for event in HANDSHAKE_EVENTS:
        assert any(f"{short_peer(key)} - {event.value}" in audit.log for key in publics), event
    assert not [key for key in publics if to_base64(key) in audit.log]


HANDSHAKE_EVENTS = (
    Event.INITIATION_SENT,
    Event.INITIATION_RECEIVED,
    Event.RESPONSE_SENT,
    Event.RESPONSE_RECEIVED,
    Event.HANDSHAKE_COMPLETED,
)
