"""A short run of every method on every real task completes from the CLI and writes a complete, scoreable run
directory (Summarize has its own test: its prompts need smaller settings)."""

import json

import pytest

from morbench.cli import main
from morbench.scoring import score_run

TINY = {
    "iterative_rs": ["iterations=2", "merge_every=1"],
    "rewarded_soups": ["iterations=1"],
    "morlhf": ["iterations=2"],
    "rewards_in_context": [
        "offline_samples=64",
        "online_samples=32",
        "offline_epochs=1",
        "online_iterations=1",
        "online_epochs=1",
        "batch_size=32",
    ],
    "prior": [],
    "best_of_n": ["n=2"],
}
PPO = ["ppo.batch_size=16", "ppo.minibatch_size=8", "ppo.ppo_epochs=1"]


DOMAIN_METRIC = {"morbench/QM9-v0": "novelty", "morbench/CNS-v0": "novelty", "morbench/Enhancer-v0": "gc_content"}


@pytest.mark.parametrize("env_id", sorted(DOMAIN_METRIC))
@pytest.mark.parametrize("method", sorted(TINY))
def test_short_run_from_the_cli(env_id, method, tmp_path, capsys):
    overrides = TINY[method] + (PPO if method in ("iterative_rs", "rewarded_soups", "morlhf") else [])
    argv = [
        "train",
        method,
        "--env",
        env_id,
        "--seed",
        "1",
        "--out",
        str(tmp_path),
        "--eval-samples",
        "8",
        "--quiet",
    ]
    for item in overrides:
        argv += ["--set", item]
    assert main(argv) == 0
    assert "run written to" in capsys.readouterr().out
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "complete" and record["env"]["id"] == env_id and record["seed"] == 1
    result = score_run(tmp_path)
    assert len(result["per_preference"]) == 10 and "judge_gap" in result
    assert DOMAIN_METRIC[env_id] in json.dumps(result["domain"])
