"""Checks shared by everything that reads claimed results: evaluation files (``morbench score``) and submissions.

A results file is a claim. Before a number computed from it is reported, the claim is checked against the task
it names: every reward row finite and inside the task's reward space, every preference of the task's grid
present exactly once (and nothing off the grid), and every sequence re-scored with the task's ``score()`` (and
its held-out judge, where it has one). A claimed reward that differs from the recomputed one by more than
:data:`REWARD_TOLERANCE`, or a validity flag that differs, is an error that names the rows; the recomputed
rewards are what gets scored. Each function takes the exception class to raise (``error=``), so the scorer
raises :class:`~morbench.errors.InvalidRunError` and the leaderboard could raise its ``SubmissionError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from morbench.errors import InvalidRunError, MorbenchError

__all__ = [
    "MAX_ROWS_SHOWN",
    "REWARD_TOLERANCE",
    "WEIGHT_TOLERANCE",
    "check_reward_rows",
    "match_preference_grid",
    "mismatched_rows",
    "resolve_contexts",
    "task_for_record",
    "verify_evaluation",
]

REWARD_TOLERANCE = 1e-4  # absolute, per objective, claimed vs recomputed (the leaderboard's tolerance)
WEIGHT_TOLERANCE = 1e-6  # a preference must equal a grid point to this precision
MAX_ROWS_SHOWN = 20


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _row(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"


_TASKS: dict[str, Any] = {}  # one task per (id, kwargs) per process: making QM9 or CNS costs seconds


def task_for_record(env_record: Any, source: str, error: type[MorbenchError] = InvalidRunError) -> Any:
    """The task an evaluation record names (``{"id", "version", "kwargs"}``), made here, at the same version.

    Tasks are cached per process (their oracle caches make re-reading a file cheap); an ``oracle_budget`` kwarg
    is dropped, since a budget never changes a reward and re-scoring must not spend one.
    """
    from morbench.registry import make

    if not isinstance(env_record, dict) or not isinstance(env_record.get("id"), str):
        raise error(f"{source}: the record names no env (an 'env' object with 'id' and 'version' is required)")
    kwargs = env_record.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise error(f"{source}: env.kwargs must be an object, got {kwargs!r}")
    kwargs = {key: value for key, value in kwargs.items() if key != "oracle_budget"}
    try:
        key = json.dumps([env_record["id"], kwargs], sort_keys=True)
    except (TypeError, ValueError):
        raise error(f"{source}: env.kwargs are not plain JSON values") from None
    try:
        if key not in _TASKS:
            _TASKS[key] = make(env_record["id"], **kwargs).unwrapped
        task = _TASKS[key]
    except MorbenchError as exc:
        raise error(f"{source}: the record's env {env_record['id']!r} cannot be made here: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise error(f"{source}: env.kwargs {_clip(json.dumps(kwargs), 200)} are not accepted ({exc})") from None
    version = task.spec.version if task.spec is not None else None
    if env_record.get("version") != version:
        raise error(
            f"{source}: the record used {env_record['id']} version {env_record.get('version')!r}, this morbench "
            f"has version {version}; re-run it on the current version"
        )
    return task


def match_preference_grid(
    weights_list: Sequence[Any], grid: np.ndarray, where: str, error: type[MorbenchError] = InvalidRunError
) -> list[int]:
    """Index of the grid point of each preference; every grid point exactly once, nothing off the grid."""
    grid = np.asarray(grid, dtype=np.float64)
    matched: list[int] = []
    for p, weights in enumerate(weights_list):
        try:
            vector = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError):
            vector = np.empty(0)
        if vector.shape != (grid.shape[1],) or not np.all(np.isfinite(vector)):
            raise error(f"{where}: preferences[{p}].weights {weights!r} must be {grid.shape[1]} finite numbers")
        hits = np.flatnonzero(np.all(np.abs(grid - vector) <= WEIGHT_TOLERANCE, axis=1))
        if hits.size == 0:
            raise error(
                f"{where}: preferences[{p}].weights {weights!r} are not on the task's preference grid "
                f"({len(grid)} points, e.g. {grid[0].tolist()})"
            )
        if int(hits[0]) in matched:
            raise error(f"{where}: preference {weights!r} appears twice; every grid point must appear once")
        matched.append(int(hits[0]))
    missing = sorted(set(range(len(grid))) - set(matched))
    if missing:
        raise error(
            f"{where}: preferences {[grid[i].tolist() for i in missing]} of the task's grid are missing; "
            f"every grid point ({len(grid)} in all) must be evaluated"
        )
    return matched


def check_reward_rows(
    rows: Any, low: np.ndarray, high: np.ndarray, where: str, error: type[MorbenchError] = InvalidRunError
) -> np.ndarray:
    """``rows`` as an ``(n, k)`` float array: finite numbers inside ``[low, high]`` (the task's reward space)."""
    k = len(low)
    if not isinstance(rows, list) or not all(isinstance(row, list) and len(row) == k for row in rows):
        raise error(f"{where}: must be a list of rows of {k} numbers (one per objective)")
    for i, row in enumerate(rows):
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in row):
            raise error(f"{where}[{i}] = {_clip(repr(row), 120)}: rewards must be finite numbers")
    array = np.asarray(rows, dtype=np.float64).reshape(len(rows), k)
    outside = np.flatnonzero(np.any((array < low - 1e-9) | (array > high + 1e-9), axis=1))
    if outside.size:
        i = int(outside[0])
        raise error(
            f"{where}[{i}] = {_row(array[i])}: outside the task's reward space [{_row(low)}, {_row(high)}] "
            f"({outside.size} row(s) in all)"
        )
    return array


