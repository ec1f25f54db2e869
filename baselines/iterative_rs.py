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
same number of iterations; the last round is shortened to what still fits (``RunContext.train_rounds``).

State at a merge (as in the reference code): an expert's **policy weights** are replaced by ``rho``; its **value
head** is kept (each expert keeps the critic of its own objective across rounds); its **optimizer** (AdamW
moments) is reset, since the moments describe a trajectory the merge has left.

LoRA experts (``ppo.lora_rank > 0``): a round's experts are adapters on one frozen base, the merge is exact in
weight space (``rho = base + sum_k l_k B_k A_k``, :mod:`morbench.baselines.lora`), and a restart *folds* ``rho``
into the next round's base with fresh adapters (the KL reference stays the original prior). The final experts are
adapters on the last round's base, saved with it (``outputs["base"]``). Subsets (``objectives_per_round < K``)
are refused with LoRA: experts left out of the last rounds would hold adapters on older bases.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from morbench.baselines.common import PPOMethodConfig, iterations_per, save_policies
from morbench.baselines.training import Rounds, RunContext, Trained, objective_experts
from morbench.errors import ConfigError
from morbench.preferences import preference_key
from morbench.seeding import round_members_rng
from morbench.serving import interpolation_policy, nearest_policy

__all__ = ["IterativeRSConfig", "train"]


TRAINING_MODES = ("single", "per_preference")


@dataclasses.dataclass
class IterativeRSConfig(PPOMethodConfig):
    """IterativeRS's options (the paper's ``T``, ``m``, ``w`` and ``M``), besides those of every PPO method.

    ``training`` chooses one merge trajectory at ``merge_weights`` or one trajectory per grid preference.
    """

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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.merge_every < 1:
            raise ConfigError(f"IterativeRSConfig.merge_every must be >= 1, got {self.merge_every}")
        if self.objectives_per_round is not None and self.objectives_per_round < 1:
            raise ConfigError(f"IterativeRSConfig.objectives_per_round must be >= 1, got {self.objectives_per_round}")
        if self.training not in TRAINING_MODES:
            raise ConfigError(
                f"IterativeRSConfig.training must be one of {list(TRAINING_MODES)}, got {self.training!r}"
            )
        if self.training == "per_preference" and self.merge_weights is not None:
            raise ConfigError("IterativeRSConfig.merge_weights must be None with training='per_preference'")


def train(run: RunContext, config: IterativeRSConfig) -> Trained:
    """Train one expert per objective in rounds, merged at ``merge_weights`` after each round.

    Returns the policy, which serves every preference by interpolating the final experts, and the run's outputs
    (the experts, the final merge, the rounds run). With ``training="per_preference"``: one trajectory per grid
    preference, each preference served by its own final merge.
    """
    if config.training == "per_preference":
        return _train_per_preference(run, config)
    k_objectives = run.task.reward_dim
    weights = (
        np.full(k_objectives, 1.0 / k_objectives) if config.merge_weights is None else np.asarray(config.merge_weights)
    )
    if weights.shape != (k_objectives,) or np.any(weights < 0) or abs(weights.sum() - 1) > 1e-6:
        raise ConfigError(f"merge_weights {config.merge_weights} must be a preference over {k_objectives} objectives")
    experts, rounds, base = run.train_rounds(config.ppo, _rounds(run, config, weights), config.checkpoint_every)
    final = run.merge_policies(experts, weights, base)
    run.policy_from_state(final).save_pretrained(run.out / "merged", safe_serialization=True)
    extra = {}
    if base is not None:  # LoRA: the experts are adapters on the last round's base, saved next to them
        run.policy_from_state(base).save_pretrained(run.out / "base", safe_serialization=True)
        extra = {"base": "base", "lora": "experts are LoRA adapters on the base folder: theta_k = base + B_k A_k"}
    outputs = {
        "experts": save_policies(run, dict(zip(run.task.objective_names, experts, strict=True)), "experts"),
        "recipe": "theta(l) = sum_k l_k * theta_k over the experts in objective order (l = preference)",
        "merged": "merged",
        "merge_weights": weights.tolist(),
        "rounds": rounds,
        "iterations_per_expert": iterations_per(run, "expert", run.task.objective_names),
        "merge_every": config.merge_every,
        "training": "single",
        "serving": f"the final merge for the merge weights {weights.tolist()}; every other preference w: "
        "interpolated final experts theta(w) = sum_k w_k theta_k",
        **extra,
    }
    template = run.prior if base is None else run.policy_from_state(base)
    return interpolation_policy(template, experts, run.task), outputs


def _rounds(run: RunContext, config: IterativeRSConfig, weights: np.ndarray) -> Rounds:
    """The schedule of one trajectory: rounds of ``m`` iterations per expert of the round's subset ``S``.

    Each round ends with the merge ``rho = sum_{k in S} l_k theta_k``, ``l`` the merge weights renormalised over
    ``S``.
    """
    k_objectives = run.task.reward_dim
    size = min(config.objectives_per_round or k_objectives, k_objectives)
    if config.ppo.lora_rank and size < k_objectives:
        raise ConfigError(
            f"IterativeRS with ppo.lora_rank={config.ppo.lora_rank} needs every expert in every round "
            f"(objectives_per_round={config.objectives_per_round} < {k_objectives}): an expert left out of the last "
            "rounds holds adapters on an older base, so the final experts share no base; unset "
            "objectives_per_round or set ppo.lora_rank=0"
        )

    def members(round_index: int) -> list[int]:
        """All objectives, or ``size`` of them drawn uniformly (seeded by run and round)."""
        if size >= k_objectives:
            return list(range(k_objectives))
        rng = round_members_rng(run.seed, round_index)
        return sorted(rng.choice(k_objectives, size=size, replace=False).tolist())

    def merge_weights(subset: list[int]) -> np.ndarray:
        if weights[subset].sum() <= 0:
            raise ConfigError(f"merge_weights {weights.tolist()} are zero on the objectives {subset} of a round")
        return weights[subset] / weights[subset].sum()

    return Rounds(objective_experts(run), config.merge_every, config.iterations, merge_weights, members)


def _train_per_preference(run: RunContext, config: IterativeRSConfig) -> Trained:
    """One IterativeRS trajectory per grid preference, with that preference as its merge weights.

    The budget is split across the trajectories as ``RunContext.train_each`` splits it across policies; each
    trajectory is a stage of the run.
    """
    grid = np.asarray(run.task.preference_grid, dtype=np.float64)
    keys = [preference_key(w) for w in grid]
    finals = {}
    for index, (key, weights) in enumerate(zip(keys, grid, strict=True)):

        def trajectory(index: int = index, key: str = key, weights: np.ndarray = weights) -> dict:
            experts, _, base = run.train_rounds(
                config.ppo,
                _rounds(run, config, weights),
                config.checkpoint_every,
                parts=len(keys) - index,
                policies=len(keys) * run.task.reward_dim,
                name=f"rounds {key}",
                tags={"preference": key},
            )
            return run.merge_policies(experts, weights, base)

        finals[key] = run.stage(f"trajectory {key}", trajectory)
    outputs = {
        "merged": save_policies(run, finals, "merged"),
        "training": "per_preference",
        "merge_every": config.merge_every,
        "iterations_per_preference": iterations_per(run, "preference", keys),
        "serving": f"each of the {len(keys)} grid preferences: the final merge of its own trajectory; "
        "any other preference: the nearest (L1) of them",
    }
    models = {key: run.policy_from_state(finals[key]) for key in keys}
    return nearest_policy(models, run.task, points=grid), outputs
