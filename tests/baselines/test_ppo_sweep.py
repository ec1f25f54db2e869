"""The PPO-settings sweep (``python -m morbench.baselines.ppo_sweep``) at the smoke suite's seconds scale."""

from __future__ import annotations

import json

import pytest

from morbench.baselines import ppo_sweep
from morbench.errors import ConfigError

GRID = {"ppo.learning_rate": (3e-3, 1e-3)}


def test_sweep_scores_every_setting_against_the_prior_and_resumes(tmp_path):
    env_id = "morbench/Motifs-2obj-v0"
    run = lambda: ppo_sweep.sweep(  # noqa: E731
        env_id, tmp_path, GRID, methods=("morlhf",), eval_samples=8, progress=False, suite="smoke"
    )
    record = run()
    assert [row["setting_label"] for row in record["rows"]] == ["lr=0.003", "lr=0.001"]
    assert record["suite_setting"] == {"values": {"ppo.learning_rate": 3e-3}, "label": "lr=0.003"}
    prior = record["prior"]
    assert prior["method"] == "prior" and prior["sampled_tokens"] == 0
    for row in record["rows"]:
        assert row["hypervolume_gain"] == pytest.approx(row["hypervolume"] - prior["hypervolume"])
        assert 0 < row["sampled_tokens"] <= 32 * 6 * 8  # the smoke suite's budget, spent by each setting
        assert row["outcome"] == "ok"
    gains = record["choice"]["gains"]
    assert record["choice"]["chosen"] == max(gains, key=gains.get)
    assert record["seed"] == ppo_sweep.VALIDATION_SEED and record["seed"] not in range(10)
    json.dumps(record)  # the record is JSON

    again = run()  # the same command continues (here: skips) the finished runs and gives the same numbers
    assert {row["outcome"] for row in again["rows"]} == {"skipped (already complete)"}
    assert [row["hypervolume"] for row in again["rows"]] == [row["hypervolume"] for row in record["rows"]]


def test_choice_needs_every_method_and_averages_their_gains():
    prior = {"hypervolume": 0.1}
    rows = [
        {"setting_label": "a", "hypervolume": 0.3},
        {"setting_label": "a", "hypervolume": 0.1},
        {"setting_label": "b", "hypervolume": 0.25},
        {"setting_label": "b", "hypervolume": 0.2},
        {"setting_label": "c", "hypervolume": 0.9},  # one method only: not a candidate
    ]
    choice = ppo_sweep.choose(rows, prior, methods=("rewarded_soups", "morlhf"))
    assert choice["chosen"] == "b"
    assert choice["gains"] == pytest.approx({"a": 0.1, "b": 0.125})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env_id": "morbench/Motifs-v0"}, "is not in the 'small' suite"),
        ({"env_id": "morbench/Enhancer-v0", "suite": "nope"}, "unknown suite 'nope'"),
        ({"env_id": "morbench/Enhancer-v0", "grid": {"iterations": (1, 2)}}, "'iterations' is not a PPO setting"),
    ],
)
def test_bad_sweeps_fail_clearly(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ppo_sweep.sweep_jobs(out=tmp_path, **kwargs)


def test_the_standard_suites_enhancer_settings_are_the_committed_sweeps_choice():
    from pathlib import Path

    from morbench.benchmark import SUITES

    record = json.loads((Path(__file__).parents[2] / "docs/data/ppo_sweep_enhancer_v0.json").read_text())
    assert record["env"] == "morbench/Enhancer-v0" and record["seed"] == ppo_sweep.VALIDATION_SEED
    # the committed choice is what the rule gives on the committed rows (no hand-picked setting)
    assert ppo_sweep.choose(record["rows"], record["prior"], record["methods"]) == record["choice"]
    entry = next(e for e in SUITES["standard"] if e.env_id == "morbench/Enhancer-v0")
    for method in ("iterative_rs", "rewarded_soups", "morlhf"):
        settings = {key: entry.overrides[method][key] for key in record["grid"]}
        assert ppo_sweep._label(settings) == record["choice"]["chosen"], method
