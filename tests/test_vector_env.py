"""The native vector env: array stepping, one oracle call per step, autoreset modes, named errors."""

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import morbench
from morbench.errors import ConfigError, InvalidActionError, OracleBudgetExhausted, StepAfterDoneError


def _letters(venv, text):
    return np.array([venv.tokenizer.convert_tokens_to_ids(c) for c in text])


def test_shapes_spaces_and_autoreset_metadata():
    venv = morbench.make_vec("morbench/Motifs-v0", num_envs=5)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = venv.reset(seed=0)
    assert obs.shape == (5, venv.max_length) and (obs == venv.pad_token_id).all()
    assert venv.action_space.shape == (5,)
    obs, rewards, terminated, truncated, info = venv.step(np.full(5, 4))
    assert rewards.shape == (5, 3) and rewards.dtype == np.float32
    assert terminated.dtype == bool and not terminated.any() and info == {}


def test_one_oracle_call_per_step_for_all_finished_sequences(monkeypatch):
    venv = morbench.make_vec("morbench/Motifs-v0", num_envs=4, autoreset_mode="Disabled")
    batches = []
    original = venv.oracle.evaluate
    monkeypatch.setattr(venv.oracle, "evaluate", lambda keys, ctx: batches.append(keys) or original(keys, ctx))
    venv.reset(seed=0)
    motif = _letters(venv, venv.env.motifs[0])
    eos = venv.eos_token_id
    venv.step(np.array([motif[0]] * 4))
    _, rewards, terminated, _, info = venv.step(np.array([eos, motif[1], eos, motif[1]]))
    assert terminated.tolist() == [True, False, True, False]
    assert len(batches) == 1  # rows 0 and 2 share the canonical key: one unique sequence scored
    np.testing.assert_allclose(rewards[:, 0], [0.25, 0, 0.25, 0])
    assert info["_sequence"].tolist() == [True, False, True, False]
    assert info["sequence"][0] == venv.env.motifs[0][0] and info["valid"][2]
    assert info["objectives"]["motif_1"][0] == pytest.approx(0.25) and info["objectives"]["_motif_1"][0]
    # DISABLED: finished rows ignore actions and return zeros until reset
    _, rewards, terminated, truncated, _ = venv.step(np.array([motif[0], eos, motif[0], eos]))
    assert terminated.tolist() == [False, True, False, True] and not rewards[[0, 2]].any()
    assert venv.finished.all()
    obs, _ = venv.reset(options={"reset_mask": np.array([True, False, False, False])})
    assert venv.finished.tolist() == [False, True, True, True] and (obs[0] == venv.pad_token_id).all()


def test_next_step_autoreset_ignores_the_action_after_an_episode_end():
    venv = morbench.make_vec("morbench/Motifs-v0", num_envs=2)
    venv.reset(seed=1)
    eos = venv.eos_token_id
    a = _letters(venv, "A")[0]
    _, _, terminated, _, _ = venv.step(np.array([eos, a]))
    assert terminated.tolist() == [True, False]
    obs, rewards, terminated, truncated, _ = venv.step(np.array([a, a]))
    assert (obs[0] == venv.pad_token_id).all()  # row 0 was reset, its action ignored
    assert obs[1, :2].tolist() == [a, a]
    assert not rewards.any() and not terminated.any()


def test_vector_rollout_matches_single_env():
    venv = morbench.make_vec("morbench/Motifs-2obj-v0", num_envs=16, autoreset_mode="Disabled")
    env = morbench.make("morbench/Motifs-2obj-v0")
    rng = np.random.default_rng(0)
    plans = rng.integers(3, venv.vocab_size, size=(16, venv.max_length))
    plans[rng.random(plans.shape) < 0.2] = venv.eos_token_id
    venv.reset(seed=0)
    total = np.zeros((16, 2), np.float32)
    for t in range(venv.max_length):
        total += venv.step(plans[:, t])[1]
    for i in range(16):
        env.reset()
        for action in plans[i]:
            _, reward, terminated, truncated, _ = env.step(int(action))
            if terminated or truncated:
                break
        np.testing.assert_array_equal(reward, total[i])


def test_bad_actions_and_order():
    venv = morbench.make_vec("morbench/Motifs-v0", num_envs=3)
    with pytest.raises(StepAfterDoneError, match="reset"):
        venv.step(np.zeros(3, dtype=np.int64))
    venv.reset()
    with pytest.raises(InvalidActionError, match=r"\[99\] at sub-environments \[1\]"):
        venv.step(np.array([4, 99, 4]))
    with pytest.raises(InvalidActionError, match="shape"):
        venv.step(np.array([4, 4]))
    with pytest.raises(InvalidActionError, match="integer"):
        venv.step(np.array([4.0, 4.0, 4.0]))
    with pytest.raises(ConfigError):
        morbench.make_vec("morbench/Motifs-v0", num_envs=2, autoreset_mode="SameStep")


