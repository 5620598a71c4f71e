"""Back-to-back SOCKS5 connects through `wgpy proxy` from two or more source trees, paired: the
way to tell whether a change to the proxy moved issue 17's connect figure.

    python benchmarks/proxy_ab.py /tmp/before /tmp/after                  # 16 rounds
    python benchmarks/proxy_ab.py . .@WGPY_BUSY_POLL=1000 --rounds 20     # one tree, two settings

Each TREE is a checkout (its wgpy/io/_accel*.so built or copied in), optionally with @VAR=VALUE
for the proxy's environment. In each round every tree's proxy, fresh, makes CONNECTS connects
back to back in the rootless lab (benchmarks/proxy.py's, after WARM_UP not counted), the trees'
order rotated round by round. Every round's median is paired with the first tree's of the same
round: the machine's drift falls on both sides of each difference. On the 2-core VM measured,
one round's figure moves by 10% and more, benchmarks/proxy.py's five-round ratio by 0.15x
between runs; this takes 20 s for two trees and 16 rounds, and the standard error of the mean
difference is 8-20 us (a connect is ~1.3 ms). Busy work of 20 us added to each datagram's
handling in the proxy shows as +50 us a connect.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

import proxy  # benchmarks/proxy.py, beside this script
import throughput  # its turns

from wgpy.lab.proxy import rootless_lab

CONNECTS = 300


def environment(tree: str) -> dict[str, str]:
    """The proxy's environment for TREE[@VAR=VALUE]: that tree's wgpy first on the path."""
    path, _, setting = tree.partition("@")
    variable, _, value = setting.partition("=")
    return {"PYTHONPATH": path, **({variable: value} if variable else {})}


def measure(trees: list[str], rounds: int) -> dict[str, list[float]]:
    """Each tree's median milliseconds a connect, one figure a round."""
    figures: dict[str, list[float]] = {tree: [] for tree in trees}
    with rootless_lab("userspace") as lab:
        for number in range(rounds):
            for tree in throughput.rotated(tuple(trees), number):
                settings = environment(tree)
                process = lab.start_proxy("--socks5", str(proxy.SOCKS), environment=settings)
                with lab.client.entered():
                    asyncio.run(proxy.connect_time(False, 0.0, proxy.WARM_UP))
                    figures[tree].append(asyncio.run(proxy.connect_time(False, 0.0, CONNECTS)))
                lab.client.stop(process)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="+", metavar="TREE")
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args(argv)
    if len(args.trees) < 2 or args.rounds < 2:
        parser.error("two trees or more, two rounds or more")
    figures = measure(args.trees, args.rounds)
    first = figures[args.trees[0]]
    print(f"| tree | median (us) | paired with {args.trees[0]}: median, mean (us) | "
          "standard error (us) |\n|---|---|---|---|")  # fmt: skip
    for tree in args.trees[1:]:
        differences = [(a - b) * 1000 for a, b in zip(figures[tree], first, strict=True)]
        error = statistics.stdev(differences) / len(differences) ** 0.5
        print(f"| {tree} | {statistics.median(figures[tree]) * 1000:,.1f} | "
              f"{statistics.median(differences):+.1f}, {statistics.mean(differences):+.1f} | "
              f"{error:.1f} |")  # fmt: skip
    print(f"| {args.trees[0]} | {statistics.median(first) * 1000:,.1f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
