"""Rewarded Soups: one PPO expert per objective, then weight interpolation ``theta(l) = sum_k l_k theta_k``.

Every expert starts from the prior and is trained on its own objective only (KL to the prior); the experts share
the run's budget (each gets an equal share of what the experts before it left: ``RunContext.train_each``).
Any preference ``l`` of the grid is then served by interpolating the experts' weights
with ``l`` as coefficients (:func:`baselines.common.merge_state_dicts`: strict key check, exact for one-hot ``l``).
LoRA experts (``ppo.lora_rank > 0``) are adapters on the prior, interpolated exactly in weight space:
``prior + sum_k l_k B_k A_k`` (:mod:`morbench.baselines.lora`); they are saved as adapter folders.
"""

from __future__ import annotations

import dataclasses

from morbench.baselines.common import PPOMethodConfig, iterations_per, save_policies
from morbench.baselines.training import RunContext, Trained, objective_experts
from morbench.serving import interpolation_policy

__all__ = ["RewardedSoupsConfig", "train"]


@dataclasses.dataclass
class RewardedSoupsConfig(PPOMethodConfig):
    """Rewarded Soups' options: those of every PPO method, with ``iterations`` counted per expert."""

    iterations: int = dataclasses.field(
        default=20, metadata={"help": "at most this many PPO iterations per expert (a budget may stop it earlier)"}
    )


def train(run: RunContext, config: RewardedSoupsConfig) -> Trained:
    """Train one expert per objective from the prior, one after the other, each on its own objective.

    Returns the policy that serves a preference ``w`` by the interpolated weights ``sum_k w_k theta_k``, and the
    run's outputs (the saved experts, the recipe, the iterations each expert ran).
    """
    experts = objective_experts(run)
    trained = run.train_each(config.ppo, experts, config.iterations, config.checkpoint_every)
    states = [trained[expert.name] for expert in experts]
    outputs = {
        "experts": save_policies(run, trained, "experts"),
        "recipe": "theta(l) = sum_k l_k * theta_k over the experts in objective order (l = preference)",
        "serving": "interpolated final experts: theta(w) = sum_k w_k theta_k",
        "iterations_per_expert": iterations_per(run, "expert", run.task.objective_names),
    }
    if config.ppo.lora_rank:
        outputs["lora"] = "experts are LoRA adapters on the task's prior: theta_k = prior + B_k A_k"
    return interpolation_policy(run.prior, states, run.task), outputs
