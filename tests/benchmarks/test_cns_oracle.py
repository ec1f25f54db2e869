"""CNS oracle throughput: the parallel batched oracle vs a naive one-process loop, side by side on the same molecules.

Normal runs (``--benchmark-disable``) execute each test once on 1,000 held-out ZINC molecules and check
correctness. Timed runs use the 10,000 shipped test-split molecules and assert the speed-up::

    pytest tests/benchmarks/test_cns_oracle.py --benchmark-enable --benchmark-only -s

Set ``MORBENCH_SHARED_CPU=1`` to report the ratio without asserting it when other jobs load the cores.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from morbench.envs.cns.bbb import load_bbb_model
from morbench.envs.cns.data import read_smiles_gz
from morbench.envs.cns.env import ASSETS_DIR, ORACLE_MODEL, TEST_SMILES, CNSOracle
from morbench.envs.cns.pool import default_workers
from morbench.envs.cns.throughput import serial_scores

TARGET_SPEEDUP = 1.7  # on 2 cores


@pytest.fixture(scope="module")
def model():
    return load_bbb_model(ASSETS_DIR, ORACLE_MODEL)


def _molecules(benchmark) -> list[str]:
    smiles = read_smiles_gz(ASSETS_DIR / TEST_SMILES)
    return smiles if benchmark.enabled else smiles[:1000]


def _warm_oracle(model) -> CNSOracle:
    oracle = CNSOracle(model)
    oracle(["CCO", "c1ccccc1", "CCN", "CC(=O)O"] * default_workers())  # start the pool outside the timing
    return oracle


def test_parallel_oracle_vs_naive_loop(benchmark, model):
    smiles = _molecules(benchmark)
    start = time.perf_counter()
    reference = serial_scores(smiles, model)
    serial_seconds = time.perf_counter() - start

    timings = []

    def setup():
        return (_warm_oracle(model),), {}

    def score(oracle):
        begin = time.perf_counter()
        result = oracle(smiles)
        timings.append(time.perf_counter() - begin)
        oracle.close()
        return result

    result = benchmark.pedantic(score, setup=setup, rounds=1, iterations=1)
    parallel_seconds = timings[-1]
    speedup = serial_seconds / parallel_seconds
    benchmark.extra_info.update(
        molecules=len(smiles),
        workers=default_workers(),
        serial_molecules_per_second=len(smiles) / serial_seconds,
        parallel_molecules_per_second=len(smiles) / parallel_seconds,
        speedup=speedup,
    )
    print(
        f"\nCNS oracle, {len(smiles)} molecules, {default_workers()} workers: serial {len(smiles) / serial_seconds:.0f}/s, "
        f"parallel {len(smiles) / parallel_seconds:.0f}/s, speed-up {speedup:.2f}x"
    )
    valid = result.valid
    assert np.array_equal(valid, np.isfinite(reference[:, 0]))
    assert np.allclose(result.rewards[valid], reference[valid], atol=1e-5)
    if benchmark.enabled and default_workers() >= 2 and os.environ.get("MORBENCH_SHARED_CPU") != "1":
        assert speedup >= TARGET_SPEEDUP, f"parallel oracle is only {speedup:.2f}x faster than the naive loop"


def test_cache_hits_are_free(benchmark, model):
    smiles = _molecules(benchmark)
    oracle = _warm_oracle(model)
    try:
        start = time.perf_counter()
        first = oracle(smiles)
        first_seconds = time.perf_counter() - start
        calls = oracle.calls
        again = benchmark(oracle, smiles)
        start = time.perf_counter()
        oracle(smiles)
        rescore_seconds = time.perf_counter() - start
    finally:
        oracle.close()
    benchmark.extra_info.update(first_seconds=first_seconds, rescore_seconds=rescore_seconds)
    assert oracle.calls == calls
    assert np.array_equal(again.rewards, first.rewards)
    assert rescore_seconds < 0.05 * first_seconds
