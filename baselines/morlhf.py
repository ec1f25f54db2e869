"""MORLHF: PPO on the linear scalarization ``w . r`` of the reward vector, one policy per trained preference.

The budget is split across a documented set of trained preferences (``RunContext.train_each``: each policy gets
an equal share of what is left when it starts); every other preference is served by the nearest trained one
(L1 distance; ties go to the first in training order). Trained sets (``preferences``):

* ``"anchors"`` (the headline ``morlhf``): the K one-hot corners and the uniform point (K + 1 policies);
* ``"grid"``: every preference of the task's grid (one policy per grid point, each with 1/|grid| of the budget);
* ``"uniform"``: the uniform point only. This is the single-preference *reference* row, registered as its own
  method ``morlhf_uniform`` (:class:`MORLHFUniformConfig`) so that results never show it as ``morlhf``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from morbench.baselines.common import PPOMethodConfig, iterations_per, save_policies
from morbench.baselines.training import Learner, RunContext, Trained
from morbench.core import TokenEnv
from morbench.errors import ConfigError
from morbench.preferences import preference_key, uniform_preference
from morbench.scalarization import Linear
from morbench.seeding import policy_seed
from morbench.serving import nearest_policy

__all__ = ["MORLHFConfig", "MORLHFUniformConfig", "train", "trained_preferences"]

PREFERENCE_SETS = ("anchors", "grid")


@dataclasses.dataclass
class MORLHFConfig(PPOMethodConfig):
    """MORLHF's options: those of every PPO method (``iterations`` per trained preference) and the trained set."""

    iterations: int = dataclasses.field(
        default=60,
        metadata={"help": "at most this many PPO iterations per trained preference (a budget may stop it earlier)"},
    )
    preferences: str = dataclasses.field(
        default="anchors",
        metadata={
            "help": "trained preferences: 'anchors' (K one-hot + uniform) or 'grid' (every grid point); "
            "the budget is split across them"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preferences not in self._allowed():
            raise ConfigError(
                f"{type(self).__name__}.preferences must be one of {list(self._allowed())}, got {self.preferences!r}"
                + (
                    "; the uniform-only reference is the method 'morlhf_uniform'"
                    if self.preferences == "uniform"
                    else ""
                )
            )

    def _allowed(self) -> tuple[str, ...]:
        return PREFERENCE_SETS


@dataclasses.dataclass
class MORLHFUniformConfig(MORLHFConfig):
    """The single-preference reference (method ``morlhf_uniform``): the whole budget on the uniform ``w``."""

    preferences: str = dataclasses.field(default="uniform", metadata={"help": "always 'uniform' for this method"})

    def _allowed(self) -> tuple[str, ...]:
        return ("uniform",)


def trained_preferences(task: TokenEnv, preferences: str) -> np.ndarray:
    """The preferences MORLHF trains a policy for, in training order."""
    if preferences == "uniform":
        return uniform_preference(task.reward_dim)[None, :]
    if preferences == "anchors":
        return np.vstack([np.eye(task.reward_dim), uniform_preference(task.reward_dim)[None, :]])
    return np.asarray(task.preference_grid, dtype=np.float64)


def train(run: RunContext, config: MORLHFConfig) -> Trained:
    """Train one policy per preference of :func:`trained_preferences` on ``w . r``, one after the other.

    Returns the policy that serves each preference by the nearest (L1) trained one, and the run's outputs (the
    saved models, the trained preferences, the iterations each ran).
    """
    preferences = trained_preferences(run.task, config.preferences)
    keys = [preference_key(w) for w in preferences]
    learners = [
        Learner(key, policy_seed(run.seed, index), Linear(tuple(weights)), {"preference": key})
        for index, (key, weights) in enumerate(zip(keys, preferences, strict=True))
    ]
    trained = run.train_each(config.ppo, learners, config.iterations, config.checkpoint_every)
    if len(keys) == 1:
        serving = "one model for all preferences (trained at the uniform preference only: a reference row)"
    else:
        serving = f"nearest (L1) of {len(keys)} trained preferences ({config.preferences})"
    outputs = {
        "models": save_policies(run, trained, "models"),
        "trained_preferences": preferences.tolist(),
        "serving": serving,
        "iterations_per_preference": iterations_per(run, "preference", keys),
    }
    models = {key: run.policy_from_state(trained[key]) for key in keys}
    return nearest_policy(models, run.task, points=preferences), outputs