def test_shared_oracle_counts_calls_across_sub_envs():
    venv = morbench.make_vec("morbench/Motifs-v0", num_envs=8, autoreset_mode="Disabled", oracle_budget=100)
    venv.reset()
    letter = _letters(venv, venv.env.motifs[0][:1])
    venv.step(np.repeat(letter, 8))
    venv.step(np.full(8, venv.eos_token_id))
    assert venv.oracle.calls == 1 and venv.oracle.requests == 8


@pytest.mark.parametrize("mode", ["NextStep", "Disabled"])
def test_budget_error_inside_step_leaves_the_vector_env_unchanged(mode):
    venv = morbench.make_vec("morbench/Motifs-v0", num_envs=3, autoreset_mode=mode, oracle_budget=1)
    venv.reset(seed=0)
    a, b = _letters(venv, "AB")
    eos = venv.eos_token_id
    venv.step(np.array([a, b, a]))
    _, rewards, terminated, _, _ = venv.step(np.array([eos, a, a]))  # row 0 ends: "A", the one allowed call
    assert terminated.tolist() == [True, False, False] and venv.oracle.calls == 1
    if mode == "Disabled":
        venv.reset(options={"reset_mask": np.array([True, False, False])})
    else:
        venv.step(np.array([a, a, a]))  # row 0 is reset by this step; rows 1 and 2 grow to "BAA", "AAA"
    before = venv._observation(), venv.finished, venv._lengths.copy()
    with pytest.raises(OracleBudgetExhausted):
        venv.step(np.array([a, eos, eos]))  # rows 1 and 2 would end as new sequences: over the budget
    after = venv._observation(), venv.finished, venv._lengths.copy()
    np.testing.assert_array_equal(after[0], before[0])  # no token appended
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[2], before[2])
    with pytest.raises(OracleBudgetExhausted):  # the same step fails the same, clear way (no IndexError)
        venv.step(np.array([a, eos, eos]))
    obs, _, terminated, truncated, _ = venv.step(np.array([a, a, a]))  # a step that scores nothing works
    assert not (terminated | truncated).any()
    np.testing.assert_array_equal(obs[1:, : before[2][1] + 1] != venv.pad_token_id, True)


def test_budget_error_inside_single_env_step_leaves_the_episode_unchanged():
    env = morbench.make("morbench/Motifs-v0", oracle_budget=0)
    task = env.unwrapped
    env.reset(seed=0)
    a = _letters(task, "A")[0]
    env.step(a)
    with pytest.raises(OracleBudgetExhausted):
        env.step(task.eos_token_id)
    assert task._length == 1 and not task._done  # the EOS was not appended, the episode is not over
    obs, *_ = env.step(a)  # the episode continues normally
    assert obs[:2].tolist() == [a, a]


def test_a_ragged_action_batch_raises_invalid_action():
    venv = morbench.make_vec("morbench/Motifs-v0", num_envs=3)
    venv.reset(seed=0)
    with pytest.raises(InvalidActionError, match="integer array of shape"):
        venv.step([4, 4, [5]])
    venv.env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="not an integer token id"):
        venv.env.step([4, [5]])


def test_deferred_scoring_scores_the_whole_batch_in_one_call_with_the_per_step_results(monkeypatch):
    # issue 17: a sampler driving the env called the oracle on every step where some rows ended (QM9: ~11 of ~21)
    eager = morbench.make_vec("morbench/Motifs-v0", num_envs=4, autoreset_mode="Disabled")
    deferred = morbench.make_vec("morbench/Motifs-v0", num_envs=4, autoreset_mode="Disabled", defer_scoring=True)
    calls = []
    original = deferred.oracle.evaluate
    monkeypatch.setattr(deferred.oracle, "evaluate", lambda keys, ctx: calls.append(keys) or original(keys, ctx))
    a, b = _letters(eager, "AB")
    eos = eager.eos_token_id
    plan = [[a, b, a, b], [eos, a, b, a], [a, eos, a, eos], [a, a, eos, a], [eos, eos, eos, eos]]
    eager_rewards = np.zeros((4, 3), dtype=np.float32)
    eager.reset(seed=0)
    deferred.reset(seed=0)
    for actions in plan:
        _, rewards, terminated, truncated, info = eager.step(np.array(actions))
        eager_rewards += rewards
        _, rewards, d_terminated, d_truncated, d_info = deferred.step(np.array(actions))
        assert (d_terminated == terminated).all() and (d_truncated == truncated).all()
        assert not rewards.any() and d_info == {} and calls == []
    with pytest.raises(ConfigError, match=r"\[0, 1, 2, 3\] finished but were never scored"):
        deferred.reset()  # the unscored rows are not silently dropped
    rewards, info = deferred.score_finished()
    assert len(calls) == 1
    np.testing.assert_array_equal(rewards, eager_rewards)
    assert info["sequence"].tolist() == ["A", "BA", "ABA", "BA"]
    assert info["_valid"].all() and info["length"].tolist() == [2, 3, 4, 3]
    assert deferred.score_finished()[1] == {}  # nothing left to score
    deferred.reset()


def test_deferred_scoring_needs_disabled_autoreset():
    with pytest.raises(ConfigError, match="defer_scoring=True needs autoreset_mode=DISABLED"):
        morbench.make_vec("morbench/Motifs-v0", num_envs=2, defer_scoring=True)
