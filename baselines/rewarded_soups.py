"""Rewarded Soups: one PPO expert per objective, then weight interpolation ``theta(l) = sum_k l_k theta_k``.

Every expert starts from the prior and is trained on its own objective only (KL to the prior); the experts share
the run's budget equally. Any preference ``l`` of the grid is then served by interpolating the experts' weights
with ``l`` as coefficients (:func:`baselines.common.merge_state_dicts`: strict key check, exact for one-hot ``l``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from morbench.baselines.common import PPOConfig, merge_state_dicts
from morbench.baselines.training import RunContext
from morbench.errors import ConfigError
from morbench.evaluation import PreferenceLMPolicy

__all__ = ["RewardedSoupsConfig", "expert_seed", "soup_policy", "train"]


@dataclasses.dataclass
class RewardedSoupsConfig:
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    iterations: int = dataclasses.field(
        default=20, metadata={"help": "PPO iterations per expert (capped by budget / K)"}
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
    iterations = run.iterations(config.iterations, config.ppo, shares=k_objectives)
    experts = run.state.setdefault("experts", {})  # objective index -> final LM weights
    run.start_progress(k_objectives * iterations, "train")

    for k in range(k_objectives):
        if str(k) in experts:
            continue
        learner = run.learner(config.ppo, seed=expert_seed(run.seed, k))
        if run.state.get("current") == k:
            learner.load_state(run.state["learner"])
        while learner.iterations < iterations:
            stats = learner.iteration(lambda rewards, k=k: rewards[:, k])
            run.log(stats, expert=run.task.objective_names[k])
            if learner.iterations % config.checkpoint_every == 0 or learner.iterations == iterations:
                run.state.update(current=k, learner=learner.state())
                run.checkpoint()
        experts[str(k)] = learner.model.policy_state()
        run.state.pop("learner", None)
        run.state.pop("current", None)
        run.checkpoint()

    states = [experts[str(k)] for k in range(k_objectives)]
    return soup_policy(run, states), save_experts(run, states)


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
