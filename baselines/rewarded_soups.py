"""Rewarded Soups: one PPO expert per objective, then weight interpolation ``theta(l) = sum_k l_k theta_k``.

Every expert starts from the prior and is trained on its own objective only (KL to the prior); the experts share
the run's budget (each gets an equal share of what the experts before it left: ``common.train_policies``).
Any preference ``l`` of the grid is then served by interpolating the experts' weights
with ``l`` as coefficients (:func:`baselines.common.merge_state_dicts`: strict key check, exact for one-hot ``l``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from morbench.baselines.common import PPOConfig, merge_state_dicts, train_policies
from morbench.baselines.training import RunContext
from morbench.errors import ConfigError
from morbench.evaluation import PreferenceLMPolicy

__all__ = ["RewardedSoupsConfig", "expert_seed", "soup_policy", "train"]


@dataclasses.dataclass
class RewardedSoupsConfig:
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    iterations: int = dataclasses.field(
        default=20, metadata={"help": "at most this many PPO iterations per expert (a budget may stop it earlier)"}
    )
    checkpoint_every: int = dataclasses.field(default=5, metadata={"help": "PPO iterations between checkpoints"})

    def __post_init__(self) -> None:
        if isinstance(self.ppo, dict):
            self.ppo = PPOConfig(**self.ppo)
        if self.iterations < 1 or self.checkpoint_every < 1:
            raise ConfigError("RewardedSoupsConfig.iterations and checkpoint_every must be >= 1")


def expert_seed(seed: int, objective: int) -> int:
    """The seed of objective ``k``'s expert (shared with IterativeRS so that m = T reproduces Rewarded Soups)."""
    return seed * 1000 + 100 + objective


def train(run: RunContext, config: RewardedSoupsConfig):
    k_objectives = run.task.reward_dim
    jobs = [
        (str(k), expert_seed(run.seed, k), lambda rewards, k=k: rewards[:, k], {"expert": run.task.objective_names[k]})
        for k in range(k_objectives)
    ]
    experts = train_policies(run, config.ppo, jobs, config.iterations, config.checkpoint_every, store="experts")
    states = [experts[str(k)] for k in range(k_objectives)]
    outputs = save_experts(run, states)
    outputs.update(
        serving="interpolated final experts: theta(w) = sum_k w_k theta_k",
        iterations_per_expert=_iterations_per_policy(run, "expert", run.task.objective_names),
    )
    return soup_policy(run, states), outputs


def _iterations_per_policy(run: RunContext, tag: str, names) -> dict[str, int]:
    """PPO iterations each policy ran (from the learning curve: they depend on the tokens actually sampled)."""
    return {name: sum(1 for entry in run.curve if entry.get(tag) == name) for name in names}


def soup_policy(run: RunContext, states: list[dict]) -> PreferenceLMPolicy:
    """Serve preference ``l`` with the interpolation of ``states`` (cached per preference)."""
    cache: dict[tuple, object] = {}

    def model_for(preference: np.ndarray):
        key = tuple(np.round(preference, 12))
        if key not in cache:
            cache.clear()  # one merged model in memory at a time
            cache[key] = run.policy_from_state(merge_state_dicts(states, preference))
        return cache[key]

    return PreferenceLMPolicy(model_for, run.task)


def save_experts(run: RunContext, states: list[dict]) -> dict:
    """Write each expert (safetensors) and the interpolation recipe; return the run outputs record."""
    paths = {}
    for k, state in enumerate(states):
        name = run.task.objective_names[k]
        run.policy_from_state(state).save_pretrained(run.out / "experts" / name, safe_serialization=True)
        paths[name] = f"experts/{name}"
    return {
        "experts": paths,
        "recipe": "theta(l) = sum_k l_k * theta_k over the experts in objective order (l = preference)",
    }
