"""Private and preshared keys never leave a live wgpy daemon unless asked for (issue 8, secrets):
not in its log at LOG_LEVEL=debug, not in `wgpy show` unless WG_HIDE_KEYS=never, and its
configuration socket is its owner's alone. tests/unit/test_secrets.py holds the promises kept in
process; benchmarks/hardening/secrets.py holds the audit.
"""

from __future__ import annotations

import stat

import pytest

from benchmarks.hardening.secrets import SOCKET_MODE, LogAudit, audit_daemon_log, leaked


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
