"""The interop matrix's fast tier: every scenario of interop/scenarios.py against every peer.

The peers are Linux's WireGuard (Debian's kernel in a QEMU guest), wireguard-go and wgpy itself;
interop/README.md describes the lab. `python -m interop.run` runs the same matrix outside pytest,
with a results table and JSON, and `--tier long` the scenarios that take minutes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from interop.guest import build_image
from interop.lab import PEERS, Lab
from interop.run import missing_requirements, run_scenario
from interop.scenarios import FAST, Scenario, select

CASES = [(scenario, peer) for peer in PEERS for scenario in select(FAST) if peer in scenario.peers]


def _case_id(case: tuple[Scenario, str]) -> str:
    scenario, peer = case
    return f"{peer}-{re.sub(r'[^a-z0-9]+', '-', scenario.name.lower()).strip('-')}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One lab for the module: the guest boots once, at the first kernel scenario."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    workdir: Path = tmp_path_factory.mktemp("interop")
    with Lab(build_image(log=lambda _: None), workdir) as shared:
        yield shared


@pytest.mark.netns(
    "qemu-system-x86_64", "wireguard-go", "wg", "tshark", "iperf3", "curl", "setpriv"
)
@pytest.mark.parametrize("case", CASES, ids=[_case_id(case) for case in CASES])
def test_wgpy_interoperates(lab: Lab, case: tuple[Scenario, str]) -> None:
    scenario, peer = case
    outcome = run_scenario(lab, scenario, peer)
    assert outcome.passed, f"{peer}: {scenario.name}: {outcome.reason}\n{outcome.diagnostics}"
