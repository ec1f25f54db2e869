"""The fuzz suite: generated hostile inputs for every entry point a user or a file can reach.

The property everywhere: no exception other than a :class:`~morbench.errors.MorbenchError` subclass, and every
reward inside the task's reward space (invalid sequences get the documented floor, ``valid=False``).

``make test`` runs a small, derandomized budget per target (the whole directory in well under a minute);
``MORBENCH_FUZZ_EXAMPLES=100000`` (``make fuzz``) runs that many random cases per target.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("MORBENCH_FUZZ_EXAMPLES", "0") or 0)
LONG = EXAMPLES > 0

# cheap to make: fuzzed in every run. CNS loads its models for ~10 s and scores valid molecules slowly: long mode.
ENV_IDS = ["morbench/Motifs-2obj-v0", "morbench/QM9-v0", "morbench/Enhancer-v0", "morbench/Summarize-tiny-v0"]
if LONG:
    ENV_IDS.append("morbench/CNS-v0")


def fuzz(default_examples: int = 25):
    """Hypothesis settings of one fuzz target: ``default_examples`` in the normal run, EXAMPLES in long mode."""
    return settings(
        max_examples=EXAMPLES or default_examples,
        deadline=None,
        derandomize=not LONG,  # the normal run is reproducible; the long mode explores
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
        print_blob=True,
    )


@functools.cache
def task(env_id: str):
    """One unwrapped env per id for the whole session (its oracle cache is shared: scoring is deterministic)."""
    import morbench

    return morbench.make(env_id).unwrapped


def check_score_result(env, result, n: int) -> None:
    """Rewards are ``(n, K)``, finite, inside the reward space; invalid rows have the floor reward."""
    rewards = np.asarray(result.rewards, dtype=np.float64)
    valid = np.asarray(result.valid, dtype=bool)
    assert rewards.shape == (n, env.reward_dim) and valid.shape == (n,)
    assert np.all(np.isfinite(rewards))
    assert np.all(rewards >= env.reward_space.low - 1e-6) and np.all(rewards <= env.reward_space.high + 1e-6)
    floor = np.asarray(env.oracle.floor, dtype=np.float64)
    assert np.all(rewards[~valid] == floor), "an invalid sequence must get the floor reward"
