"""TRL interop: a morbench task's oracle as TRL reward functions (one named callable per objective).

``GRPOTrainer(model, reward_funcs=reward_functions(env), args=GRPOConfig(reward_weights=w, ...))`` trains on a
morbench task with TRL: TRL logs ``rewards/<objective>/mean`` per objective and combines them with
``reward_weights`` (MORLHF-style scalarization). The K functions share one oracle call per batch of completions.
For prompt-conditioned tasks (Summarize), ``prompt_dataset(env, split="train")`` is the training dataset: the
task's exact prompts in TRL's format with the ``context`` column that the reward functions read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from morbench.errors import ConfigError

__all__ = ["prompt_dataset", "reward_functions"]


def _text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):  # conversational format
        return str(completion[-1].get("content", ""))
    return str(completion)


def reward_functions(env: Any) -> list[Callable[..., list[float]]]:
    """One TRL reward function per objective of ``env`` (named after the objective)."""
    task = env.unwrapped
    contexts = {c.key: c for c in task.contexts} if task.contexts is not None else None
    memo: dict[str, Any] = {"key": None, "rewards": None}

    def rewards_for(completions: list[Any], context_keys: list[str] | None) -> np.ndarray:
        texts = [_text(c) for c in completions]
        key = (tuple(texts), tuple(context_keys) if context_keys else None)
        if memo["key"] != key:
            ctx = None
            if contexts is not None:
                if context_keys is None:
                    raise ValueError("this task is prompt-conditioned: add a 'context' column with context keys")
                ctx = [contexts[k] for k in context_keys]
            memo["key"], memo["rewards"] = key, task.score(texts, ctx).rewards
        return memo["rewards"]

    functions = []
    for k, name in enumerate(task.objective_names):

        def reward(prompts: Any = None, completions: Any = None, k: int = k, **kwargs: Any) -> list[float]:
            return rewards_for(completions, kwargs.get("context"))[:, k].astype(float).tolist()

        reward.__name__ = reward.__qualname__ = name
        reward.__doc__ = f"morbench objective {name!r} of {task.spec.id if task.spec else type(task).__name__}"
        functions.append(reward)
    return functions


def prompt_dataset(env: Any, split: str | None = None, as_dataset: bool = True) -> Any:
    """The prompts of a prompt-conditioned task as a TRL dataset: one row per context of ``split``.

    Columns: ``prompt``, the exact text the env's policy is conditioned on (the task's chat template and
    instruction applied, the document truncated to ``max_prompt_length`` as the env does), and ``context``, the
    context key that :func:`reward_functions` uses to score each completion against its document.
    ``split`` (e.g. ``"train"``, ``"test"``) makes the same env id with that split; ``None`` keeps ``env``'s own.
    Returns a ``datasets.Dataset``, or a list of dicts when ``as_dataset=False`` or ``datasets`` is missing.
    """
    task = env.unwrapped
    if task.contexts is None:
        name = task.spec.id if task.spec is not None else type(task).__name__
        raise ConfigError(f"{name} is not prompt-conditioned: it has no prompts (its policy starts from BOS)")
    if split is not None and split != getattr(task, "split", split):
        from morbench.registry import make

        if task.spec is None:
            raise ConfigError("split= needs an env made from a registered id (morbench.make); pass split=None")
        task = make(task.spec.id, **{**task.spec.kwargs, "split": split}).unwrapped
    rows = [
        {"prompt": task.tokenizer.decode(list(c.prompt_ids), skip_special_tokens=False), "context": c.key}
        for c in task.contexts
    ]
    if not as_dataset:
        return rows
    try:
        from datasets import Dataset
    except ImportError:
        return rows
    return Dataset.from_list(rows)
