"""Hypervolume: moocore (what ``morbench.metrics.hypervolume`` calls) against the former hand-written recursive
slicing, side by side on the same points, and the sizes the issue names (1,000 points in 3 objectives: 23 s
before; 200 points in 4 objectives: 6 s before).

Normal runs (``--benchmark-disable``) compute each case once and check the two algorithms agree. Timed runs
report the times and the speed-up and assert it::

    pytest tests/benchmarks/test_hypervolume.py --benchmark-enable --benchmark-only -s

Set ``MORBENCH_SHARED_CPU=1`` to report without asserting when other jobs load the cores.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest

from morbench.metrics import hypervolume

COMPARED_POINTS = 120  # the former algorithm takes about a second here (its cost grows ~n^3 in 3 objectives)
TARGET_SPEEDUP = 100
LARGE_CASE_SECONDS = 0.05  # each of the issue's cases, with moocore


def _former_hypervolume():
    path = Path(__file__).parents[1] / "test_metrics.py"
    spec = importlib.util.spec_from_file_location("morbench_test_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._reference_hypervolume


def _sphere_points(n: int, k: int, seed: int = 0) -> np.ndarray:
    """Points on the positive unit sphere: every one is non-dominated (the worst case for both algorithms)."""
    points = np.abs(np.random.default_rng(seed).normal(size=(n, k)))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def _assert_or_report(condition: bool, message: str) -> None:
    print(message)
    if os.environ.get("MORBENCH_SHARED_CPU") != "1":
        assert condition, message


def test_moocore_vs_the_former_algorithm(benchmark):
    points = _sphere_points(COMPARED_POINTS if benchmark.enabled else 40, 3)
    ref = np.zeros(3)
    former = _former_hypervolume()
    start = time.perf_counter()
    expected = former(points, ref)
    former_seconds = time.perf_counter() - start
    value = benchmark(hypervolume, points, ref)
    assert value == pytest.approx(expected, rel=1e-12)
    if benchmark.enabled:
        moocore_seconds = benchmark.stats.stats.median
        _assert_or_report(
            former_seconds / moocore_seconds >= TARGET_SPEEDUP,
            f"{len(points)} points, 3 objectives: former {former_seconds:.3f} s, moocore {moocore_seconds * 1e3:.3f} ms,"
            f" {former_seconds / moocore_seconds:,.0f}x",
        )


@pytest.mark.parametrize(("n", "k"), [(1000, 3), (200, 4)])
def test_the_issues_sizes(benchmark, n, k):
    points = _sphere_points(n, k)
    value = benchmark(hypervolume, points, np.zeros(k))
    assert np.prod(points, axis=1).max() < value < 1.0
    if benchmark.enabled:
        seconds = benchmark.stats.stats.median
        _assert_or_report(seconds < LARGE_CASE_SECONDS, f"{n} points, {k} objectives: {seconds * 1e3:.2f} ms")
