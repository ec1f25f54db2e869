"""IterativeRS (Ghari et al., NeurIPS 2025): Rewarded Soups that merges every ``m`` PPO iterations.

One expert per objective, all starting from the prior. Training runs in rounds: in each round every expert of a
subset ``S`` (all objectives by default) restarts from the last merge ``rho`` and runs ``m`` PPO iterations on its
own objective, with the KL penalty always to the *original* prior; then ``rho = sum_{k in S} l_k theta_k`` with
``l_k = w_k / sum_{j in S} w_j``. Special cases: ``m = T`` (one round) is Rewarded Soups; ``m = 1`` approaches
MORLHF. The output is the final merge ``rho_T`` (the preference ``w`` it was trained for); other preferences of
the grid are served by interpolating the final experts, as in Rewarded Soups (the paper trains for one ``w``; the
run's ``outputs["serving"]`` says so). ``training="per_preference"`` instead runs one trajectory per grid
preference with the budget split across them, and serves each preference by its own final merge.

Budget: the experts of a round run ``m`` iterations each in turn (round robin), so every expert of a round gets the
same number of iterations; the last round is shortened to what still fits (see :func:`_trajectory`).

State at a merge (as in the reference code): an expert's **policy weights** are replaced by ``rho``; its **value
head** is kept (each expert keeps the critic of its own objective across rounds); its **optimizer** (AdamW
moments) is reset, since the moments describe a trajectory the merge has left.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from morbench.baselines.common import PPOConfig, merge_state_dicts
from morbench.baselines.morlhf import nearest_policy
from morbench.baselines.rewarded_soups import expert_seed, save_experts, soup_policy
from morbench.baselines.training import RunContext
from morbench.errors import ConfigError
from morbench.preferences import preference_key

__all__ = ["IterativeRSConfig", "train"]


TRAINING_MODES = ("single", "per_preference")


@dataclasses.dataclass
class IterativeRSConfig:
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    iterations: int = dataclasses.field(
        default=20, metadata={"help": "T: at most this many PPO iterations per expert (a budget may stop it earlier)"}
    )
    merge_every: int = dataclasses.field(default=4, metadata={"help": "m: PPO iterations per expert between merges"})
    merge_weights: list[float] | None = dataclasses.field(default=None, metadata={"help": "w; None = uniform"})
    objectives_per_round: int | None = dataclasses.field(
        default=None, metadata={"help": "M <= K experts per round; None = all"}
    )
    training: str = dataclasses.field(
        default="single",
        metadata={
            "help": "'single': one merge trajectory at merge_weights, other preferences interpolate its final "
            "experts; 'per_preference': one trajectory per grid preference (merge weights = that preference, "
            "the budget split across them), each preference served by its own final merge"
        },
    )
    checkpoint_every: int = dataclasses.field(default=5, metadata={"help": "PPO iterations between checkpoints"})

    def __post_init__(self) -> None:
        if isinstance(self.ppo, dict):
            self.ppo = PPOConfig(**self.ppo)
        if self.iterations < 1 or self.merge_every < 1 or self.checkpoint_every < 1:
            raise ConfigError("IterativeRSConfig.iterations, merge_every and checkpoint_every must be >= 1")
        if self.objectives_per_round is not None and self.objectives_per_round < 1:
            raise ConfigError(f"IterativeRSConfig.objectives_per_round must be >= 1, got {self.objectives_per_round}")
        if self.training not in TRAINING_MODES:
            raise ConfigError(
                f"IterativeRSConfig.training must be one of {list(TRAINING_MODES)}, got {self.training!r}"
            )
        if self.training == "per_preference" and self.merge_weights is not None:
            raise ConfigError("IterativeRSConfig.merge_weights must be None with training='per_preference'")


def train(run: RunContext, config: IterativeRSConfig):
    k_objectives = run.task.reward_dim
    run.start_progress(None if run.budget.limited else k_objectives * config.iterations, "train")
    if config.training == "per_preference":
        return _train_per_preference(run, config)
    weights = (
        np.full(k_objectives, 1.0 / k_objectives) if config.merge_weights is None else np.asarray(config.merge_weights)
    )
    if weights.shape != (k_objectives,) or np.any(weights < 0) or abs(weights.sum() - 1) > 1e-6:
        raise ConfigError(f"merge_weights {config.merge_weights} must be a preference over {k_objectives} objectives")
    experts, rounds = _trajectory(run, config, weights, run.state, parts=1, policies=k_objectives)
    final = merge_state_dicts(experts, weights)
    run.policy_from_state(final).save_pretrained(run.out / "merged", safe_serialization=True)
    outputs = save_experts(run, experts)
    outputs.update(
        merged="merged",
        merge_weights=weights.tolist(),
        rounds=rounds,
        iterations_per_expert=_iterations_per_expert(run),
        merge_every=config.merge_every,
        training="single",
        serving=f"the final merge for the merge weights {weights.tolist()}; every other preference w: "
        "interpolated final experts theta(w) = sum_k w_k theta_k",
    )
    return soup_policy(run, experts), outputs


def _train_per_preference(run: RunContext, config: IterativeRSConfig):
    """One IterativeRS trajectory per grid preference (merge weights = that preference); the budget is split
    across the trajectories as ``common.train_policies`` splits it across policies."""
    grid = np.asarray(run.task.preference_grid, dtype=np.float64)
    keys = [preference_key(w) for w in grid]
    finals = run.state.setdefault("trajectories", {})  # preference key -> final merge
    for index, (key, weights) in enumerate(zip(keys, grid, strict=True)):
        if key in finals:
            continue
        if run.state.get("trajectory", {}).get("key") != key:
            run.state["trajectory"] = {"key": key}
        experts, _ = _trajectory(
            run,
            config,
            weights,
            run.state["trajectory"],
            parts=len(keys) - index,
            policies=len(keys) * run.task.reward_dim,
            tags={"preference": key},
        )
        finals[key] = merge_state_dicts(experts, weights)
        run.state.pop("trajectory")
        run.checkpoint()
    models = {key: run.policy_from_state(finals[key]) for key in keys}
    for key, lm in models.items():
        lm.save_pretrained(run.out / "merged" / key, safe_serialization=True)
    outputs = {
        "merged": {key: f"merged/{key}" for key in keys},
        "training": "per_preference",
        "merge_every": config.merge_every,
        "iterations_per_preference": {k: sum(1 for e in run.curve if e.get("preference") == k) for k in keys},
        "serving": f"each of the {len(keys)} grid preferences: the final merge of its own trajectory; "
        "any other preference: the nearest (L1) of them",
    }
    return nearest_policy(models, grid, run.task), outputs


def _trajectory(run: RunContext, config, weights, state: dict, parts: int, policies: int, tags=None):
    """One merge trajectory: rounds of ``m`` PPO iterations per expert of the round's subset, then a merge.

    Budget: the trajectory's limit is fixed when it starts (``run.limit(parts, policies)``); a round's block is
    the largest ``b <= m`` (and <= what is left of T) whose worst case for every expert of the round fits, so the
    experts of a round always get equal iterations, and training stops when not even ``b = 1`` fits.
    Returns the final experts' policy weights and the number of rounds.
    """
    k_objectives = run.task.reward_dim
    subset_size = min(config.objectives_per_round or k_objectives, k_objectives)
    cost = run.ppo_cost(config.ppo)
    if "limit" not in state:
        state["limit"] = run.limit(parts=parts, policies=policies)
        run.require(
            {name: subset_size * value for name, value in cost.items()},
            state["limit"],
            f"PPO iteration for each of the {subset_size} experts of a round",
        )
    limit = state["limit"]
    learners = [run.learner(config.ppo, seed=expert_seed(run.seed, k)) for k in range(k_objectives)]
    if "learners" in state:  # resuming
        for learner, saved in zip(learners, state["learners"], strict=True):
            learner.load_state(saved)
    merged = state.get("merged", run.prior.state_dict())
    round_index, done = state.get("round", 0), state.get("done", 0)

    while True:
        subset = _subset(run.seed, round_index, k_objectives, subset_size)
        if state.get("block") is None:  # the start of a round: how many iterations each expert gets
            block = min(config.merge_every, config.iterations - done)
            while block > 0 and not run.fits({n: len(subset) * block * v for n, v in cost.items()}, limit):
                block -= 1
            if block == 0:
                break
            state["block"] = block
        block = state["block"]
        for position in range(state.get("position", 0), len(subset)):
            k = subset[position]
            learner = learners[k]
            if state.get("block_start") is None:  # start of this expert's block: restart from the merge
                learner.load_policy(merged)
                learner.reset_optimizer()
                state["block_start"] = learner.iterations
            while learner.iterations < state["block_start"] + block:
                stats = learner.iteration(lambda rewards, k=k: rewards[:, k])
                run.log(stats, expert=run.task.objective_names[k], round=round_index, **(tags or {}))
                if learner.iterations % config.checkpoint_every == 0:
                    _save(run, state, learners, merged, round_index, position, done)
            state["block_start"] = None
            _save(run, state, learners, merged, round_index, position + 1, done)
        subset_weights = weights[subset] / weights[subset].sum() if weights[subset].sum() > 0 else None
        if subset_weights is None:
            raise ConfigError(f"merge_weights {weights.tolist()} are zero on the objectives {subset} of a round")
        merged = merge_state_dicts([learners[k].model.policy_state() for k in subset], subset_weights)
        round_index, done = round_index + 1, done + block
        state.update(position=0, block=None)
        _save(run, state, learners, merged, round_index, 0, done)

    return [learner.model.policy_state() for learner in learners], round_index


def _iterations_per_expert(run: RunContext) -> dict[str, int]:
    return {name: sum(1 for e in run.curve if e.get("expert") == name) for name in run.task.objective_names}


def _subset(seed: int, round_index: int, k_objectives: int, size: int) -> list[int]:
    """The objectives updated in a round: all of them, or ``size`` drawn uniformly (seeded by run and round)."""
    if size >= k_objectives:
        return list(range(k_objectives))
    rng = np.random.default_rng([seed, round_index])
    return sorted(rng.choice(k_objectives, size=size, replace=False).tolist())


def _save(run: RunContext, state: dict, learners, merged, round_index: int, position: int, done: int) -> None:
    state.update(
        learners=[learner.state() for learner in learners],
        merged=merged,
        round=round_index,
        position=position,
        done=done,
    )
    run.checkpoint()
