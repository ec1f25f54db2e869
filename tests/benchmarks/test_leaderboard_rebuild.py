"""Rebuilding the committed leaderboard when nothing changed takes under 15 s.

A copy of the committed submissions and ledger is built twice into a temporary folder: first with an empty cache
(every file validated and scored), then again (every entry from ``.cache``); the two boards must be identical.
Time it with::

    pytest tests/benchmarks/test_leaderboard_rebuild.py --benchmark-enable --benchmark-only -s

In the default test run it is skipped (the cold build takes minutes); ``tests/leaderboard/test_build.py`` checks the
cache's behaviour on a small board.
"""

import shutil
import time

import pytest

from morbench.leaderboard.build import build_leaderboard, default_root


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_unchanged_board_rebuilds_in_under_15_seconds(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("timed only with --benchmark-enable (the cold build takes minutes)")
    root = default_root()
    board = tmp_path / "leaderboard"
    shutil.copytree(root / "submissions", board / "submissions")
    shutil.copy2(root / "verified.json", board / "verified.json")
    started = time.perf_counter()
    cold = build_leaderboard(board / "submissions", tmp_path / "cold")
    cold_seconds = time.perf_counter() - started
    started = time.perf_counter()
    warm = build_leaderboard(board / "submissions", tmp_path / "warm")
    warm_seconds = time.perf_counter() - started
    print(
        f"\nleaderboard build of {warm.submissions} submissions: empty cache {cold_seconds:.1f} s "
        f"({cold.rescored} re-scored), unchanged {warm_seconds:.1f} s ({warm.cached} from the cache)"
    )
    benchmark.extra_info.update(cold_seconds=cold_seconds, warm_seconds=warm_seconds)
    benchmark(lambda: None)
    assert warm.cached == warm.submissions and _tree(tmp_path / "cold") == _tree(tmp_path / "warm")
    assert warm_seconds < 15
