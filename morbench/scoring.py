"""The scorer: every metric recomputed from a run's raw evaluation samples, the same way for every method.

``score_evaluation`` scores one run (one seed); ``aggregate`` combines seeds (mean, std, 95% Student-t
interval); ``score_directory`` does both for every run under a directory, adds each run's judge gap relative to
the prior's, and writes ``metrics.json``, ``report.md``, ``results.csv`` and the plots; ``format_table`` renders
the terminal table of ``morbench score``. Definitions: ``docs/metrics.md`` (also written into every report.md).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from morbench import metrics
from morbench.errors import InvalidRunError, UnknownEnvError
from morbench.preferences import uniform_preference
from morbench.runs import atomic_write_bytes, atomic_write_json, find_runs, read_evaluation, read_run
from morbench.seeding import preference_seed

if TYPE_CHECKING:
    from morbench.core import TokenEnv

__all__ = [
    "HEADLINE_METRICS",
    "METRIC_DEFINITIONS",
    "add_judge_gap_vs_prior",
    "aggregate",
    "canonical_uniqueness",
    "format_table",
    "prior_judge_gap",
    "score_directory",
    "score_evaluation",
    "score_run",
]

# the columns of results tables, in order (all higher-is-better except judge_gap_vs_prior and kl_to_prior)
HEADLINE_METRICS = (
    "hypervolume",
    "served_utility",
    "average_reward",
    "icv",
    "icv_samples",
    "expected_utility",
    "cardinality",
    "validity",
    "uniqueness",
    "judge_gap_vs_prior",
    "kl_to_prior",
)
# unbounded ratios (+inf for a policy collapsed onto one sequence): over seeds they are averaged as their inverse,
# the coefficient of variation, so a collapsed seed counts (as CV 0) and cannot dominate or vanish from a mean
AVERAGED_AS_INVERSE = ("icv", "icv_samples")
PRIOR_METHOD = "prior"  # the method name of the untuned prior's runs (baselines.reference.train_prior)

# shipped in every report.md (a pip install has no docs/ folder); docs/metrics.md has the full text
METRIC_DEFINITIONS = """\
All metrics are recomputed from the raw samples; objectives are maximised. `p_w`: mean reward vector of the
samples drawn at preference `w`; `u`: the uniform preference; the grid has `P` preferences.

- `hypervolume` (headline): cross-fitted hypervolume. Each preference's samples are split in random halves A
  and B; each half's per-preference means are shrunk toward their grand mean (positive-part James-Stein); a
  point `z` of objective space is assigned by half A to `i*(z) = argmax_i min_k (a_ik - z_k)` and counts when
  half B's mean of that point dominates it: `vol{z >= ref : b_i*(z) >= z}`. Averaged over both directions and
  32 seeded halvings (Halton integration, 4,096 points). A policy that ignores the preference scores its pooled
  point's hypervolume; a genuine front keeps its volume.
- `hypervolume_plugin`: exact hypervolume of the `p_w` (biased upward by sampling noise; not for ranking).
- `served_utility`: `mean_w w . p_w` (each preference served by its own samples; no maximum, no noise bias).
- `expected_utility`: `mean_w max_i w . p_i`, cross-fitted (half A picks `i`, half B values it);
  `expected_utility_plugin` is the biased plug-in.
- `cardinality`: non-dominated `p_w` that differ beyond noise (a kept mean `q` absorbs `p` when
  `q_k + 1.96 sqrt(se_q,k^2 + se_p,k^2) >= p_k` for every `k`); `cardinality_plugin`: plug-in count.
- `average_reward`, `icv`, `validity`, `uniqueness` (distinct canonical forms among valid samples), `judge_gap`,
  `kl_to_prior`: at `u`. `judge_gap_vs_prior` = the run's judge gap minus the prior's judge gap (same task and
  seed; the prior run of that seed in the scored set, else the prior sampled with the protocol at `u`).
- `icv_samples`: `mean_n s_n / std_n s_n` of the per-sample mean rewards `s_n` at `u`; `cv_samples` is its inverse
  (`inf` and 0 for a policy collapsed onto one sequence; spreads below 1e-12 of the mean count as 0).
