"""benchmarks/multicore.py's arithmetic: GIL samples read per thread, and the 16-core bounds."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def multicore(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports throughput.py beside it
    import multicore

    module: ModuleType = multicore
    return module


def test_gil_samples_are_seconds_per_thread_named_as_the_kernel_names_it(
    multicore: ModuleType,
) -> None:
    pid = os.getpid()
    started, done = threading.Event(), threading.Event()
    native: list[int] = []

    def other() -> None:
        native.append(threading.get_native_id())
        started.set()
        done.wait()

    thread = threading.Thread(target=other)
    thread.start()
    started.wait()
    try:
        comm = Path(f"/proc/self/task/{native[0]}/comm").read_text().strip()
        rate = multicore.RATE
        raw = (
            f"thread ({pid}): MainThread;f (a.py:1) {rate}\n"
            f"thread ({native[0]}): x;g (b.py:2) {rate // 2}\n"
            "process 1:foo 3\n"
        )
        assert multicore.gil_seconds(raw, pid) == {"main": 1.0, comm: 0.5}
    finally:
        done.set()
        thread.join()


def test_the_bounds_are_the_busiest_thread_at_a_core_and_the_gil_at_a_second_a_second(
    multicore: ModuleType,
) -> None:
    figures = multicore.Figures(
        gbps=2.0, machine=1.0, cpu={"wgpy-data": 0.5, "wgpy-tun-writer": 0.25},
        gil={"wgpy-data": 0.25, "wgpy-tun-writer": 0.15},
    )  # fmt: skip
    bounds = multicore.estimate(figures)
    assert bounds["threads_bound_gbps"] == pytest.approx(4.0)  # data thread: 0.5 -> 1.0
    assert bounds["gil_bound_gbps"] == pytest.approx(5.0)  # GIL: 0.4 -> 1.0
    assert bounds["as_built_gbps"] == pytest.approx(4.0)
    assert bounds["gil_share_of_busiest"] == pytest.approx(0.5)
    assert bounds["amdahl_speedup"] == pytest.approx(1 / (0.5 + 0.5 / 16))
    assert bounds["workers_gbps"] == pytest.approx(min(4.0 * bounds["amdahl_speedup"], 5.0))