def mismatched_rows(
    claimed: np.ndarray,
    recomputed: np.ndarray,
    claimed_valid: Sequence[bool] | None = None,
    valid: np.ndarray | None = None,
    tolerance: float = REWARD_TOLERANCE,
) -> np.ndarray:
    """Indices of rows whose claimed rewards (or validity flags) differ from the recomputed ones."""
    difference = np.abs(np.asarray(claimed, dtype=np.float64) - np.asarray(recomputed, dtype=np.float64))
    bad = np.any(difference > tolerance, axis=1)
    if claimed_valid is not None and valid is not None:
        bad |= np.asarray(claimed_valid, dtype=bool) != np.asarray(valid, dtype=bool)
    return np.flatnonzero(bad)


def resolve_contexts(
    keys: Any, task: Any, n: int, where: str, error: type[MorbenchError] = InvalidRunError
) -> list[Any]:
    """The task's Context objects for the recorded context keys (None for unconditional tasks)."""
    if task.contexts is None:
        if keys is not None:
            raise error(f"{where}: contexts given, but {task.spec.id} is not prompt-conditioned")
        return [None] * n
    if not isinstance(keys, list) or len(keys) != n:
        raise error(f"{where}: {task.spec.id} is prompt-conditioned; every sample needs its context key")
    by_key = {context.key: context for context in task.contexts}
    unknown = sorted({str(key) for key in keys if not isinstance(key, str) or key not in by_key})
    if unknown:
        raise error(f"{where}: context keys {[_clip(k, 40) for k in unknown[:5]]} are not in the evaluation split")
    return [by_key[key] for key in keys]


def verify_evaluation(
    evaluation: dict[str, Any], source: str, task: Any | None = None, error: type[MorbenchError] = InvalidRunError
) -> dict[str, Any]:
    """Check a structurally valid ``morbench-evaluation/1`` record against its task and re-score it.

    Returns a copy whose preferences follow the task's grid order and whose ``rewards``, ``valid`` and
    ``judge_rewards`` are the recomputed ones. Raises ``error`` naming ``source`` and the offending rows.
    """
    task = task if task is not None else task_for_record(evaluation.get("env"), source, error)
    names = list(evaluation["objective_names"])
    if names != list(task.objective_names):
        raise error(f"{source}: objective_names {names} do not match the task's {list(task.objective_names)}")
    low = np.asarray(task.reward_space.low, dtype=np.float64)
    high = np.asarray(task.reward_space.high, dtype=np.float64)
    grid = np.asarray(task.preference_grid, dtype=np.float64)
    preferences = evaluation["preferences"]
    order = match_preference_grid([entry["weights"] for entry in preferences], grid, source, error)
    offending: list[str] = []
    entries: list[dict[str, Any]] = []
    for p, entry in sorted(enumerate(preferences), key=lambda item: order[item[0]]):
        where = f"{source}: preferences[{p}]"
        sequences = entry["sequences"]
        claimed = check_reward_rows(entry["rewards"], low, high, f"{where}.rewards", error)
        claimed_judge = None
        if entry.get("judge_rewards") is not None:
            if task.judge is None:
                raise error(f"{where}: judge_rewards given, but {task.spec.id} has no held-out judge")
            if not task.protocol.judges(grid[order[p]]):
                raise error(
                    f"{where}: judge_rewards given at {entry['weights']}, but {task.spec.id} judges only the uniform "
                    "preference's samples (its protocol)"
                )
            judge_low = np.asarray(getattr(task.judge, "reward_low", low), dtype=np.float64)
            judge_high = np.asarray(getattr(task.judge, "reward_high", high), dtype=np.float64)
            claimed_judge = check_reward_rows(
                entry["judge_rewards"], judge_low, judge_high, f"{where}.judge_rewards", error
            )
        contexts = resolve_contexts(entry.get("contexts"), task, len(sequences), where, error)
        result = task.score(sequences, contexts)
        rewards = np.asarray(result.rewards, dtype=np.float64)
        valid = np.asarray(result.valid, dtype=bool)
        for i in mismatched_rows(claimed, rewards, entry["valid"], valid):
            offending.append(
                f"preference={entry['weights']} index={int(i)} sequence={_clip(sequences[i])!r}: rewards/valid "
                f"claimed {_row(claimed[i])}/{entry['valid'][i]} vs recomputed {_row(rewards[i])}/{bool(valid[i])}"
            )
        judge = None
        if task.judge is not None and claimed_judge is not None:
            judge = np.asarray(task.judge_score(sequences, contexts).rewards, dtype=np.float64)
            for i in mismatched_rows(claimed_judge, judge):
                offending.append(
                    f"preference={entry['weights']} index={int(i)} sequence={_clip(sequences[i])!r}: judge rewards "
                    f"claimed {_row(claimed_judge[i])} vs recomputed {_row(judge[i])}"
                )
        entries.append(
            {
                **entry,
                "weights": grid[order[p]].tolist(),
                "rewards": rewards.tolist(),
                "valid": valid.tolist(),
                "judge_rewards": judge.tolist() if judge is not None else entry.get("judge_rewards"),
            }
        )
    if offending:
        shown = "\n  ".join(offending[:MAX_ROWS_SHOWN])
        more = f"\n  ... and {len(offending) - MAX_ROWS_SHOWN} more" if len(offending) > MAX_ROWS_SHOWN else ""
        raise error(
            f"{source}: {len(offending)} sample(s) do not match re-scoring with {task.spec.id}'s oracle "
            f"(tolerance {REWARD_TOLERANCE:g} absolute per objective); the file was edited or written by "
            f"another morbench version:\n  {shown}{more}"
        )
    return {**evaluation, "preferences": entries}
