"""Reference agents: MORLHF, Rewarded Soups, IterativeRS, Rewards-in-Context, and the prior / best-of-N rows.

Each method is a (config dataclass, ``train(run, config)``) pair in its own module; :data:`METHODS` names them.
``run_method`` is what ``morbench train`` calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from morbench.errors import ConfigError

__all__ = ["METHODS", "Method", "build_config", "get_method", "run_method"]


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    config: type
    train: Callable[..., Any]
    description: str


from morbench.baselines import iterative_rs, morlhf, reference, rewarded_soups, rewards_in_context  # noqa: E402

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "iterative_rs",
            iterative_rs.IterativeRSConfig,
            iterative_rs.train,
            "IterativeRS: experts merged every m PPO iterations",
        ),
        Method(
            "rewarded_soups",
            rewarded_soups.RewardedSoupsConfig,
            rewarded_soups.train,
            "Rewarded Soups: one PPO expert per objective, weight interpolation",
        ),
        Method("morlhf", morlhf.MORLHFConfig, morlhf.train, "MORLHF: PPO on w . r"),
        Method(
            "rewards_in_context",
            rewards_in_context.RewardsInContextConfig,
            rewards_in_context.train,
            "Rewards-in-Context: reward-conditioned SFT with online augmentation",
        ),
        Method("prior", reference.PriorConfig, reference.train_prior, "the untuned prior"),
        Method("best_of_n", reference.BestOfNConfig, reference.train_best_of_n, "best of n prior samples by w . r"),
    )
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


def build_config(method: str, overrides: dict[str, Any] | None = None):
    """The method's config with ``overrides`` (``{"iterations": 8, "ppo.batch_size": 32}``) applied."""
    spec = get_method(method)
    nested: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        head, _, tail = key.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    fields = {f.name for f in dataclasses.fields(spec.config)}
    unknown = sorted(set(nested) - fields)
    if unknown:
        raise ConfigError(f"{spec.config.__name__} has no field(s) {unknown}; fields: {sorted(fields)}")
    if isinstance(nested.get("ppo"), dict):
        from morbench.baselines.common import PPOConfig

        ppo_fields = {f.name for f in dataclasses.fields(PPOConfig)}
        bad = sorted(set(nested["ppo"]) - ppo_fields)
        if bad:
            raise ConfigError(f"PPOConfig has no field(s) {bad}; fields: {sorted(ppo_fields)}")
    try:
        return spec.config(**nested)
    except TypeError as exc:
        raise ConfigError(f"invalid {spec.config.__name__}: {exc}") from None


def run_method(
    method: str,
    env_id: str,
    out: str | Path,
    seed: int = 0,
    config: Any = None,
    budget: Any = None,
    resume: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    eval_samples: int | None = None,
    progress: bool = True,
) -> Path:
    """Train ``method`` on ``env_id`` and write the run directory ``out`` (see ``morbench/runs.py``)."""
    from morbench.baselines.training import RunContext

    spec = get_method(method)
    config = config if config is not None else spec.config()
    out = Path(out)
    if (out / "checkpoint").exists() and not resume:
        raise ConfigError(f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out")
    if (out / "run.json").exists():
        if resume:
            return out / "run.json"  # nothing left to do
        raise ConfigError(f"{out} already holds a finished run; choose another --out")
    run = RunContext(
        method,
        env_id,
        out,
        seed=seed,
        budget=budget,
        env_kwargs=env_kwargs,
        eval_samples=eval_samples,
        progress=progress,
    )
    if resume:
        run.resume()
    policy, outputs = spec.train(run, config)
    return run.finish(policy, config, outputs)
