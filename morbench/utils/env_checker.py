"""``check_env``: small named checks of the vector-reward token-env contract (Gymnasium's checker wants scalars)."""

from __future__ import annotations

import pickle
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode

from morbench.core import Oracle, TokenEnv
from morbench.errors import InvalidActionError, MorbenchError, StepAfterDoneError
from morbench.preferences import validate_preference

__all__ = [
    "EnvCheckError",
    "check_bad_actions",
    "check_contract_attributes",
    "check_env",
    "check_info_copies",
    "check_pickle",
    "check_reward_space",
    "check_seed_determinism",
    "check_sequence_api",
    "check_vector_env",
]

TERMINAL_INFO_KEYS = ("sequence", "valid", "reason", "objectives", "properties", "length")


class EnvCheckError(MorbenchError, AssertionError):
    """An environment violates the morbench contract; the message says what was expected and what was found."""


def _require(condition: object, message: str) -> None:
    if not condition:
        raise EnvCheckError(message)


def _task(env: gym.Env) -> TokenEnv:
    """``env.unwrapped`` as the :class:`TokenEnv` it must be (:func:`check_contract_attributes` checks that it is)."""
    return cast(TokenEnv, env.unwrapped)


def _actions(task: TokenEnv, rng: np.random.Generator, eos_probability: float = 0.15) -> np.ndarray:
    """A random action sequence long enough for one episode, ending early with EOS now and then."""
    actions = rng.integers(0, task.vocab_size, size=task.max_length)
    actions[rng.random(task.max_length) < eos_probability] = task.eos_token_id
    return actions


