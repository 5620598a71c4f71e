"""benchmarks/throughput.py's bookkeeping, which a review found could flatter wgpy: every pair
takes every place in the order as the rounds go, and a ratio is taken within a round before the
median is taken over the rounds."""

from __future__ import annotations

import statistics

from benchmarks import throughput
from benchmarks.throughput import METRICS, PAIRS, pair_name, ratios, rotated

BASELINE = ("wireguard-go", "wireguard-go")


def test_every_pair_runs_in_every_place_once_over_as_many_rounds() -> None:
    orders = [rotated(PAIRS, number) for number in range(len(PAIRS))]
    for place in range(len(PAIRS)):
        assert sorted(order[place] for order in orders) == sorted(PAIRS)


def round_of(wgpy: float, baseline: float) -> dict[str, dict[str, float]]:
    return {
        pair_name(("wgpy", "wgpy")): {m.key: wgpy for m in METRICS},
        pair_name(BASELINE): {m.key: baseline for m in METRICS},
    }


def test_a_ratio_is_the_median_of_each_rounds_ratio_not_a_ratio_of_medians() -> None:
    """A baseline that drifts with the machine: the rounds' own ratios are 1, 2 and 1."""
    rounds = [round_of(1.0, 1.0), round_of(4.0, 2.0), round_of(9.0, 9.0)]
    per_round = [r["wgpy<->wgpy"]["tcp_ab"] / r[pair_name(BASELINE)]["tcp_ab"] for r in rounds]
    of_medians = statistics.median([1.0, 4.0, 9.0]) / statistics.median([1.0, 2.0, 9.0])
    found = ratios(rounds, BASELINE)["wgpy<->wgpy"]["tcp_ab"]
    assert found == statistics.median(per_round) != of_medians


def test_a_baseline_not_run_gives_no_ratios() -> None:
    assert ratios([round_of(1.0, 1.0)], ("wgpy-offloads-off", "wgpy-offloads-off")) == {}


def test_the_machine_is_busier_after_work_than_before() -> None:
    before = throughput.machine_cpu_seconds()
    sum(i * i for i in range(2_000_000))
    assert throughput.machine_cpu_seconds() > before
