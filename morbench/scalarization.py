"""Named scalarizations of a vector reward, and a Gymnasium wrapper that trains single-objective agents with one.

A scalarization maps reward vectors ``(..., K)`` to scalars ``(...)``. The two the baselines use:

* :class:`ObjectiveColumn` ``(k)``: objective ``k`` alone (a Rewarded Soups / IterativeRS expert);
* :class:`Linear` ``(w)``: the weighted sum ``w . r`` (MORLHF at preference ``w``).

Both are frozen dataclasses that serialise with :meth:`to_dict` and come back with :func:`scalarization_from_dict`,
so a run records exactly what each policy was trained on. :class:`ScalarizedReward` applies one to a morbench env
for any single-objective library (SB3, CleanRL-style loops), keeping the vector in ``info["vector_reward"]``
(the MO-Gymnasium ``LinearReward`` convention).

>>> import numpy as np
>>> rewards = np.array([[0.2, 0.8], [0.6, 0.4]])
>>> ObjectiveColumn(1)(rewards).tolist()
[0.8, 0.4]
>>> Linear((0.5, 0.5))(rewards).tolist()
[0.5, 0.5]
>>> scalarization_from_dict(Linear((0.25, 0.75)).to_dict())
Linear(weights=(0.25, 0.75))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, SupportsFloat

import gymnasium as gym
import numpy as np

from morbench.errors import ConfigError

__all__ = ["Linear", "ObjectiveColumn", "Scalarization", "ScalarizedReward", "scalarization_from_dict"]


class Scalarization(Protocol):
    """What a policy is trained on: reward vectors to scalars, and a record to rebuild it from."""

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """The scalars ``(...)`` of reward vectors ``(..., K)``."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record that :func:`scalarization_from_dict` turns back into this scalarization."""


@dataclasses.dataclass(frozen=True)
class ObjectiveColumn:
    """Objective ``index`` of the reward vector, alone."""

    index: int

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or isinstance(self.index, bool) or self.index < 0:
            raise ConfigError(f"ObjectiveColumn index {self.index!r} must be a non-negative integer")

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """Column ``index`` of reward vectors ``(..., K)``."""
        return np.asarray(rewards)[..., self.index]

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "objective", "index": k}``."""
        return {"kind": "objective", "index": self.index}


@dataclasses.dataclass(frozen=True)
class Linear:
    """The weighted sum ``weights . r`` (weights kept as given: float64, not renormalised)."""

    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        weights = tuple(float(w) for w in np.asarray(self.weights, dtype=np.float64).reshape(-1))
        if not weights or not all(np.isfinite(weights)):
            raise ConfigError(f"Linear weights {self.weights!r} must be a non-empty vector of finite numbers")
        object.__setattr__(self, "weights", weights)

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """``rewards @ weights`` for reward vectors ``(..., K)``, in float64."""
        return np.asarray(rewards) @ np.asarray(self.weights, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "linear", "weights": [...]}``."""
        return {"kind": "linear", "weights": list(self.weights)}


def scalarization_from_dict(record: dict[str, Any]) -> Scalarization:
    """The scalarization a :meth:`to_dict` record describes."""
    kind = record.get("kind") if isinstance(record, dict) else None
    if kind == "objective":
        return ObjectiveColumn(record.get("index"))  # type: ignore[arg-type]
    if kind == "linear":
        return Linear(tuple(record.get("weights") or ()))
    raise ConfigError(f"unknown scalarization record {record!r}: expected kind 'objective' or 'linear'")


class ScalarizedReward(gym.Wrapper):
    """A morbench env whose reward is ``scalarization(vector reward)``; the vector stays in ``info``.

    ``info["vector_reward"]`` holds the env's reward vector at every step (zeros before the episode ends, as the
    token-level contract gives them), so multi-objective metrics can still be computed from a scalar agent's run.
    """

    def __init__(self, env: gym.Env, scalarization: Scalarization) -> None:
        super().__init__(env)
        dim = getattr(env.unwrapped, "reward_dim", None)
        if dim is None:
            raise ConfigError(f"{env!r} has no reward_dim: ScalarizedReward wraps multi-objective morbench envs")
        self.scalarization = scalarization
        self.reward_dim = int(dim)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; the reward is the scalarized vector, which ``info["vector_reward"]`` keeps."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        vector = np.asarray(reward, dtype=np.float32)
        return observation, float(self.scalarization(vector)), terminated, truncated, {**info, "vector_reward": vector}
