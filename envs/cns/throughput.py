"""Oracle throughput: the parallel, batched, cached oracle against a naive one-process loop on the same molecules."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from rdkit import Chem

from morbench.envs.cns.bbb import BBBModel, feature_matrix
from morbench.envs.cns.env import CNSOracle, sa_objective
from morbench.envs.cns.featurize import _load_sascorer, canonicalize_smiles, featurize_mol

__all__ = ["measure_throughput", "serial_scores"]


def serial_scores(smiles: Sequence[str], model: BBBModel) -> np.ndarray:
    """The naive reference: one process, one molecule at a time (parse, canonicalize, QED, SA, descriptors,
    fingerprint, one BBB forward pass each). ``(n, 3)`` rewards, NaN rows where a string is invalid."""
    _load_sascorer()
    spec = model.config.spec
    out = np.full((len(smiles), 3), np.nan)
    for i, string in enumerate(smiles):
        canonical, _, _ = canonicalize_smiles(string)
        if canonical is None:
            continue
        record = featurize_mol(canonical, Chem.MolFromSmiles(canonical), spec)
        bits, descriptors = feature_matrix([record], spec)
        out[i] = (record.qed, float(sa_objective(record.sa)), float(model.probability(bits, descriptors)[0]))
    return out


def measure_throughput(
    smiles: Sequence[str], model: BBBModel, warmup: Sequence[str], workers: int | None = None
) -> dict[str, Any]:
    """Time the naive loop and the oracle side by side on ``smiles``; ``warmup`` molecules start the pool first.

    Also re-scores the same molecules to show that cache hits cost neither time nor oracle calls, and checks
    that both paths give the same rewards.
    """
    smiles = list(smiles)
    start = time.perf_counter()
    reference = serial_scores(smiles, model)
    serial_seconds = time.perf_counter() - start

    oracle = CNSOracle(model, workers=workers)
    try:
        start = time.perf_counter()
        oracle(list(warmup))
        startup_seconds = time.perf_counter() - start
        calls_before = oracle.calls
        start = time.perf_counter()
        result = oracle(smiles)
        parallel_seconds = time.perf_counter() - start
        calls_after_first = oracle.calls
        start = time.perf_counter()
        again = oracle(smiles)
        rescore_seconds = time.perf_counter() - start
        calls_after_rescore = oracle.calls
    finally:
        oracle.close()
    valid = result.valid
    same_validity = bool(np.array_equal(valid, np.isfinite(reference[:, 0])))
    difference = float(np.max(np.abs(result.rewards[valid] - reference[valid]))) if valid.any() else 0.0
    n = len(smiles)
    return {
        "molecules": n,
        "valid": int(valid.sum()),
        "workers": oracle.pool.workers,
        "serial_seconds": serial_seconds,
        "serial_molecules_per_second": n / serial_seconds,
        "pool_startup_and_warmup_seconds": startup_seconds,
        "warmup_molecules": len(warmup),
        "parallel_seconds": parallel_seconds,
        "parallel_molecules_per_second": n / parallel_seconds,
        "speedup": serial_seconds / parallel_seconds,
        "rescore_seconds": rescore_seconds,
        "rescore_molecules_per_second": n / max(rescore_seconds, 1e-9),
        "oracle_calls_first": calls_after_first - calls_before,
        "oracle_calls_rescore": calls_after_rescore - calls_after_first,
        "rescore_identical": bool(np.array_equal(again.rewards, result.rewards)),
        "same_validity_as_serial": same_validity,
        "max_abs_difference_vs_serial": difference,
    }
