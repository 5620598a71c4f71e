"""`wgpy-quick up` and `down` beside `wg-quick` with wireguard-go, in one run, taking turns.

    python benchmarks/quick.py              # 10 rounds: about half a minute
    python benchmarks/quick.py --rounds 30 --json quick.json
    python benchmarks/quick.py --baseline /tmp/main   # and wgpy-quick of another checkout

Each round runs, in one namespace, `up` then `down` of configs/client-split.conf with each tool
in turn (wgpy-quick first in odd rounds, wg-quick first in even ones), and times each command
from its start to its exit, as a shell user waits for it. The table gives the median and the
fastest and slowest of the rounds. The machine's other load moves every figure: compare the two
tools within one run, not figures of different runs.

Where the kernel has its WireGuard module, wg-quick uses it and not wireguard-go; the table says
which it was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from wgpy.client import socket_path
from wgpy.lab.netns import Namespace, namespace, unique_ifname, wait_until

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "client-split.conf"
KERNEL_MODULE = Path("/sys/module/wireguard")


def wgpy_quick(checkout: Path | None = None) -> list[str]:
    """wgpy-quick of this checkout, or of another one (its daemon too: `wgpy IFNAME` runs from
    the PYTHONPATH it inherits)."""
    command = [sys.executable, "-m", "wgpy.cli.quick"]
    return command if checkout is None else ["env", f"PYTHONPATH={checkout}", *command]


WG_QUICK = ["env", "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go", "wg-quick"]


def timed(ns: Namespace, command: Sequence[str]) -> float:
    start = time.perf_counter()
    ns.run(*command)
    return time.perf_counter() - start


def measure(
    tools: dict[str, list[str]], rounds: int, directory: Path
) -> dict[str, dict[str, list[float]]]:
    """Seconds per command: {tool: {"up": [...], "down": [...]}}."""
    directory.chmod(0o700)
    configs = {}
    for tool in tools:
        configs[tool] = directory / f"{unique_ifname('bq')}.conf"
        configs[tool].write_text(CONFIG.read_text())
        configs[tool].chmod(0o600)
    times: dict[str, dict[str, list[float]]] = {tool: {"up": [], "down": []} for tool in tools}
    with namespace() as ns:
        for number in range(rounds):
            order = list(tools) if number % 2 == 0 else list(reversed(tools))
            for tool in order:
                config = str(configs[tool])
                for action in ("up", "down"):
                    times[tool][action].append(timed(ns, [*tools[tool], action, config]))
                # The next round's `up` must find the name free, socket file and all.
                wait_until(lambda c=configs[tool]: not socket_path(c.stem).exists(), 5)
    return times


def table(times: dict[str, dict[str, list[float]]]) -> str:
    reference = "kernel module" if KERNEL_MODULE.exists() else "wireguard-go"
    lines = [
        f"{'command':<20} {'median s':>9} {'fastest':>8} {'slowest':>8}",
        "-" * 48,
    ]
    for tool, actions in times.items():
        for action, seconds in actions.items():
            label = f"{tool} {action}"
            lines.append(
                f"{label:<20} {statistics.median(seconds):>9.3f} {min(seconds):>8.3f}"
                f" {max(seconds):>8.3f}"
            )
    lines.append(f"(wg-quick with {reference}; {len(seconds)} rounds, taking turns)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--baseline", type=Path, help="also time wgpy-quick of this other checkout of wgpy"
    )
    args = parser.parse_args()
    missing = [tool for tool in ("wg-quick", "wireguard-go", "wg") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        print(f"quick.py: needs root and {', '.join(missing) or 'nothing more'}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="wgpy-bench-quick-") as directory:
        tools = {"wgpy-quick": wgpy_quick(), "wg-quick": WG_QUICK}
        if args.baseline:
            tools["wgpy-quick@base"] = wgpy_quick(args.baseline.resolve())
        times = measure(tools, args.rounds, Path(directory))
    print(table(times))
    if args.json:
        args.json.write_text(json.dumps(times, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
