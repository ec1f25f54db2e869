"""The schedule loop owns resume: a run interrupted after any checkpoint and resumed ends exactly as the pinned
uninterrupted run, for every kind of schedule (train_each, train_rounds, stages); named scalarizations."""

import json

import gymnasium as gym
import numpy as np
import pytest

import morbench
from morbench.baselines import build_config, run_method
from morbench.baselines import training as training_module
from morbench.baselines.checkpoint import load_checkpoint
from morbench.baselines.training import Budget
from morbench.errors import CheckpointError, ConfigError
from morbench.scalarization import Linear, ObjectiveColumn, ScalarizedReward, scalarization_from_dict

from .test_pinned_results import ENV, VARIANTS, _assert_same, _summary, pinned  # noqa: F401 (fixture)


class Crash(Exception):
    """Stands in for a kill after a checkpoint was written."""


def _crash_after(monkeypatch, checkpoints: int) -> None:
    original = training_module.RunContext.checkpoint
    count = {"n": 0}

    def checkpoint(self):
        original(self)
        count["n"] += 1
        if count["n"] == checkpoints:
            raise Crash

    monkeypatch.setattr(training_module.RunContext, "checkpoint", checkpoint)


def _start(name, out, resume=False, checkpoint_seconds=0):
    method, overrides, tokens = VARIANTS[name]
    budget = Budget(sampled_tokens=tokens) if tokens is not None else None
    run_method(
        method, ENV, out, seed=3, config=build_config(method, overrides), budget=budget, eval_samples=4,
        resume=resume, progress=False, checkpoint_seconds=checkpoint_seconds,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "checkpoints"),
    [
        ("iterative_rs", 5),  # inside a round (checkpoint_every=1)
        ("iterative_rs_per_preference", 4),  # inside the second trajectory stage
        ("rewarded_soups", 2),  # inside the second expert's block
        ("morlhf_budget", 3),  # between trained preferences, with a budget
        ("rewards_in_context", 3),  # after the offline SFT stage
        ("rewards_in_context_budget", 6),  # between online rounds, with a budget
    ],
)
def test_interrupted_and_resumed_run_matches_the_pinned_run(name, checkpoints, pinned, tmp_path, monkeypatch):  # noqa: F811
    with monkeypatch.context() as patch:
        _crash_after(patch, checkpoints)
        with pytest.raises(Crash):
            _start(name, tmp_path)
    assert (tmp_path / "checkpoint").exists()
    _start(name, tmp_path, resume=True)
    _assert_same(_summary(tmp_path), pinned[name], f"{name} resumed after checkpoint {checkpoints}")


def test_a_checkpoint_of_another_schedule_format_is_refused(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        _crash_after(patch, 2)
        with pytest.raises(Crash):
            _start("rewarded_soups", tmp_path)
    monkeypatch.setattr(training_module, "SCHEDULE_FORMAT", training_module.SCHEDULE_FORMAT + 1)
    with pytest.raises(CheckpointError, match="schedule position has format"):
        _start("rewarded_soups", tmp_path, resume=True)


def test_checkpoints_append_the_oracle_cache_instead_of_rewriting_it(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        _crash_after(patch, 3)
        with pytest.raises(Crash):
            _start("rewarded_soups", tmp_path)
    saved = load_checkpoint(tmp_path / "checkpoint")
    pin = json.loads(saved["oracle"])["cache"]
    log = (tmp_path / "checkpoint" / "oracle-cache.jsonl").read_bytes()[: pin["bytes"]]
    keys = [json.dumps(json.loads(line)[0]) for line in log.splitlines()]
    assert pin["entries"] == len(keys) > 0 and len(set(keys)) == len(keys)  # each cached sequence written once
    state_json = (tmp_path / "checkpoint" / "state.json").read_text()
    sequences = [json.loads(key) for key in keys if len(json.loads(key)) >= 4][:20]
    assert sequences and not any(seq in state_json for seq in sequences)  # state.json does not carry the cache


def test_periodic_checkpoints_wait_for_checkpoint_seconds(tmp_path, monkeypatch):
    written = []
    original = training_module.RunContext.checkpoint
    monkeypatch.setattr(training_module.RunContext, "checkpoint", lambda self: written.append(1) or original(self))
    _start("iterative_rs", tmp_path / "hourly", checkpoint_seconds=3600)
    assert written == []  # one short trajectory: no boundary that always checkpoints, no hour passed
    _start("iterative_rs", tmp_path / "always", checkpoint_seconds=0)
    assert len(written) >= 12  # every iteration (checkpoint_every=1), block and round
    assert not (tmp_path / "always" / "oracle-cache.jsonl").exists()  # a finished run keeps no checkpoint data


def test_scalarizations_are_the_methods_rewards_and_round_trip():
    rewards = np.random.default_rng(0).random((5, 3), dtype=np.float32)
    weights = np.array([0.2, 0.3, 0.5])
    assert np.array_equal(ObjectiveColumn(2)(rewards), rewards[:, 2])
    assert np.array_equal(Linear(tuple(weights))(rewards), rewards @ weights)  # bit-identical to MORLHF's old lambda
    for scalarization in (ObjectiveColumn(1), Linear((0.25, 0.75))):
        assert scalarization_from_dict(scalarization.to_dict()) == scalarization
    with pytest.raises(ConfigError, match="'mystery'"):
        scalarization_from_dict({"kind": "mystery"})
    with pytest.raises(ConfigError, match="-1"):
        ObjectiveColumn(-1)
    with pytest.raises(ConfigError, match="nan"):
        Linear((float("nan"), 1.0))


def test_scalarized_reward_wrapper_keeps_the_vector_in_info():
    env = ScalarizedReward(morbench.make(ENV), Linear((0.2, 0.3, 0.5)))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    terminated = truncated = False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4, env.action_space.n)))
        vector = info["vector_reward"]
        assert vector.shape == (3,) and isinstance(reward, float)
        assert reward == pytest.approx(float(vector @ np.array([0.2, 0.3, 0.5])))
    assert vector.any() or not info.get("valid", True)
    with pytest.raises(ConfigError, match="reward_dim"):
        ScalarizedReward(gym.make("CartPole-v1"), ObjectiveColumn(0))
