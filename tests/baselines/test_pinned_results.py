"""A short run of every method (and every training variant) is pinned: same samples, rewards, log-probabilities,
learning curve and compute as the code that produced ``tests/data/pinned_runs.json.gz``.

Refactors of the training loop, the methods or the envs must keep results bit-identical (CPU runs are
deterministic); this test says which method and which field moved. Sequences and counts are compared exactly,
floats to 1e-5 (relative), so a different CPU's last-bit rounding of a matmul does not fail it: the pins were
made on an Intel Xeon, and on an AMD EPYC Rewards-in-Context's log-probabilities after its supervised steps
differ by 1.1e-6 relative (same samples).

Regenerate (only for a change that is meant to alter results, and say so in the commit):
``MORBENCH_REGEN_PINS=1 pytest tests/baselines/test_pinned_results.py``.
"""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from morbench.baselines import build_config, run_method
from morbench.baselines.training import Budget

ENV = "morbench/Motifs-v0"
PINS = Path(__file__).parents[1] / "data" / "pinned_runs.json.gz"
PPO = {"ppo.batch_size": 16, "ppo.minibatch_size": 8, "ppo.ppo_epochs": 1}
RIC = {
    "offline_samples": 48,
    "online_samples": 16,
    "offline_epochs": 1,
    "online_iterations": 2,
    "online_epochs": 1,
    "batch_size": 16,
}
# name -> (method, config overrides, budget in sampled tokens or None)
VARIANTS = {
    "iterative_rs": ("iterative_rs", {**PPO, "iterations": 4, "merge_every": 2, "checkpoint_every": 1}, None),
    "iterative_rs_budget": ("iterative_rs", {**PPO, "iterations": 50, "merge_every": 3}, 1500),
    "iterative_rs_subsets": (
        "iterative_rs",
        {**PPO, "iterations": 4, "merge_every": 1, "objectives_per_round": 2},
        None,
    ),
    "iterative_rs_per_preference": (
        "iterative_rs",
        {**PPO, "iterations": 1, "merge_every": 1, "training": "per_preference"},
        None,
    ),
    "rewarded_soups": ("rewarded_soups", {**PPO, "iterations": 3, "checkpoint_every": 2}, None),
    "rewarded_soups_budget": ("rewarded_soups", {**PPO, "iterations": 50}, 1200),
    "morlhf": ("morlhf", {**PPO, "iterations": 2}, None),
    "morlhf_budget": ("morlhf", {**PPO, "iterations": 50}, 1600),
    "morlhf_uniform": ("morlhf_uniform", {**PPO, "iterations": 3}, None),
    "rewards_in_context": ("rewards_in_context", RIC, None),
    "rewards_in_context_budget": ("rewards_in_context", {**RIC, "online_iterations": 20}, 2000),
    "rewards_in_context_steps": ("rewards_in_context", {**RIC, "online_steps": 3}, None),
    "best_of_n": ("best_of_n", {"n": 3}, None),
    "prior": ("prior", {}, None),
}
CURVE_FIELDS = ("iteration", "expert", "preference", "round", "stage", "score_mean", "tokens", "gradient_steps")
COMPUTE_FIELDS = ("sampled_tokens", "gradient_steps", "ppo_iterations", "oracle_calls")


def _summary(out: Path) -> dict:
    """What the run produced, in a JSON-comparable form."""
    evaluation = json.loads(gzip.decompress((out / "evaluation.json.gz").read_bytes()))
    run = json.loads((out / "run.json").read_text())
    curve = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines() if line.strip()]
    return {
        "preferences": [
            {key: entry[key] for key in ("weights", "sequences", "rewards", "valid", "logprobs", "prior_logprobs")}
            for entry in evaluation["preferences"]
        ],
        "curve": [{key: entry[key] for key in CURVE_FIELDS if key in entry} for entry in curve],
        "compute": {key: run["compute"][key] for key in COMPUTE_FIELDS},
        "serving": run["outputs"].get("serving"),
    }


def _run(name: str, out: Path) -> dict:
    method, overrides, tokens = VARIANTS[name]
    budget = Budget(sampled_tokens=tokens) if tokens is not None else None
    config = build_config(method, overrides)
    run_method(method, ENV, out, seed=3, config=config, budget=budget, eval_samples=4, progress=False)
    return _summary(out)


def _assert_same(actual, expected, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), f"{where}: keys differ"
        for key in expected:
            _assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: lengths differ"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same(a, e, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert isinstance(actual, (int, float)), f"{where}: {actual!r} is not a number"
        assert np.isclose(actual, expected, rtol=1e-5, atol=1e-7), f"{where}: {actual!r} != pinned {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != pinned {expected!r}"


@pytest.fixture(scope="module")
def pinned() -> dict:
    if os.environ.get("MORBENCH_REGEN_PINS"):
        return {}
    return json.loads(gzip.decompress(PINS.read_bytes()))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_short_run_matches_the_pinned_result(name, pinned, tmp_path):
    summary = _run(name, tmp_path)
    if os.environ.get("MORBENCH_REGEN_PINS"):
        stored = json.loads(gzip.decompress(PINS.read_bytes())) if PINS.exists() else {}
        stored[name] = summary
        PINS.write_bytes(gzip.compress(json.dumps(stored, sort_keys=True).encode(), mtime=0))
        pytest.skip("pins regenerated")
    assert name in pinned, f"no pinned result for {name}: regenerate the pins (see the module docstring)"
    _assert_same(summary, pinned[name], name)


def test_the_pins_cover_every_registered_method():
    from morbench.baselines import METHODS

    assert {method for method, _, _ in VARIANTS.values()} == set(METHODS)
