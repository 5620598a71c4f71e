"""`python -m interop.run [--tier fast|long] [--json FILE]`: run the interop matrix.

Builds (or takes from the cache) the kernel guest's image, makes the lab, runs every scenario of
the tier against every peer, prints a table of results, and writes them as JSON if asked. Exits 0
when everything passed, 1 otherwise, 2 when this machine cannot run the matrix at all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from interop.context import Context
from interop.errors import ImageError, ScenarioFailure
from interop.guest import build_image
from interop.lab import PEERS, Lab
from interop.scenarios import FAST, LONG, Scenario, select

TOOLS = (
    "ip", "wg", "wireguard-go", "qemu-system-x86_64", "tshark", "iperf3", "apt-get", "ldd",
    "curl", "setpriv", "ss",
)  # fmt: skip


@dataclass
class Outcome:
    scenario: str
    peer: str
    passed: bool
    seconds: float
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    diagnostics: str = ""


class ScenarioTimeout(ScenarioFailure):
    pass


def missing_requirements() -> str | None:
    """Why this machine cannot run the matrix, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN and tap devices)"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"needs {', '.join(absent)} (see interop/README.md)"
    if not Path("/dev/net/tun").exists():
        return "needs /dev/net/tun"
    return None


def run_scenario(lab: Lab, scenario: Scenario, peer: str) -> Outcome:
    """Run one scenario against one peer within its timeout; never raises for a failure."""
    started = time.monotonic()
    ctx: Context | None = None
    outcome = Outcome(scenario.name, peer, True, 0.0)
    try:
        with _deadline(scenario.timeout):
            ctx = Context(lab, peer)
            scenario.run(ctx)
    except Exception as error:
        outcome.passed = False
        outcome.reason = str(error) if isinstance(error, ScenarioFailure) else _unexpected(error)
        outcome.diagnostics = ctx.diagnostics() if ctx else ""
    if ctx is not None:
        outcome.notes = ctx.notes
        try:
            ctx.close()
        except Exception as error:
            if outcome.passed:
                outcome.passed = False
                outcome.reason = f"cleaning up failed: {_unexpected(error)}"
    outcome.seconds = time.monotonic() - started
    return outcome


def run_matrix(
    lab: Lab,
    scenarios: Sequence[Scenario],
    peers: Sequence[str],
    log: Callable[[str], None] = print,
) -> list[Outcome]:
    outcomes = []
    # Peer by peer, so the guest is booted once and the namespace peers need no guest at all.
    for peer in peers:
        for scenario in scenarios:
            if peer not in scenario.peers:
                continue
            outcome = run_scenario(lab, scenario, peer)
            status = "pass" if outcome.passed else "FAIL"
            log(f"{status}  {peer:<13} {scenario.name}  ({outcome.seconds:.1f} s)")
            for line in outcome.notes if outcome.passed else [outcome.reason]:
                log(f"      {line}")
            outcomes.append(outcome)
    return outcomes


def table(outcomes: Sequence[Outcome], peers: Sequence[str]) -> str:
    """Scenarios down, peers across; each cell pass or FAIL with its time."""
    names = list(dict.fromkeys(o.scenario for o in outcomes))
    cells = {(o.scenario, o.peer): o for o in outcomes}
    width = max(len(name) for name in names) if names else 8
    header = f"{'scenario':<{width}}  " + "  ".join(f"{peer:<14}" for peer in peers)
    lines = [header, "-" * len(header)]
    for name in names:
        row = []
        for peer in peers:
            outcome = cells.get((name, peer))
            text = "-" if outcome is None else _cell(outcome)
            row.append(f"{text:<14}")
        lines.append(f"{name:<{width}}  " + "  ".join(row))
    passed = sum(o.passed for o in outcomes)
    lines.append(f"{passed} passed, {len(outcomes) - passed} failed")
    return "\n".join(lines)


def failures(outcomes: Sequence[Outcome]) -> str:
    parts = []
    for o in outcomes:
        if not o.passed:
            parts.append(f"=== FAIL {o.peer}: {o.scenario}\n{o.reason}\n{o.diagnostics}")
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interop.run", description=__doc__)
    parser.add_argument("--tier", choices=(FAST, LONG), default=FAST)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--peer", action="append", choices=PEERS, help="only these peers")
    parser.add_argument("--scenario", action="append", help="only scenarios containing this")
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temp dir)")
    args = parser.parse_args(argv)

    if reason := missing_requirements():
        print(f"interop: cannot run: {reason}", file=sys.stderr)
        return 2
    peers = args.peer or list(PEERS)
    scenarios = [
        s for s in select(args.tier) if not args.scenario or any(p in s.name for p in args.scenario)
    ]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wgpy-interop-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"interop: logs in {workdir}")

    started = time.monotonic()
    try:
        image = build_image()
    except ImageError as error:
        print(f"interop: cannot build the guest image: {error}", file=sys.stderr)
        return 2
    image_seconds = time.monotonic() - started
    print(f"interop: guest image ready in {image_seconds:.1f} s ({image.kernel.parent.name})")
    with Lab(image, workdir) as lab:
        outcomes = run_matrix(lab, scenarios, peers)
        boot_seconds = lab.guest_boot_seconds
    total = time.monotonic() - started

    print()
    print(table(outcomes, peers))
    if any(not o.passed for o in outcomes):
        print()
        print(failures(outcomes))
    print(
        f"\ninterop: {total:.0f} s in all (image {image_seconds:.1f} s, boot {boot_seconds:.1f} s)"
    )
    if args.json:
        report = {
            "tier": args.tier,
            "image": image.versions,
            "seconds": {"total": total, "image": image_seconds, "guest_boot": boot_seconds},
            "results": [asdict(o) for o in outcomes],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(o.passed for o in outcomes) else 1


def _cell(outcome: Outcome) -> str:
    return f"{'pass' if outcome.passed else 'FAIL'} {outcome.seconds:.0f}s"


def _unexpected(error: BaseException) -> str:
    return "unexpected error:\n" + "".join(traceback.format_exception(error)).rstrip()


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise ScenarioTimeout in the main thread once `seconds` pass (it interrupts a wait)."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise ScenarioTimeout(f"timed out after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
