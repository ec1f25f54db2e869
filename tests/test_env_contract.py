"""The single-env contract, checked on the Motifs task, plus the checker catching broken envs."""

import numpy as np
import pytest
from gymnasium import spaces

import morbench
from morbench.core import OracleEvaluation
from morbench.errors import InvalidActionError, StepAfterDoneError
from morbench.utils import check_env
from morbench.utils.env_checker import EnvCheckError, check_info_copies, check_reward_space


def _ids(env, text):
    return [env.unwrapped.tokenizer.convert_tokens_to_ids(c) for c in text]


def test_contract_attributes():
    env = morbench.make("morbench/Motifs-v0")
    task = env.unwrapped
    assert task.reward_space == spaces.Box(0.0, 1.0, (3,), np.float32)
    assert task.reward_dim == 3 and task.objective_names == ("motif_1", "motif_2", "motif_3")
    assert env.action_space == spaces.Discrete(len(task.tokenizer))
    assert task.preference_grid.shape == (10, 3)
    np.testing.assert_array_equal(task.reference_point, [0, 0, 0])
    assert task.prior_path is None


def test_reward_is_zero_until_eos_then_the_oracle_vector():
    env = morbench.make("morbench/Motifs-v0")
    task = env.unwrapped
    env.reset(seed=0)
    target = task.motifs[0] + task.motifs[1][:2]
    for i, token in enumerate(_ids(env, target)):
        obs, reward, terminated, truncated, info = env.step(token)
        assert reward.dtype == np.float32 and not reward.any() and not (terminated or truncated)
        assert obs[i] == token and (obs[i + 1 :] == task.pad_token_id).all()
    obs, reward, terminated, truncated, info = env.step(task.eos_token_id)
    assert terminated and not truncated
    np.testing.assert_allclose(reward, [1.0, 0.5, 0.0])
    assert info["sequence"] == target and info["valid"] and info["length"] == 7
    assert info["properties"] == {"matches_motif_1": 4.0, "matches_motif_2": 2.0, "matches_motif_3": 0.0}
    with pytest.raises(StepAfterDoneError):
        env.step(0)


def test_truncation_at_max_length_scores_what_was_written():
    env = morbench.make("morbench/Motifs-v0")
    task = env.unwrapped
    env.reset()
    letters = (task.motifs[2] * 2)[: task.max_length]
    for token in _ids(env, letters):
        _, reward, terminated, truncated, info = env.step(token)
    assert truncated and not terminated
    assert reward[2] == 1.0 and info["sequence"] == letters


@pytest.mark.parametrize("special", ["[PAD]", "[BOS]", "[UNK]"])
def test_special_tokens_inside_a_sequence_make_it_invalid(special):
    env = morbench.make("morbench/Motifs-v0")
    task = env.unwrapped
    env.reset()
    env.step(_ids(env, task.motifs[0][:1])[0])
    env.step(task.tokenizer.convert_tokens_to_ids(special))
    *_, info = env.step(task.eos_token_id)
    assert not info["valid"] and special in info["reason"] and "position 1" in info["reason"]
    assert info["objectives"] == {"motif_1": 0.0, "motif_2": 0.0, "motif_3": 0.0}
    assert task.oracle.calls == 0  # never sent to the oracle


def test_empty_sequence_gets_floor_and_reason():
    env = morbench.make("morbench/Motifs-v0")
    env.reset()
    _, reward, terminated, _, info = env.step(env.unwrapped.eos_token_id)
    assert terminated and not reward.any() and info["reason"] == "empty sequence" and not info["valid"]


@pytest.mark.parametrize("action", [-1, 20, 2.0, np.array([1, 2]), "E"])
def test_bad_actions_raise_named_errors(action):
    env = morbench.make("morbench/Motifs-v0")
    env.reset()
    with pytest.raises(InvalidActionError, match="action"):
        env.step(action)


def test_sequence_level_api_scores_batches():
    task = morbench.make("morbench/Motifs-v0").unwrapped
    result = task.score([task.motifs[0], "", "zz", task.motifs[0] + task.motifs[2]])
    assert result.rewards.shape == (4, 3)
    np.testing.assert_allclose(result.rewards[[0, 3]], [[1, 0, 0], [1, 0, 1]])
    assert result.valid.tolist() == [True, False, False, True]
    assert "not in MotifsEnv's vocabulary" in result.reasons[2]
    ids = task.tokenizer([task.motifs[1], task.motifs[1]], add_special_tokens=False)["input_ids"]
    ids[1] = [*ids[1], task.eos_token_id, 5, 6]  # everything after EOS is ignored
    by_ids = task.score_token_ids(ids)
    np.testing.assert_allclose(by_ids.rewards, [[0, 1, 0], [0, 1, 0]])


def test_checker_rejects_rewards_outside_the_declared_space(monkeypatch):
    env = morbench.make("morbench/Motifs-v0")
    env.unwrapped.reward_space = spaces.Box(0.0, 0.5, (3,), np.float32)  # declares tighter bounds than it returns
    monkeypatch.setattr(
        env.unwrapped.oracle, "evaluate", lambda keys, contexts: OracleEvaluation(np.full((len(keys), 3), 0.9))
    )
    with pytest.raises(EnvCheckError, match="outside"):
        check_reward_space(env)


def test_checker_detects_shared_info_objects(monkeypatch):
    env = morbench.make("morbench/Motifs-v0")
    shared = {}
    original_info = type(env.unwrapped.oracle([""])).info

    def sharing_info(self, index):
        info = original_info(self, index)
        info["objectives"] = shared
        return info

    monkeypatch.setattr(type(env.unwrapped.oracle([""])), "info", sharing_info)
    with pytest.raises(EnvCheckError, match="shared"):
        check_info_copies(env)


def test_check_env_runs_all_checks_on_motifs():
    check_env(morbench.make("morbench/Motifs-v0"), seed=3)
