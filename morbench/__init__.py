"""morbench: multi-objective, token-level Gymnasium environments, baselines and a scorer for fine-tuning generative models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from morbench.core import Context, EvaluationProtocol, Oracle, ScoreResult, TokenEnv
from morbench.errors import (
    AssetError,
    ConfigError,
    InvalidActionError,
    InvalidPreferenceError,
    InvalidRunError,
    MorbenchError,
    OracleBudgetExhausted,
    StepAfterDoneError,
    SubmissionError,
    UnknownEnvError,
)
from morbench.registry import list_envs, make, make_vec, register_envs, spec, spec_to_dict

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__version__ = "0.1.0"

# ``import morbench`` registers every ``morbench/<Task>-v<N>`` id with Gymnasium, so that ``gymnasium.make`` and
# ``mo_gymnasium.make`` find them. Registration is cheap: entry points are strings, nothing heavy is imported and
# no asset is read until an env is made.
register_envs()


def evaluate(
    policy: Any,
    env_id: str,
    seeds: Sequence[int] | None = None,
    out: str | Path | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Evaluate any policy with the task's standard protocol (see :func:`morbench.evaluation.evaluate`)."""
    from morbench.evaluation import evaluate as _evaluate

    return _evaluate(policy, env_id, seeds=seeds, out=out, **kwargs)


__all__ = [
    "AssetError",
    "ConfigError",
    "Context",
    "EvaluationProtocol",
    "InvalidActionError",
    "InvalidPreferenceError",
    "InvalidRunError",
    "MorbenchError",
    "Oracle",
    "OracleBudgetExhausted",
    "ScoreResult",
    "StepAfterDoneError",
    "SubmissionError",
    "TokenEnv",
    "UnknownEnvError",
    "__version__",
    "evaluate",
    "list_envs",
    "make",
    "make_vec",
    "spec",
    "spec_to_dict",
]