def _rollout(env: gym.Env, actions: np.ndarray, seed: int, options: dict | None = None) -> list[tuple[Any, ...]]:
    obs, info = env.reset(seed=seed, options=options)
    transitions: list[tuple[Any, ...]] = [(obs, info)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(int(action))
        transitions.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return transitions


def check_contract_attributes(env: gym.Env, seed: int = 0) -> None:
    """``env.unwrapped`` exposes the reward space, names, tokenizer, oracle, grid and reference point."""
    task = _task(env)
    _require(isinstance(task, TokenEnv), f"env.unwrapped must be a morbench TokenEnv, got {type(task).__name__}")
    k = task.reward_dim
    rs = task.reward_space
    _require(isinstance(rs, spaces.Box), f"reward_space must be a Box, got {type(rs).__name__}")
    _require(rs.shape == (k,), f"reward_space shape: expected ({k},), got {rs.shape}")
    _require(rs.dtype == np.float32, f"reward_space dtype: expected float32, got {rs.dtype}")
    _require(bool(np.all(np.isfinite(rs.low)) and np.all(np.isfinite(rs.high))), "reward_space bounds must be finite")
    _require(bool(np.all(rs.low <= rs.high)), f"reward_space low {rs.low} must be <= high {rs.high}")
    names = task.objective_names
    _require(
        isinstance(names, tuple)
        and len(names) == k
        and len(set(names)) == k
        and all(isinstance(n, str) for n in names),
        f"objective_names: expected {k} unique strings, got {names!r}",
    )
    _require(isinstance(task.oracle, Oracle), f"oracle must be a morbench Oracle, got {type(task.oracle).__name__}")
    _require(tuple(task.oracle.objective_names) == names, "oracle.objective_names must equal env.objective_names")
    if task.judge is not None:
        _require(tuple(task.judge.objective_names) == names, "judge.objective_names must equal env.objective_names")
    from transformers import PreTrainedTokenizerFast

    _require(
        isinstance(task.tokenizer, PreTrainedTokenizerFast),
        f"tokenizer must be a transformers PreTrainedTokenizerFast, got {type(task.tokenizer).__name__}",
    )
    _require(
        env.action_space == spaces.Discrete(len(task.tokenizer)),
        f"action_space: expected Discrete({len(task.tokenizer)}), got {env.action_space}",
    )
    grid = np.asarray(task.preference_grid)
    _require(grid.ndim == 2 and grid.shape[1] == k and len(grid) >= 1, f"preference_grid shape {grid.shape}")
    for w in grid:
        validate_preference(w, k)
    _require(np.asarray(task.reference_point).shape == (k,), "reference_point must have one entry per objective")
    _require(
        bool(np.all(task.reference_point <= rs.high)),
        f"reference_point {task.reference_point} must not exceed the reward upper bounds {rs.high}",
    )
    if task.prior_path is not None:
        _require(task.prior_path.is_dir(), f"prior_path {task.prior_path} is not a directory")


def check_reward_space(env: gym.Env, seed: int = 0, episodes: int = 8) -> None:
    """Rewards are float32 ``(K,)``, zero before the end, inside ``reward_space``; terminal info is complete."""
    task = _task(env)
    rng = np.random.default_rng(seed)
    for episode in range(episodes):
        transitions = _rollout(env, _actions(task, rng), seed + episode)
        obs, _ = transitions[0]
        _require(env.observation_space.contains(obs), f"reset observation {obs!r} is outside observation_space")
        for t, (obs, reward, terminated, truncated, info) in enumerate(transitions[1:], 1):
            _require(isinstance(reward, np.ndarray), f"step {t}: reward must be an ndarray, got {type(reward)}")
            _require(
                reward.dtype == np.float32 and reward.shape == (task.reward_dim,),
                f"step {t}: reward must be float32 ({task.reward_dim},), got {reward.dtype} {reward.shape}",
            )
            _require(env.observation_space.contains(obs), f"step {t}: observation outside observation_space")
            _require(isinstance(terminated, bool) and isinstance(truncated, bool), "terminated/truncated must be bool")
            if not (terminated or truncated):
                _require(not reward.any(), f"step {t}: reward before the episode ended must be zero, got {reward}")
                continue
            _require(task.reward_space.contains(reward), f"terminal reward {reward} outside {task.reward_space}")
            missing = [key for key in TERMINAL_INFO_KEYS if key not in info]
            _require(not missing, f"terminal info lacks {missing}")
            _require(isinstance(info["sequence"], str), "info['sequence'] must be the decoded string")
            _require(tuple(info["objectives"]) == task.objective_names, "info['objectives'] must be keyed by name")
            if not info["valid"]:
                _require(
                    isinstance(info["reason"], str) and info["reason"],
                    "an invalid sequence must carry a reason in info['reason']",
                )
                _require(
                    np.array_equal(reward, task.oracle.floor),
                    f"invalid sequence reward: expected the floor {task.oracle.floor}, got {reward}",
                )
            _require(len(transitions) - 1 <= task.max_length, f"episode longer than max_length={task.max_length}")


def check_seed_determinism(env: gym.Env, seed: int = 0) -> None:
    """Two rollouts with the same seed and actions return identical observations, rewards and infos."""
    task = _task(env)
    actions = _actions(task, np.random.default_rng(seed))
    first = _rollout(env, actions, seed)
    second = _rollout(env, actions, seed)
    _require(len(first) == len(second), "same seed and actions gave episodes of different lengths")
    for t, (a, b) in enumerate(zip(first, second, strict=True)):
        _require(data_equivalence(a, b), f"step {t}: same seed and actions gave different results:\n{a}\n{b}")


def check_info_copies(env: gym.Env, seed: int = 0) -> None:
    """Returned observations, rewards and info objects are fresh: mutating them cannot corrupt the env."""
    task = _task(env)
    rng = np.random.default_rng(seed)
    terminal_infos: list[dict[str, Any]] = []
    for episode in range(2):
        obs, _ = env.reset(seed=seed + episode)
        before = np.array(obs["tokens"] if isinstance(obs, dict) else obs, copy=True)
        (obs["tokens"] if isinstance(obs, dict) else obs)[...] = -1  # vandalise the returned observation
        for action in _actions(task, rng):
            obs, reward, terminated, truncated, info = env.step(int(action))
            tokens = obs["tokens"] if isinstance(obs, dict) else obs
            _require(tokens.min() >= 0, "the env reused an observation buffer that the caller modified")
            if terminated or truncated:
                terminal_infos.append(info)
                cast(np.ndarray, reward)[...] = 123.0  # vandalise the returned reward
                break
        _ = before
    a, b = terminal_infos
    _require(a is not b, "two steps returned the same info object")
    for key in ("objectives", "properties"):
        _require(a[key] is not b[key], f"info[{key!r}] is shared between steps")


def check_pickle(env: gym.Env, seed: int = 0) -> None:
    """The unwrapped env survives a pickle round trip and then behaves identically."""
    task = _task(env)
    clone = pickle.loads(pickle.dumps(task))
    actions = _actions(task, np.random.default_rng(seed + 1))
    _require(
        data_equivalence(_rollout(task, actions, seed), _rollout(clone, actions, seed)),
        "the unpickled env behaves differently from the original",
    )


def check_sequence_api(env: gym.Env, seed: int = 0, episodes: int = 4) -> None:
    """``env.unwrapped.score`` of the decoded sequences reproduces the terminal rewards."""
    task = _task(env)
    rng = np.random.default_rng(seed + 2)
    for episode in range(episodes):
        transitions = _rollout(env, _actions(task, rng), seed + episode)
        _, reward, _, _, info = transitions[-1]
        if not info["valid"]:
            continue
        context = None
        if task.contexts is not None:
            context = next(c for c in task.contexts if c.key == info["context"])
        result = task.score([info["sequence"]], [context])
        _require(result.rewards.shape == (1, task.reward_dim), f"score() returned shape {result.rewards.shape}")
        _require(
            np.allclose(result.rewards[0], reward, atol=1e-6),
            f"score({info['sequence']!r}) = {result.rewards[0]} but the episode's reward was {reward}",
        )


def check_bad_actions(env: gym.Env, seed: int = 0) -> None:
    """Out-of-vocabulary or non-integer actions raise InvalidActionError; stepping a finished episode raises."""
    task = _task(env)
    task.reset(seed=seed)
    for bad in (-1, task.vocab_size, 1.5, "A"):
        try:
            task.step(bad)
        except InvalidActionError as exc:
            _require(str(bad) in str(exc), f"the InvalidActionError for {bad!r} must name the value: {exc}")
        else:
            raise EnvCheckError(f"step({bad!r}) did not raise InvalidActionError")
    task.step(task.eos_token_id)
    try:
        task.step(task.eos_token_id)
    except StepAfterDoneError:
        pass
    else:
        raise EnvCheckError("step() after the episode ended did not raise StepAfterDoneError")


def check_vector_env(env: gym.Env, seed: int = 0, num_envs: int = 3) -> None:
    """The native vector env reproduces single-env rewards for the same actions (one oracle call per step)."""
    from morbench.vector import TokenVectorEnv

    task = _task(env)
    venv = TokenVectorEnv(task, num_envs=num_envs, autoreset_mode=AutoresetMode.DISABLED)
    rng = np.random.default_rng(seed + 3)
    plans = np.stack([_actions(task, rng) for _ in range(num_envs)])
    venv.reset(seed=seed)
    contexts = venv.current_contexts
    totals = np.zeros((num_envs, task.reward_dim), dtype=np.float32)
    for t in range(task.max_length):
        _, rewards, _, _, _ = venv.step(plans[:, t])
        _require(
            rewards.shape == (num_envs, task.reward_dim) and rewards.dtype == np.float32,
            f"vector rewards must be float32 ({num_envs}, {task.reward_dim}), got {rewards.dtype} {rewards.shape}",
        )
        totals += rewards
        if venv.finished.all():
            break
    _require(bool(venv.finished.all()), "vector env did not finish every sub-env within max_length steps")
    for i in range(num_envs):
        options = None
        drawn = contexts[i]
        if drawn is not None:
            options = {"context_index": next(j for j, c in enumerate(task.contexts or ()) if c.key == drawn.key)}
        single = _rollout(task, plans[i], seed, options)
        _require(
            np.allclose(single[-1][1], totals[i], atol=1e-6),
            f"sub-env {i}: vector reward {totals[i]} differs from single-env reward {single[-1][1]}",
        )


ALL_CHECKS = (
    check_contract_attributes,
    check_reward_space,
    check_seed_determinism,
    check_info_copies,
    check_pickle,
    check_sequence_api,
    check_bad_actions,
    check_vector_env,
)


def check_env(env: gym.Env, seed: int = 0, skip: tuple[str, ...] = ()) -> None:
    """Run every named check (or all but ``skip``) on ``env``; raise :class:`EnvCheckError` on the first failure."""
    for check in ALL_CHECKS:
        if check.__name__ not in skip:
            check(env, seed=seed)
