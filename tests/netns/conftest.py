"""Fixtures for the tests in network namespaces (the harness itself is wgpy/lab/netns.py).

`@pytest.mark.netns("wireguard-go", "wg")` marks a test that needs root and the named tools; it is
skipped, with the reason, only on a machine that lacks them (in CI that skip is a failure:
tests/conftest.py). Every test in this folder carries the marker, so `-m netns` selects this
folder and `-m "not netns"` tests/unit.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wgpy.lab.netns import Namespace, missing_requirements, namespace, veth_pair


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("netns")
    if marker is not None:
        _skip_unless_possible(marker.args)


@pytest.fixture
def netns() -> Iterator[Namespace]:
    """A fresh network namespace with its loopback up."""
    _skip_unless_possible()
    with namespace() as ns:
        yield ns


@pytest.fixture
def netns_pair() -> Iterator[tuple[Namespace, Namespace]]:
    """Two fresh namespaces joined by a veth pair on 198.18.0.1-2/24 and fd00:1::1-2/64."""
    _skip_unless_possible()
    with veth_pair() as pair:
        yield pair


def _skip_unless_possible(tools: tuple[str, ...] = ()) -> None:
    reason = missing_requirements(tools)
    if reason is not None:
        pytest.skip(reason)
