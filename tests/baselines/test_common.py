"""PPO machinery, weight merging and checkpoints."""

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import morbench
from morbench.baselines.checkpoint import load_checkpoint, pack, save_checkpoint, unpack
from morbench.baselines.common import MergeError, PPOConfig, PPOLearner, _gae, merge_state_dicts
from morbench.baselines.training import Budget
from morbench.errors import ConfigError
from morbench.models import build_gpt2


def _states():
    a = build_gpt2(12, 16, seed=1).state_dict()
    b = build_gpt2(12, 16, seed=2).state_dict()
    return a, b


def test_one_hot_merge_reproduces_the_expert_exactly():
    a, b = _states()
    for weights, expected in (([1.0, 0.0], a), ([0.0, 1.0], b)):
        merged = merge_state_dicts([a, b], weights)
        assert merged.keys() == expected.keys()
        for key in expected:
            assert torch.equal(merged[key], expected[key]), key


def test_merge_is_the_weighted_average_and_changes_the_weights():
    a, b = _states()
    merged = merge_state_dicts([a, b], [0.25, 0.75])
    key = "transformer.h.0.attn.c_attn.weight"
    torch.testing.assert_close(merged[key], 0.25 * a[key] + 0.75 * b[key])
    assert not torch.equal(merged[key], a[key]) and not torch.equal(merged[key], b[key])


def test_strict_key_check_fails_loudly():
    a, b = _states()
    b = dict(b)
    b.pop("transformer.h.0.attn.c_attn.weight")
    with pytest.raises(MergeError, match=r"missing \['transformer.h.0.attn.c_attn.weight'\]"):
        merge_state_dicts([a, b], [0.5, 0.5])
    a2, b2 = _states()
    b2["transformer.wte.weight"] = torch.zeros(3, 3)
    with pytest.raises(MergeError, match="shape"):
        merge_state_dicts([a2, b2], [0.5, 0.5])
    with pytest.raises(MergeError, match="sum to 1"):
        merge_state_dicts([a2, a2], [0.5, 0.6])


def test_gae_matches_a_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.25, 0.75]])
    mask = torch.ones(1, 3)
    advantages, returns = _gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.75
    d1 = 0.0 + 0.75 - 0.25
    d0 = 0.0 + 0.25 - 0.5
    a2, a1 = d2, d1 + 0.5 * d2
    a0 = d0 + 0.5 * a1
    torch.testing.assert_close(advantages, torch.tensor([[a0, a1, a2]]))
    torch.testing.assert_close(returns, advantages + values)


def test_ppo_config_validation_says_how_to_fix():
    with pytest.raises(ConfigError, match="multiple of minibatch_size"):
        PPOConfig(batch_size=30, minibatch_size=8)
    with pytest.raises(ConfigError, match="learning_rate must be > 0"):
        PPOConfig(learning_rate=0)


def test_budget_validation():  # the accounting itself is tested in test_budgets.py
    assert Budget(sampled_tokens=10_000, oracle_calls=500).limited and not Budget().limited
    with pytest.raises(ConfigError):
        Budget(oracle_calls=0)


def test_a_ppo_learner_improves_its_scalarized_reward():
    venv = morbench.make_vec("morbench/Motifs-2obj-v0", num_envs=32, autoreset_mode=AutoresetMode.DISABLED)
    prior = morbench.models.load_prior(venv)
    learner = PPOLearner(prior, prior, venv, PPOConfig(batch_size=32, minibatch_size=16, learning_rate=1e-3), seed=0)
    scores = [learner.iteration(lambda r: r[:, 0])["score_mean"] for _ in range(12)]
    assert np.mean(scores[-3:]) > np.mean(scores[:3]) + 0.1, scores
    assert learner.gradient_steps == 12 * 4 * 2
    # the reference model never moves
    for p_ref, p_prior in zip(learner.ref_model.parameters(), prior.parameters(), strict=True):
        assert p_ref is p_prior and not p_ref.requires_grad


def test_checkpoint_round_trip_and_atomicity(tmp_path):
    generator = torch.Generator().manual_seed(3)
    state = {
        "weights": {"w": torch.arange(6.0).view(2, 3)},
        7: [1, 2.5, "x", None],
        "rng": generator.get_state(),
        "nested": ({"a": torch.ones(2)},),
    }
    save_checkpoint(tmp_path / "checkpoint", state)
    restored = load_checkpoint(tmp_path / "checkpoint")
    assert torch.equal(restored["weights"]["w"], state["weights"]["w"])
    assert restored[7] == [1, 2.5, "x", None] and torch.equal(restored["rng"], state["rng"])
    assert isinstance(restored["nested"], tuple)
    # a crash between the two renames leaves only checkpoint.old: it is still found
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")
    assert load_checkpoint(tmp_path / "checkpoint") is not None
    tensors = {}
    assert unpack(pack({"k": torch.zeros(1)}, tensors), tensors)["k"].shape == (1,)


def test_build_config_checks_every_value_against_its_field_type():
    from morbench.baselines import build_config
    from morbench.errors import ConfigError

    config = build_config("iterative_rs", {"iterations": 3, "ppo.learning_rate": 1, "merge_weights": [1, 2]})
    assert config.iterations == 3 and config.ppo.learning_rate == 1.0 and isinstance(config.ppo.learning_rate, float)
    assert (
        config.merge_weights == [1.0, 2.0]
        and build_config("iterative_rs", {"merge_weights": None}).merge_weights is None
    )
    bad = {
        "iterations": 1.5,
        "merge_every": True,
        "merge_weights": ["a"],
        "objectives_per_round": "2",
        "ppo": 5,
        "ppo.batch_size": 16.0,
        "ppo.kl_coef": float("inf"),
        "ppo.whiten_advantages": 1,
    }
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=f"{key.replace('.', '[.]')}"):
            build_config("iterative_rs", {key: value})
    with pytest.raises(ConfigError, match="set both as a whole"):
        build_config("iterative_rs", {"ppo": 5, "ppo.batch_size": 8})


def test_damaged_checkpoints_raise_checkpoint_error_naming_the_file(tmp_path):
    from morbench.errors import CheckpointError

    save_checkpoint(tmp_path / "checkpoint", {"w": torch.ones(4), "n": 743})
    state_file = tmp_path / "checkpoint" / "state.json"
    state_file.write_text(state_file.read_text().replace("743", "9743"))
    with pytest.raises(CheckpointError, match=r"state\.json: SHA-256 .* Delete .*checkpoint to start the run over"):
        load_checkpoint(tmp_path / "checkpoint")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is not a directory"):
        load_checkpoint(tmp_path / "file")
    assert load_checkpoint(tmp_path / "absent") is None