- Over seeds: mean, std (ddof=1) and `ci95` = `mean -/+ t_{0.975, n-1} std / sqrt(n)` (Student t). `icv` and
  `icv_samples` are averaged as their inverse (the CV): mean = 1 / mean CV, `ci95` the inverted CV interval.
"""


def _task_for(env_record: dict[str, Any]) -> TokenEnv:
    from morbench.registry import make

    try:
        env = make(env_record["id"], **env_record.get("kwargs", {}))
    except UnknownEnvError as exc:
        raise InvalidRunError(f"the run's env {env_record['id']!r} is not registered here: {exc}") from None
    task = cast("TokenEnv", env.unwrapped)
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


def canonical_uniqueness(
    task: Any, sequences: Sequence[str], valid: Sequence[bool], contexts: Sequence[str | None] | None = None
) -> float:
    """Distinct canonical forms among the valid sequences / number of valid sequences (0 when none is valid).

    The canonical form is the task oracle's cache key (``task.oracle.canonicalize``: canonical SMILES for the
    molecule tasks, upper-case DNA, whitespace-normalised text), so ``"CCO"`` and ``"OCC"`` count once. On
    prompt-conditioned tasks the key is (context, canonical form). A sequence the oracle cannot canonicalize
    here keeps its raw string as key.
    """
    by_key = {c.key: c for c in (getattr(task, "contexts", None) or [])}
    keys = set()
    count = 0
    for i, (sequence, is_valid) in enumerate(zip(sequences, valid, strict=True)):
        if not is_valid:
            continue
        count += 1
        context_key = contexts[i] if contexts is not None else None
        try:
            key: Any = task.oracle.canonicalize(sequence, by_key.get(context_key))
        except Exception:  # any canonicalization failure: fall back to the raw string
            key = sequence
        keys.add((context_key, key))
    return len(keys) / count if count else 0.0


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
    mean_rows, rewards_per_preference, weights = [], [], []
    for entry in evaluation["preferences"]:
        rewards = np.asarray(entry["rewards"], dtype=np.float64)
        if not np.all(np.isfinite(rewards)):
            raise InvalidRunError(f"{source}: NaN or infinite rewards at preference {entry['weights']}")
        valid = np.asarray(entry["valid"], dtype=bool)
        mean = rewards.mean(axis=0)
        mean_rows.append(mean)
        rewards_per_preference.append(rewards)
        weights.append(np.asarray(entry["weights"], dtype=np.float64))
        row: dict[str, Any] = {
            "weights": entry["weights"],
            "mean": mean.tolist(),
            "std": rewards.std(axis=0, ddof=1).tolist() if len(rewards) > 1 else [float("nan")] * k,
            "utility": float(np.asarray(entry["weights"]) @ mean),
            "validity": float(valid.mean()),
            "samples": len(rewards),
        }
        if entry.get("judge_rewards") is not None:
            row["judge_mean"] = np.asarray(entry["judge_rewards"], dtype=np.float64).mean(axis=0).tolist()
        per_preference.append(row)
    means = np.asarray(mean_rows)
    sample_counts = sorted({len(r) for r in rewards_per_preference})
    crossfit = min(sample_counts) >= 4  # cross-fitting needs two halves of >= 2 samples

    uniform = _uniform_entry(evaluation["preferences"], k)
    uniform_rewards = np.asarray(uniform["rewards"], dtype=np.float64)
    uniform_means = uniform_rewards.mean(axis=0)
    hypervolume_plugin = metrics.hypervolume(means, reference)
    expected_utility_plugin = metrics.expected_utility(means, grid)
    result: dict[str, Any] = {
        "env": evaluation["env"]["id"],
        "method": evaluation.get("method", "unknown"),
        "seed": evaluation.get("seed"),
        "objective_names": names,
        "samples_per_preference": sample_counts[0] if len(sample_counts) == 1 else sample_counts,
        "per_objective_mean": dict(zip(names, uniform_means.tolist(), strict=True)),
        "per_objective_std": dict(zip(names, uniform_rewards.std(axis=0, ddof=1).tolist(), strict=True)),
        "average_reward": float(uniform_means.mean()),
        "icv": metrics.icv(uniform_means),
        "icv_samples": metrics.icv_samples(uniform_rewards),
        "cv_samples": metrics.cv_samples(uniform_rewards),
        "hypervolume": (
            metrics.crossfit_hypervolume(rewards_per_preference, reference) if crossfit else hypervolume_plugin
        ),
        "hypervolume_plugin": hypervolume_plugin,
        "served_utility": metrics.served_utility(means, np.asarray(weights)),
        "expected_utility": (
            metrics.crossfit_expected_utility(rewards_per_preference, grid) if crossfit else expected_utility_plugin
        ),
        "expected_utility_plugin": expected_utility_plugin,
        "cardinality": metrics.noise_aware_cardinality(rewards_per_preference),
        "cardinality_plugin": metrics.cardinality(means),
        "validity": float(np.mean(uniform["valid"])),
        # canonical forms cost an oracle canonicalization per sample (~0.4 ms for a SMILES): at u only
        "uniqueness": canonical_uniqueness(task, uniform["sequences"], uniform["valid"], uniform.get("contexts")),
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
    front = task.pareto_front()
    if front is not None:
        result["igd"] = metrics.igd(means, front)
        result["maximum_utility_loss_plugin"] = metrics.maximum_utility_loss(means, front, grid)
        result["maximum_utility_loss"] = (
            metrics.crossfit_maximum_utility_loss(rewards_per_preference, front, grid)
            if crossfit
            else result["maximum_utility_loss_plugin"]
        )
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


# -- judge gap relative to the prior's -------------------------------------------------------------------------
_PRIOR_GAPS: dict[tuple[str, int, int], float] = {}


def prior_judge_gap(task: Any, seed: int, samples: int) -> float:
    """The untuned prior's judge gap on ``task`` at the uniform preference, sampled with the protocol.

    Reproduces the uniform-preference samples of ``morbench train prior --seed <seed>`` (same prior, same
    sampling seed ``seeding.preference_seed(seed, index of u in the grid)``, ``samples`` samples) and returns
    ``mean oracle reward - mean judge reward`` (averaged over objectives). NaN for tasks without a judge.
    Cached per (env, seed, samples) for the process; costs one preference's worth of prior sampling.
    """
    if getattr(task, "judge", None) is None:
        return float("nan")
    env_id = task.spec.id if task.spec is not None else type(task).__name__
    key = (env_id, int(seed), int(samples))
    if key not in _PRIOR_GAPS:
        from morbench.evaluation import LMPolicy, evaluation_contexts
        from morbench.models import load_prior

        grid = np.asarray(task.preference_grid)
        uniform = uniform_preference(task.reward_dim)
        index = int(np.argmin(np.abs(grid - uniform).sum(axis=1)))
        contexts = evaluation_contexts(task, samples, seed)
        policy = LMPolicy(load_prior(task, seed=seed), task)
        drawn = policy.sample(grid[index], contexts, seed=preference_seed(seed, index))
        oracle = task.score(drawn.sequences, contexts).rewards
        judge = task.judge_score(drawn.sequences, contexts).rewards
        _PRIOR_GAPS[key] = float(np.mean(oracle) - np.mean(judge))
    return _PRIOR_GAPS[key]


def add_judge_gap_vs_prior(
    results: list[dict[str, Any]], sample_prior: bool = True, use_prior_runs: bool = True
) -> None:
    """Set ``judge_gap_vs_prior`` (and ``prior_judge_gap``, ``prior_judge_gap_source``) on every judged result.

    The prior's gap comes from the prior run of the same env and seed among ``results`` (unless
    ``use_prior_runs`` is False), else (with ``sample_prior``) from :func:`prior_judge_gap`.

    The leaderboard passes ``use_prior_runs=False``: a submission that calls its method "prior" must not set the
    reference its own judge gap is measured against, so the board always samples the prior itself.
    """
    priors = {
        (r["env"], r["seed"]): r for r in results if use_prior_runs and r["method"] == PRIOR_METHOD and "judge_gap" in r
    }
    tasks: dict[str, Any] = {}  # one env per id, not one per result
    for result in results:
        if "judge_gap" not in result:
            continue
        prior = priors.get((result["env"], result["seed"]))
        if prior is not None:
            gap, source = prior["judge_gap"], f"prior run, seed {result['seed']}"
        elif sample_prior:
            samples = result["samples_per_preference"]
            samples = samples if isinstance(samples, int) else max(samples)
            from morbench.registry import make

            if result["env"] not in tasks:
                tasks[result["env"]] = make(result["env"]).unwrapped
            gap = prior_judge_gap(tasks[result["env"]], result["seed"], samples)
            source = f"prior sampled by the scorer, seed {result['seed']}, {samples} samples"
        else:
            continue
        result["prior_judge_gap"] = gap
        result["prior_judge_gap_source"] = source
        result["judge_gap_vs_prior"] = result["judge_gap"] - gap if math.isfinite(gap) else float("nan")


# -- over seeds ------------------------------------------------------------------------------------------------
def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std (ddof=1) and 95% Student-t interval over seeds of every scalar metric, per (env, method).

    A seed that appears twice for the same (env, method) is refused (it would shrink the interval with no new
    information); mixed sample counts between seeds are listed in the entry's ``warnings``.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        groups[(result["env"], result["method"])].append(result)
    out = {}
    for (env_id, method), runs in sorted(groups.items()):
        by_seed: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for run in runs:
            by_seed[run["seed"]].append(run)
        repeated = {seed: group for seed, group in by_seed.items() if len(group) > 1}
        if repeated:
            seed, group = next(iter(sorted(repeated.items(), key=lambda item: str(item[0]))))
            where = ", ".join(str(r.get("run_dir", "a submitted evaluation")) for r in group)
            raise InvalidRunError(
                f"{method} on {env_id}: seed {seed} appears {len(group)} times ({where}); a repeated seed is not "
                "a new seed - remove the copies or re-run with distinct seeds"
            )
        counts = sorted({int(c) for r in runs for c in np.atleast_1d(r.get("samples_per_preference", []))})
        summary: dict[str, Any] = {
            "env": env_id,
            "method": method,
            "seeds": sorted(r["seed"] for r in runs),
            "samples_per_preference": counts[0] if len(counts) == 1 else counts,
            "warnings": [],
        }
        if len(counts) > 1:
            summary["warnings"].append(
                f"mixed samples per preference {counts} across seeds: front metrics are not comparable"
            )
        scalars = defaultdict(list)
        for run in runs:
            for key, value in _scalars(run).items():
                scalars[key].append(value)
        for key, values in scalars.items():
            summary[key] = _over_inverse_seeds(values) if key in AVERAGED_AS_INVERSE else _over_seeds(values)
        out[f"{env_id}::{method}"] = summary
    return out


def _over_seeds(values: Sequence[float]) -> dict[str, Any]:
    """Mean, std (ddof=1), 95% t-interval and count of the finite ``values``."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low, high = metrics.t_interval(finite)
    return {
        "mean": float(np.mean(finite)) if finite else None,
        "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
        "ci95": [_finite(low), _finite(high)],
        "n": len(finite),
    }


