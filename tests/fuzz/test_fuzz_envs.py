"""Fuzzing the env API: ``step`` with random (also out-of-vocabulary and ill-typed) actions, ``score`` with random
text, and the native vector env."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from hypothesis import given
from hypothesis import strategies as st

from morbench.errors import MorbenchError
from morbench.vector import TokenVectorEnv

from .conftest import ENV_IDS, check_score_result, fuzz, task

SLOW_SCORING = {"morbench/Summarize-tiny-v0"}


def _action(vocab_size: int):
    """Mostly in-vocabulary ids, sometimes out of range, negative, huge, or not an integer at all."""
    return st.one_of(
        st.integers(0, vocab_size - 1),
        st.integers(0, vocab_size - 1).map(np.int64),
        st.integers(-(2**70), 2**70),
        st.sampled_from([vocab_size, -1, 2**31, 2**63, 2**64]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([None, "3", b"\x01", [1], (2,), np.array([1, 2]), np.float32(1.0), True, object()]),
    )


def _scalar_action(vocab_size: int):
    """Like ``_action`` but never a sequence (a ragged batch has its own test below)."""
    return st.one_of(
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([None, "3", True, np.float32(1.0), np.int64(vocab_size)]),
    )


@pytest.mark.parametrize("env_id", ENV_IDS)
@fuzz(10)
@given(data=st.data())
def test_step_with_random_actions_raises_only_morbench_errors(env_id, data):
    env = task(env_id)
    env.reset(seed=data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for _ in range(env.max_length + 2):
        action = data.draw(_action(env.vocab_size), label="action")
        try:
            _, reward, terminated, truncated, info = env.step(action)
        except MorbenchError:
            continue  # InvalidActionError / StepAfterDoneError: the episode is unchanged, go on
        reward = np.asarray(reward, dtype=np.float64)
        assert reward.shape == (env.reward_dim,) and np.all(np.isfinite(reward))
        assert np.all(reward >= env.reward_space.low - 1e-6) and np.all(reward <= env.reward_space.high + 1e-6)
        if terminated or truncated:
            if not info.get("valid", True):
                assert np.all(reward == np.asarray(env.oracle.floor, dtype=np.float64))
            break


_TEXT = st.text(max_size=60)
_SURROGATES = st.text(st.characters(categories=("Cs", "Lu")), min_size=1, max_size=6)  # "\ud800": JSON can carry it


def _sequence(env_id: str):
    """Random text, random runs of the task's own tokens, and random bytes decoded as Latin-1."""
    env = task(env_id)
    vocabulary = [t for t in env.tokenizer.convert_ids_to_tokens(list(range(min(env.vocab_size, 400))))]
    return st.one_of(
        _TEXT,
        _SURROGATES,
        st.lists(st.sampled_from(vocabulary), max_size=env.max_length + 3).map("".join),
        st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
        st.text(alphabet="CNOSFclnos()=#[]@+-123456789ACGT", max_size=60),
    )


@pytest.mark.parametrize("env_id", [e for e in ENV_IDS if e not in SLOW_SCORING])
@fuzz(15)
@given(data=st.data())
def test_score_of_random_text_stays_in_the_reward_space(env_id, data):
    _score_random_text(env_id, data)


@pytest.mark.parametrize("env_id", sorted(SLOW_SCORING))
@fuzz(4)  # real language models score every valid summary: a few cases here, many in long mode
@given(data=st.data())
def test_score_of_random_text_stays_in_the_reward_space_text_tasks(env_id, data):
    _score_random_text(env_id, data)


def _score_random_text(env_id, data):
    env = task(env_id)
    sequences = data.draw(st.lists(_sequence(env_id), min_size=1, max_size=8), label="sequences")
    contexts = None
    if env.contexts is not None:
        contexts = [env.contexts[data.draw(st.integers(0, len(env.contexts) - 1))] for _ in sequences]
    try:
        result = env.score(sequences, contexts)
    except MorbenchError:
        return
    check_score_result(env, result, len(sequences))


@pytest.mark.parametrize("env_id", ENV_IDS[:2])
@fuzz(10)
@given(data=st.data())
def test_score_of_non_strings_is_invalid_or_a_morbench_error(env_id, data):
    env = task(env_id)
    junk = data.draw(
        st.lists(st.one_of(st.none(), st.integers(), st.binary(max_size=8), st.floats(), _TEXT), min_size=1),
        label="junk",
    )
    try:
        result = env.score(junk)
    except MorbenchError:
        return
    check_score_result(env, result, len(junk))
    assert not any(valid for item, valid in zip(junk, result.valid, strict=True) if not isinstance(item, str))


@pytest.mark.parametrize("env_id", ENV_IDS[:1])
def test_score_of_a_lone_surrogate_is_invalid_not_a_crash(env_id):
    env = task(env_id)
    result = env.score(["A\ud800B"])  # JSON can carry "\ud800": evaluation files and submissions reach score()
    check_score_result(env, result, 1)
    assert not result.valid[0]


@pytest.mark.parametrize("env_id", ENV_IDS[:2])
@fuzz(10)
@given(data=st.data())
def test_vector_env_with_random_action_batches_raises_only_morbench_errors(env_id, data):
    env = task(env_id)
    num_envs = data.draw(st.integers(1, 4), label="num_envs")
    mode = data.draw(st.sampled_from([AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED]), label="mode")
    vector = TokenVectorEnv(env, num_envs, mode)
    vector.reset(seed=data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for _ in range(env.max_length + 3):
        batch = data.draw(
            st.one_of(
                st.lists(st.integers(0, env.vocab_size - 1), min_size=num_envs, max_size=num_envs).map(np.array),
                st.lists(st.integers(-5, env.vocab_size + 5), min_size=0, max_size=num_envs + 1).map(np.array),
                st.lists(_scalar_action(env.vocab_size), min_size=num_envs, max_size=num_envs),
                st.lists(_action(env.vocab_size), min_size=num_envs, max_size=num_envs),
            ),
            label="actions",
        )
        try:
            _, rewards, terminated, truncated, _ = vector.step(batch)
        except MorbenchError:
            continue
        rewards = np.asarray(rewards, dtype=np.float64)
        assert rewards.shape == (num_envs, env.reward_dim) and np.all(np.isfinite(rewards))
        assert np.all(rewards >= env.reward_space.low - 1e-6) and np.all(rewards <= env.reward_space.high + 1e-6)
        if mode == AutoresetMode.DISABLED and np.all(vector.finished):
            break


def test_vector_env_with_a_ragged_action_batch_raises_invalid_action():
    from morbench.errors import InvalidActionError

    vector = TokenVectorEnv(task(ENV_IDS[0]), 4, AutoresetMode.NEXT_STEP)
    vector.reset(seed=0)
    with pytest.raises(InvalidActionError):
        vector.step([0, 0, 0, [1]])
