"""MORLHF: PPO on the linear scalarization ``w . r`` of the reward vector, one run per preference ``w``.

One policy per preference, trained from the prior with a per-token KL penalty to it. The headline row of the
benchmark uses the uniform preference; ``preferences="grid"`` trains one policy per preference of the task's
grid (each with the full budget: MORLHF pays per point of its front).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from morbench.baselines.common import PPOConfig
from morbench.baselines.training import RunContext
from morbench.errors import ConfigError
from morbench.evaluation import PreferenceLMPolicy
from morbench.preferences import preference_key, uniform_preference

__all__ = ["MORLHFConfig", "train"]


@dataclasses.dataclass
class MORLHFConfig:
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    iterations: int = dataclasses.field(
        default=60, metadata={"help": "PPO iterations per preference (capped by the budget)"}
    )
    preferences: str = dataclasses.field(
        default="uniform", metadata={"help": "'uniform' or 'grid' (one run per grid point)"}
    )
    checkpoint_every: int = dataclasses.field(default=5, metadata={"help": "PPO iterations between checkpoints"})

    def __post_init__(self) -> None:
        if isinstance(self.ppo, dict):
            self.ppo = PPOConfig(**self.ppo)
        if self.preferences not in ("uniform", "grid"):
            raise ConfigError(f"MORLHFConfig.preferences must be 'uniform' or 'grid', got {self.preferences!r}")
        if self.iterations < 1 or self.checkpoint_every < 1:
            raise ConfigError("MORLHFConfig.iterations and checkpoint_every must be >= 1")


def train(run: RunContext, config: MORLHFConfig):
    task = run.task
    if config.preferences == "uniform":
        preferences = uniform_preference(task.reward_dim)[None, :]
    else:
        preferences = task.preference_grid
    iterations = run.iterations(config.iterations, config.ppo)
    models = run.state.setdefault("models", {})  # preference key -> final LM weights
    run.start_progress(len(preferences) * iterations, "train")

    for index, weights in enumerate(preferences):
        key = preference_key(weights)
        if key in models:
            continue
        learner = run.learner(config.ppo, seed=run.seed * 1000 + index)
        if run.state.get("current") == key:
            learner.load_state(run.state["learner"])
        while learner.iterations < iterations:
            stats = learner.iteration(lambda rewards, w=weights: rewards @ w)
            run.log(stats, preference=key)
            if learner.iterations % config.checkpoint_every == 0 or learner.iterations == iterations:
                run.state.update(current=key, learner=learner.state())
                run.checkpoint()
        models[key] = learner.model.policy_state()
        run.state.pop("learner", None)
        run.state.pop("current", None)
        run.checkpoint()

    trained = {key: run.policy_from_state(state) for key, state in models.items()}

    def model_for(preference: np.ndarray):
        # each policy answers for its own preference; other preferences get the nearest trained policy (L1)
        keys = list(trained)
        points = np.array([[float(x) for x in k.split("_")] for k in keys])
        return trained[keys[int(np.argmin(np.abs(points - preference).sum(axis=1)))]]

    for key, lm in trained.items():
        lm.save_pretrained(run.out / "models" / key, safe_serialization=True)
    return PreferenceLMPolicy(model_for, task), {"models": {key: f"models/{key}" for key in sorted(trained)}}
