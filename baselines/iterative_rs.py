"""IterativeRS (Ghari et al., NeurIPS 2025): Rewarded Soups that merges every ``m`` PPO iterations.

One expert per objective, all starting from the prior. Training runs in rounds: in each round every expert of a
subset ``S`` (all objectives by default) restarts from the last merge ``rho`` and runs ``m`` PPO iterations on its
own objective, with the KL penalty always to the *original* prior; then ``rho = sum_{k in S} l_k theta_k`` with
``l_k = w_k / sum_{j in S} w_j``. Special cases: ``m = T`` (one round) is Rewarded Soups; ``m = 1`` approaches
MORLHF. The output is the final merge ``rho_T`` (the preference ``w`` it was trained for); other preferences of
the grid are served by interpolating the final experts, as in Rewarded Soups.

State at a merge (as in the reference code): an expert's **policy weights** are replaced by ``rho``; its **value
head** is kept (each expert keeps the critic of its own objective across rounds); its **optimizer** (AdamW
moments) is reset, since the moments describe a trajectory the merge has left.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from morbench.baselines.common import PPOConfig, merge_state_dicts
from morbench.baselines.rewarded_soups import expert_seed, save_experts, soup_policy
from morbench.baselines.training import RunContext
from morbench.errors import ConfigError

__all__ = ["IterativeRSConfig", "train"]


@dataclasses.dataclass
class IterativeRSConfig:
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    iterations: int = dataclasses.field(
        default=20, metadata={"help": "T: PPO iterations per expert (capped by budget / K)"}
    )
    merge_every: int = dataclasses.field(default=4, metadata={"help": "m: PPO iterations per expert between merges"})
    merge_weights: list[float] | None = dataclasses.field(default=None, metadata={"help": "w; None = uniform"})
    objectives_per_round: int | None = dataclasses.field(
        default=None, metadata={"help": "M <= K experts per round; None = all"}
    )
    checkpoint_every: int = dataclasses.field(default=5, metadata={"help": "PPO iterations between checkpoints"})

    def __post_init__(self) -> None:
        if isinstance(self.ppo, dict):
            self.ppo = PPOConfig(**self.ppo)
        if self.iterations < 1 or self.merge_every < 1 or self.checkpoint_every < 1:
            raise ConfigError("IterativeRSConfig.iterations, merge_every and checkpoint_every must be >= 1")
        if self.objectives_per_round is not None and self.objectives_per_round < 1:
            raise ConfigError(f"IterativeRSConfig.objectives_per_round must be >= 1, got {self.objectives_per_round}")


def train(run: RunContext, config: IterativeRSConfig):
    k_objectives = run.task.reward_dim
    weights = (
        np.full(k_objectives, 1.0 / k_objectives) if config.merge_weights is None else np.asarray(config.merge_weights)
    )
    if weights.shape != (k_objectives,) or np.any(weights < 0) or abs(weights.sum() - 1) > 1e-6:
        raise ConfigError(f"merge_weights {config.merge_weights} must be a preference over {k_objectives} objectives")
    subset_size = min(config.objectives_per_round or k_objectives, k_objectives)
    total = run.iterations(config.iterations, config.ppo, shares=k_objectives)  # T per expert
    rounds = math.ceil(total / config.merge_every)
    learners = [run.learner(config.ppo, seed=expert_seed(run.seed, k)) for k in range(k_objectives)]
    state = run.state
    if "learners" in state:  # resuming
        for learner, saved in zip(learners, state["learners"], strict=True):
            learner.load_state(saved)
    merged = state.get("merged", run.prior.state_dict())
    run.start_progress(total * subset_size, "train")

    for round_index in range(state.get("round", 0), rounds):
        block = min(config.merge_every, total - round_index * config.merge_every)
        subset = _subset(run.seed, round_index, k_objectives, subset_size)
        for position in range(state.get("position", 0), len(subset)):
            k = subset[position]
            learner = learners[k]
            if state.get("block_start") is None:  # start of this expert's block: restart from the merge
                learner.load_policy(merged)
                learner.reset_optimizer()
                state["block_start"] = learner.iterations
            while learner.iterations < state["block_start"] + block:
                stats = learner.iteration(lambda rewards, k=k: rewards[:, k])
                run.log(stats, expert=run.task.objective_names[k], round=round_index)
                if learner.iterations % config.checkpoint_every == 0:
                    _save(run, learners, merged, round_index, position)
            state["block_start"] = None
            _save(run, learners, merged, round_index, position + 1)
        subset_weights = weights[subset] / weights[subset].sum() if weights[subset].sum() > 0 else None
        if subset_weights is None:
            raise ConfigError(f"merge_weights {weights.tolist()} are zero on the objectives {subset} of a round")
        merged = merge_state_dicts([learners[k].model.policy_state() for k in subset], subset_weights)
        state["position"] = 0
        _save(run, learners, merged, round_index + 1, 0)

    experts = [learner.model.policy_state() for learner in learners]
    final = merge_state_dicts(experts, weights)
    run.policy_from_state(final).save_pretrained(run.out / "merged", safe_serialization=True)
    outputs = save_experts(run, experts)
    outputs.update(
        merged="merged",
        merge_weights=weights.tolist(),
        rounds=rounds,
        iterations_per_expert=total,
        merge_every=config.merge_every,
    )
    return soup_policy(run, experts), outputs


def _subset(seed: int, round_index: int, k_objectives: int, size: int) -> list[int]:
    """The objectives updated in a round: all of them, or ``size`` drawn uniformly (seeded by run and round)."""
    if size >= k_objectives:
        return list(range(k_objectives))
    rng = np.random.default_rng([seed, round_index])
    return sorted(rng.choice(k_objectives, size=size, replace=False).tolist())


def _save(run: RunContext, learners, merged, round_index: int, position: int) -> None:
    run.state.update(
        learners=[learner.state() for learner in learners],
        merged=merged,
        round=round_index,
        position=position,
    )
    run.checkpoint()
