"""stable-baselines3 on the native vector env: ``PPO("MlpPolicy", SB3VecEnv(morbench.make_vec(...), weights=w))``.

SB3 algorithms take a scalar reward and their own ``VecEnv`` type. :class:`SB3VecEnv` adapts a
:class:`~morbench.vector.TokenVectorEnv` (all sub-environments stepped as arrays, one oracle call per step) to
that interface: the reward is the linear scalarization ``rewards @ weights`` and each sub-environment's
``info["vector_reward"]`` keeps the reward vector, as MO-Gymnasium's ``LinearReward`` does. A finished
sub-environment is reset in the same step (SB3's convention), its last observation in
``info["terminal_observation"]``.

``PPO`` given ``morbench.make_vec(...)`` directly fails inside SB3 (it is a Gymnasium ``VectorEnv``, not an SB3
``VecEnv``): wrap it with :class:`SB3VecEnv`. For a single env, ``mo_gymnasium.wrappers.LinearReward`` works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from morbench.errors import ConfigError, MissingDependencyError
from morbench.vector import TokenVectorEnv

try:
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise MissingDependencyError(
        'morbench.sb3 needs stable-baselines3: pip install "morbench[interop]" (or pip install stable-baselines3)'
    ) from exc

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

__all__ = ["SB3VecEnv", "linear_weights"]


def linear_weights(weights: Sequence[float] | np.ndarray, objective_names: Sequence[str]) -> np.ndarray:
    """Check and return scalarization weights: one finite, non-negative weight per objective, summing to > 0."""
    array = np.asarray(weights, dtype=np.float64)
    names = list(objective_names)
    if array.shape != (len(names),):
        raise ConfigError(f"weights must have one entry per objective {names}, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0) or array.sum() <= 0:
        raise ConfigError(f"weights must be finite, non-negative and not all zero, got {array.tolist()}")
    return array


class SB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a morbench native vector env with a linear scalarization of the reward vector.

    Args:
        venv: ``morbench.make_vec(env_id, num_envs=N)`` (any autoreset mode: finished rows are reset here).
        weights: one weight per objective (``venv.objective_names``); the step reward is ``weights @ r``.

    Each step's ``infos[i]`` holds ``vector_reward`` (the objectives of sub-environment ``i``); at the end of
    an episode also ``terminal_observation``, ``TimeLimit.truncated`` and the task's terminal fields
    (``sequence``, ``valid``, ``reason``, ``objectives``).
    """

    def __init__(self, venv: TokenVectorEnv, weights: Sequence[float] | np.ndarray) -> None:
        if not isinstance(venv, TokenVectorEnv):
            raise ConfigError(
                f"SB3VecEnv wraps a morbench native vector env (morbench.make_vec(env_id, num_envs=N)), "
                f"got {type(venv).__name__}"
            )
        self.venv = venv
        self.weights = linear_weights(weights, venv.objective_names)
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        """Reset every sub-environment from the first seed SB3 set (one draw for all rows); the observations."""
        seed = self._seeds[0]  # SB3 seeds env i with seed + i; the native env draws all rows from one seed
        observation, _ = self.venv.reset(seed=seed, options=self._options[0] or None)
        self._reset_seeds()
        self._reset_options()
        return observation

    def step_async(self, actions: np.ndarray) -> None:
        """Store one token id per sub-environment for :meth:`step_wait`."""
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every sub-environment: scalarized rewards, done flags and infos; finished rows are reset here."""
        observation, rewards, terminated, truncated, info = self.venv.step(self._actions)
        done = terminated | truncated
        scalar = (rewards.astype(np.float64) @ self.weights).astype(np.float32)
        infos: list[dict[str, Any]] = [{"vector_reward": rewards[i].copy()} for i in range(self.num_envs)]
        if done.any():
            for i in np.flatnonzero(done):
                infos[i].update(_row_info(info, i))
                infos[i]["terminal_observation"] = _row(observation, i)
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            observation, _ = self.venv.reset(options={"reset_mask": done})  # SB3 resets in the same step
        return observation, scalar, done, infos

    def close(self) -> None:
        """Close the wrapped vector env."""
        self.venv.close()

    # -- SB3's sub-environment access: the native env has one shared task, so every index sees the same one --
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The shared task's attribute, once per index."""
        return [getattr(self.venv, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set the attribute on the native vector env (shared by every index)."""
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call the native vector env's method once per index."""
        method = getattr(self.venv, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Always False: the native env has no Gymnasium wrappers."""
        return [False for _ in self._get_indices(indices)]


def _row(observation: Any, i: int | np.integer) -> Any:
    if isinstance(observation, dict):
        return {key: value[i].copy() for key, value in observation.items()}
    return observation[i].copy()


def _row_info(info: dict[str, Any], i: int | np.integer) -> dict[str, Any]:
    """Sub-environment ``i``'s entries of a Gymnasium vector info dict (``_key`` masks say which rows are set)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_") or not info.get(f"_{key}", np.zeros(i + 1, dtype=bool))[i]:
            continue
        out[key] = _row_info(value, i) if isinstance(value, dict) else value[i]
    return out
