"""The scorer: every metric recomputed from a run's raw evaluation samples, the same way for every method.

``score_evaluation`` scores one run (one seed); ``aggregate`` combines seeds (mean, std, 95% bootstrap CI);
``score_directory`` does both for every run under a directory and writes ``metrics.json``, ``report.md``,
``results.csv`` and the plots. Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morbench import metrics
from morbench.errors import InvalidRunError, UnknownEnvError
from morbench.preferences import uniform_preference
from morbench.runs import atomic_write_bytes, atomic_write_json, find_runs, read_evaluation, read_run

__all__ = ["HEADLINE_METRICS", "aggregate", "score_directory", "score_evaluation", "score_run"]

# the columns of results tables, in order (direction: all higher-is-better except those in LOWER_IS_BETTER)
HEADLINE_METRICS = (
    "hypervolume",
    "average_reward",
    "icv",
    "icv_samples",
    "expected_utility",
    "cardinality",
    "validity",
    "uniqueness",
    "judge_gap",
    "kl_to_prior",
)
LOWER_IS_BETTER = {"igd", "maximum_utility_loss", "judge_gap", "kl_to_prior"}


def _task_for(env_record: dict[str, Any]):
    from morbench.registry import make

    try:
        env = make(env_record["id"], **env_record.get("kwargs", {}))
    except UnknownEnvError as exc:
        raise InvalidRunError(f"the run's env {env_record['id']!r} is not registered here: {exc}") from None
    task = env.unwrapped
    if task.spec is not None and task.spec.version != env_record.get("version"):
        raise InvalidRunError(
            f"the run used {env_record['id']} version {env_record.get('version')}, "
            f"this morbench has version {task.spec.version}"
        )
    return task


def _uniform_entry(preferences: list[dict[str, Any]], k: int) -> dict[str, Any]:
    uniform = uniform_preference(k)
    best = min(preferences, key=lambda e: float(np.abs(np.asarray(e["weights"]) - uniform).sum()))
    if not np.allclose(best["weights"], uniform, atol=1e-6):
        raise InvalidRunError(
            f"no evaluation at the uniform preference {uniform.tolist()}; it is needed for the average reward and ICV"
        )
    return best


def score_evaluation(
    evaluation: dict[str, Any], task: Any | None = None, source: str = "evaluation", domain: bool = True
) -> dict[str, Any]:
    """All metrics of one evaluation record (one method, env and seed)."""
    names = evaluation["objective_names"]
    k = len(names)
    task = task if task is not None else _task_for(evaluation["env"])
    if tuple(names) != tuple(task.objective_names):
        raise InvalidRunError(
            f"{source}: objectives {names} do not match {task.spec.id if task.spec else ''}'s "
            f"{list(task.objective_names)}"
        )
    reference = np.asarray(task.reference_point, dtype=np.float64)
    grid = np.asarray(task.preference_grid)

    per_preference = []
    means = []
    for entry in evaluation["preferences"]:
        rewards = np.asarray(entry["rewards"], dtype=np.float64)
        if not np.all(np.isfinite(rewards)):
            raise InvalidRunError(f"{source}: NaN or infinite rewards at preference {entry['weights']}")
        valid = np.asarray(entry["valid"], dtype=bool)
        mean = rewards.mean(axis=0)
        means.append(mean)
        valid_sequences = [s for s, v in zip(entry["sequences"], valid, strict=True) if v]
        row: dict[str, Any] = {
            "weights": entry["weights"],
            "mean": mean.tolist(),
            "std": rewards.std(axis=0, ddof=1).tolist() if len(rewards) > 1 else [float("nan")] * k,
            "utility": float(np.asarray(entry["weights"]) @ mean),
            "validity": float(valid.mean()),
            "uniqueness": len(set(valid_sequences)) / len(valid_sequences) if valid_sequences else 0.0,
            "samples": len(rewards),
        }
        if entry.get("judge_rewards") is not None:
            row["judge_mean"] = np.asarray(entry["judge_rewards"], dtype=np.float64).mean(axis=0).tolist()
        per_preference.append(row)
    means = np.asarray(means)

    uniform = _uniform_entry(evaluation["preferences"], k)
    uniform_rewards = np.asarray(uniform["rewards"], dtype=np.float64)
    uniform_means = uniform_rewards.mean(axis=0)
    result: dict[str, Any] = {
        "env": evaluation["env"]["id"],
        "method": evaluation.get("method", "unknown"),
        "seed": evaluation.get("seed"),
        "objective_names": names,
        "per_objective_mean": dict(zip(names, uniform_means.tolist(), strict=True)),
        "per_objective_std": dict(zip(names, uniform_rewards.std(axis=0, ddof=1).tolist(), strict=True)),
        "average_reward": float(uniform_means.mean()),
        "icv": metrics.icv(uniform_means),
        "icv_samples": metrics.icv_samples(uniform_rewards),
        "hypervolume": metrics.hypervolume(means, reference),
        "expected_utility": metrics.expected_utility(means, grid),
        "cardinality": metrics.cardinality(means),
        "validity": float(np.mean(uniform["valid"])),
        "uniqueness": next(r["uniqueness"] for r in per_preference if r["weights"] == uniform["weights"]),
        "front": metrics.non_dominated(means).tolist(),
        "per_preference": per_preference,
    }
    if uniform.get("judge_rewards") is not None:
        judge_means = np.asarray(uniform["judge_rewards"], dtype=np.float64).mean(axis=0)
        result["judge_per_objective_mean"] = dict(zip(names, judge_means.tolist(), strict=True))
        result["judge_average_reward"] = float(judge_means.mean())
        result["judge_gap"] = float(uniform_means.mean() - judge_means.mean())  # >0: the training oracle is hacked
    logprobs, prior_logprobs = uniform.get("logprobs"), uniform.get("prior_logprobs")
    if logprobs is not None and prior_logprobs is not None:
        diff = np.asarray(logprobs, dtype=np.float64) - np.asarray(prior_logprobs, dtype=np.float64)
        diff = diff[np.isfinite(diff)]
        result["kl_to_prior"] = float(diff.mean()) if diff.size else float("nan")
    if prior_logprobs is not None:
        values = np.asarray(prior_logprobs, dtype=np.float64)
        result["prior_logprob"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    if hasattr(task, "pareto_front"):
        front = task.pareto_front()
        result["igd"] = metrics.igd(means, front)
        result["maximum_utility_loss"] = metrics.maximum_utility_loss(means, front, grid)
        result["true_front_hypervolume"] = metrics.hypervolume(front, reference)
    if domain:
        result["domain"] = {k2: _finite(v) for k2, v in task.domain_metrics(uniform["sequences"]).items()}
    return result


def _finite(value: Any) -> Any:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return value
    return value if math.isfinite(value) else None


def score_run(run_dir: str | Path, domain: bool = True) -> dict[str, Any]:
    """Score one complete run directory (checks that run.json and the evaluation agree)."""
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    evaluation = read_evaluation(run_dir)
    for key in ("method", "seed"):
        if record.get(key) != evaluation.get(key):
            raise InvalidRunError(
                f"{run_dir}: run.json says {key}={record.get(key)!r} but the evaluation says {evaluation.get(key)!r}"
            )
    if record["env"]["id"] != evaluation["env"]["id"]:
        raise InvalidRunError(f"{run_dir}: run.json and evaluation.json.gz name different envs")
    result = score_evaluation(evaluation, source=str(run_dir / "evaluation.json.gz"), domain=domain)
    result["compute"] = record.get("compute", {})
    result["hardware"] = record.get("hardware", {})
    result["run_dir"] = str(run_dir)
    return result


def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std (ddof=1) and 95% bootstrap CI over seeds of every scalar metric, per (env, method)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        groups[(result["env"], result["method"])].append(result)
    out = {}
    for (env_id, method), runs in sorted(groups.items()):
        summary: dict[str, Any] = {"env": env_id, "method": method, "seeds": sorted(r["seed"] for r in runs)}
        scalars = defaultdict(list)
        for run in runs:
            for key, value in _scalars(run).items():
                scalars[key].append(value)
        for key, values in scalars.items():
            finite = [v for v in values if v is not None and math.isfinite(v)]
            low, high = metrics.bootstrap_interval(finite)
            summary[key] = {
                "mean": float(np.mean(finite)) if finite else None,
                "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
                "ci95": [_finite(low), _finite(high)],
                "n": len(finite),
            }
        out[f"{env_id}::{method}"] = summary
    return out


def _scalars(result: dict[str, Any]) -> dict[str, float]:
    flat = {}
    for key, value in result.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "seed":
            flat[key] = float(value)
    for prefix in ("per_objective_mean", "judge_per_objective_mean", "domain", "compute"):
        for key, value in (result.get(prefix) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{prefix}.{key}"] = float(value)
    return flat


def score_directory(root: str | Path, out: str | Path | None = None, plots: bool = True) -> dict[str, Any]:
    """Score every run under ``root``; write metrics.json, results.csv/.md, report.md and plots to ``out``."""
    root = Path(root)
    out = Path(out) if out is not None else root
    run_dirs = find_runs(root)
    if not run_dirs:
        raise InvalidRunError(f"{root}: no run directories (no run.json) found")
    results = [score_run(d) for d in run_dirs]
    summary = aggregate(results)
    payload = {"runs": results, "summary": summary}
    atomic_write_json(out / "metrics.json", _jsonable(payload))
    table = results_table(summary)
    atomic_write_bytes(out / "results.csv", table_csv(table).encode())
    figures = []
    if plots:
        from morbench.plots import plot_all

        figures = plot_all(results, root, out)
    atomic_write_bytes(out / "report.md", report_markdown(summary, results, figures, out).encode())
    return payload


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return _finite(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def results_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in summary.values():
        row = {"env": entry["env"], "method": entry["method"], "seeds": len(entry["seeds"])}
        for key in (*HEADLINE_METRICS, "igd", "compute.oracle_calls", "compute.sampled_tokens", "compute.wall_seconds"):
            if key in entry:
                row[key] = entry[key]
        row.update({key: value for key, value in entry.items() if key.startswith("domain.")})
        rows.append(row)
    return rows


def _cell(value: Any, digits: int = 3) -> str:
    if isinstance(value, dict):
        mean, std = value.get("mean"), value.get("std")
        if mean is None:
            return "n/a"
        if abs(mean) >= 100:  # counts and seconds
            return f"{mean:,.0f}" + (f" ± {std:,.0f}" if std is not None else "")
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
    return str(value)


def table_csv(rows: list[dict[str, Any]]) -> str:
    columns = sorted({c for row in rows for c in row}, key=lambda c: (c not in ("env", "method", "seeds"), c))
    lines = [",".join(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, dict):
                cells.append("" if value.get("mean") is None else f"{value['mean']:.6g}")
            else:
                cells.append("" if value is None else str(value))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def table_markdown(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join([header, rule, *body]) + "\n"


def report_markdown(summary: dict[str, Any], results: list[dict[str, Any]], figures: list[Path], out: Path) -> str:
    rows = results_table(summary)
    by_env = defaultdict(list)
    for row in rows:
        by_env[row["env"]].append(row)
    hardware = results[0].get("hardware", {}) if results else {}
    lines = [
        "# morbench results",
        "",
        f"Runs scored: {len(results)}. Hardware of the first run: {hardware.get('processor', '?')}, "
        f"{hardware.get('cpu_count', '?')} cores, accelerator {hardware.get('accelerator', 'none')}, "
        f"torch {hardware.get('torch', '?')}, morbench {hardware.get('morbench', '?')}.",
        "Cells are mean ± std over seeds; metrics.json has 95% bootstrap intervals. Definitions: docs/metrics.md.",
        "",
    ]
    for env_id, env_rows in by_env.items():
        env_rows.sort(
            key=lambda r: (
                -(r.get("hypervolume", {}) or {}).get("mean", -1e9) if isinstance(r.get("hypervolume"), dict) else 0
            )
        )
        columns = [
            "method",
            "seeds",
            *[c for c in (*HEADLINE_METRICS, "igd") if any(c in r for r in env_rows)],
            *sorted({c for r in env_rows for c in r if c.startswith("domain.")}),
            "compute.oracle_calls",
            "compute.sampled_tokens",
            "compute.wall_seconds",
        ]
        lines += [f"## {env_id}", "", table_markdown(env_rows, columns)]
    if figures:
        lines += ["## Plots", ""]
        lines += [f"![{f.stem}]({f.relative_to(out).as_posix()})" for f in figures]
    return "\n".join(lines) + "\n"


def load_metrics(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidRunError(f"{path}: cannot read metrics ({exc})") from None