def _over_inverse_seeds(values: Sequence[float]) -> dict[str, Any]:
    """An inverse coefficient of variation over seeds, averaged as its inverse (the CV, :data:`AVERAGED_AS_INVERSE`).

    ``mean`` is 1 / (mean CV) and ``ci95`` the inverted CV interval (its upper end null when the CV interval
    reaches 0); ``std`` is null (an ICV's spread over seeds is not a meaningful number); ``cv`` holds the CV's
    own summary. A collapsed seed (ICV +inf) counts with CV 0 instead of dropping out.
    """
    cv = _over_seeds([1.0 / v for v in values if v is not None and not math.isnan(v) and v != 0])
    mean, (low, high) = cv["mean"], cv["ci95"]

    def inverse(x: float | None) -> float | None:
        return None if x is None or x <= 0 else 1.0 / x

    return {"mean": inverse(mean), "std": None, "ci95": [inverse(high), inverse(low)], "n": cv["n"], "cv": cv}


def _scalars(result: dict[str, Any]) -> dict[str, float]:
    flat = {}
    for key, value in result.items():
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and key not in ("seed", "samples_per_preference")
        ):
            flat[key] = float(value)
    for prefix in ("per_objective_mean", "judge_per_objective_mean", "domain", "compute"):
        for key, value in (result.get(prefix) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{prefix}.{key}"] = float(value)
    return flat


def table_warnings(summary: dict[str, Any]) -> list[str]:
    """Per-entry warnings, plus one per env whose methods were evaluated with different sample counts."""
    lines = [f"{e['method']} on {e['env']}: {w}" for e in summary.values() for w in e.get("warnings", [])]
    by_env: dict[str, dict[str, Any]] = defaultdict(dict)
    for entry in summary.values():
        by_env[entry["env"]][entry["method"]] = entry.get("samples_per_preference")
    for env_id, counts in sorted(by_env.items()):
        if len({json.dumps(c) for c in counts.values()}) > 1:
            shown = ", ".join(f"{m}: {c}" for m, c in sorted(counts.items()))
            lines.append(
                f"{env_id}: methods were evaluated with different samples per preference ({shown}); "
                "hypervolume and the other front metrics are only comparable at equal sample counts"
            )
    return lines


def score_directory(
    root: str | Path,
    out: str | Path | None = None,
    plots: bool = True,
    sample_prior: bool = True,
    restored: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Score every run under ``root``; write metrics.json, results.csv/.md, report.md and plots to ``out``.

    ``sample_prior``: where a run has a judge gap but no prior run of its env and seed is among the runs, sample
    the prior to get the prior's judge gap (:func:`prior_judge_gap`); without it ``judge_gap_vs_prior`` is omitted.

    The returned payload has ``runs`` (one result per run), ``summary`` (per env and method, over seeds) and
    ``warnings`` (mixed sample counts); :func:`format_table` renders it for a terminal.

    ``restored``: results of runs whose folders are not here (a suite's scored records,
    :func:`morbench.benchmark.restored_results`), scored with the others.
    """
    root = Path(root)
    out = Path(out) if out is not None else root
    run_dirs = find_runs(root) if root.exists() or not restored else []
    if not run_dirs and not restored:
        raise InvalidRunError(f"{root}: no run directories (no run.json) found")
    results = [score_run(d) for d in run_dirs] + [dict(r) for r in restored]
    add_judge_gap_vs_prior(results, sample_prior=sample_prior)
    summary = aggregate(results)
    payload = {"runs": results, "summary": summary, "warnings": table_warnings(summary)}
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
        row = {
            "env": entry["env"],
            "method": entry["method"],
            "seeds": len(entry["seeds"]),
            "samples_per_preference": entry.get("samples_per_preference"),
        }
        for key in (
            *HEADLINE_METRICS,
            "hypervolume_plugin",
            "judge_gap",
            "igd",
            "maximum_utility_loss",
            "compute.oracle_calls",
            "compute.sampled_tokens",
            "compute.wall_seconds",
        ):
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
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    return "" if value is None else str(value)


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


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
                cells.append(_csv_field(_cell(value)))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]|~])")  # emphasis, code, links, table cells, strike


def escape_markdown(text: Any) -> str:
    """Text safe inside a Markdown table cell.

    One line (so no heading or list can start), HTML escaped (no tag), and the characters that open emphasis,
    code, links, strikethrough or a new cell backslashed.
    """
    one_line = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def table_markdown(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(escape_markdown(_cell(row.get(c, ""))) for c in columns) + " |" for row in rows]
    return "\n".join([header, rule, *body]) + "\n"


def _sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(row: dict[str, Any]) -> tuple[float, str]:
        value = row.get("hypervolume")
        mean = value.get("mean") if isinstance(value, dict) else None
        return (-mean if mean is not None else math.inf, str(row["method"]))

    return sorted(rows, key=key)


def report_markdown(summary: dict[str, Any], results: list[dict[str, Any]], figures: list[Path], out: Path) -> str:
    rows = results_table(summary)
    by_env = defaultdict(list)
    for row in rows:
        by_env[row["env"]].append(row)
    hardware = results[0].get("hardware", {}) if results else {}
    lines = [
        "# morbench results",
        "",
        escape_markdown(
            f"Runs scored: {len(results)}. Hardware of the first run: {hardware.get('processor', '?')}, "
            f"{hardware.get('cpu_count', '?')} cores, accelerator {hardware.get('accelerator', 'none')}, "
            f"torch {hardware.get('torch', '?')}, morbench {hardware.get('morbench', '?')}."
        ),
        "",
        "Cells are mean ± std over seeds; metrics.json has 95% Student-t intervals (`ci95`). Metric definitions "
        "are at the end of this report.",
        "",
    ]
    warnings = table_warnings(summary)
    if warnings:
        lines += ["**Warnings**", "", *[f"- {escape_markdown(w)}" for w in warnings], ""]
    for env_id, env_rows in by_env.items():
        columns = [
            "method",
            "seeds",
            "samples_per_preference",
            *[c for c in (*HEADLINE_METRICS, "hypervolume_plugin", "igd") if any(c in r for r in env_rows)],
            *sorted({c for r in env_rows for c in r if c.startswith("domain.")}),
            "compute.oracle_calls",
            "compute.sampled_tokens",
            "compute.wall_seconds",
        ]
        lines += [f"## {escape_markdown(env_id)}", "", table_markdown(_sort_rows(env_rows), columns)]
    if figures:
        lines += ["## Plots", ""]
        lines += [f"![{escape_markdown(f.stem)}]({f.relative_to(out).as_posix()})" for f in figures]
        lines.append("")
    lines += ["## Metric definitions", "", METRIC_DEFINITIONS]
    return "\n".join(lines) + "\n"


# -- terminal table --------------------------------------------------------------------------------------------
def _interval_cell(value: Any, digits: int = 3) -> str:
    if not isinstance(value, dict) or value.get("mean") is None:
        return "n/a"
    mean = value["mean"]
    low, high = value.get("ci95") or (None, None)
    if low is None or high is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def _mean_cell(value: Any, digits: int = 3) -> str:
    if not isinstance(value, dict) or value.get("mean") is None:
        return "n/a"
    return f"{value['mean']:.{digits}f}"


def format_table(payload: dict[str, Any]) -> str:
    """A plain-text results table per env (what ``morbench score`` prints), then the warnings.

    Hypervolume is shown with the half-width of its 95% t-interval over seeds; the other cells are means.
    """
    summary = payload["summary"]
    columns = [
        ("method", "method"),
        ("seeds", "seeds"),
        ("n/pref", "samples_per_preference"),
        ("hypervolume ±95%", "hypervolume"),
        ("served utility", "served_utility"),
        ("avg reward", "average_reward"),
        ("validity", "validity"),
        ("uniqueness", "uniqueness"),
        ("judge gap vs prior", "judge_gap_vs_prior"),
        ("KL to prior", "kl_to_prior"),
    ]
    by_env: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in summary.values():
        by_env[entry["env"]].append(entry)
    blocks = []
    for env_id, entries in sorted(by_env.items()):
        rows = []
        for entry in _sort_rows(entries):
            cells = []
            for _, key in columns:
                if key == "method":
                    cells.append(" ".join(str(entry["method"]).split())[:40])
                elif key == "seeds":
                    cells.append(str(len(entry["seeds"])))
                elif key == "samples_per_preference":
                    cells.append(_cell(entry.get(key)))
                elif key == "hypervolume":
                    cells.append(_interval_cell(entry.get(key)))
                else:
                    cells.append(_mean_cell(entry.get(key)))
            rows.append(cells)
        headers = [title for title, _ in columns]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

        def line(cells: list[str], widths: list[int] = widths) -> str:
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        blocks.append("\n".join([env_id, line(headers), line(["-" * w for w in widths]), *map(line, rows)]))
    warnings = payload.get("warnings") or table_warnings(summary)
    text = "\n\n".join(blocks)
    if warnings:
        text += "\n\nWARNINGS\n" + "\n".join(f"- {w}" for w in warnings)
    return text + "\n"
