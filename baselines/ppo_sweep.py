"""Which PPO settings should a suite use on a task? A small grid on a validation seed, as JSON.

``python -m morbench.baselines.ppo_sweep --env morbench/Enhancer-v0`` trains Rewarded Soups and MORLHF on the task
at its small-suite budget for every point of a grid of PPO learning rates and KL coefficients (the other settings are
the suite's), with one validation seed that no suite ranks (:data:`VALIDATION_SEED`), evaluates every policy with
:data:`EVAL_SAMPLES` samples per preference, and scores it with the scorer. The untuned prior is evaluated beside,
with the same seed and sample count. It writes ``docs/data/ppo_sweep_<task>.json``: per method and setting the
hypervolume, served utility, average reward, KL to the prior, validity and seconds, the gain over the prior, and the
setting with the largest mean hypervolume gain over the methods (the choice), next to the suite's current setting.

The runs are ordinary run directories under ``--out`` (default ``results/ppo-sweep/<task>``), run by the benchmark's
job runner: an interrupted sweep continues where it stopped when the same command runs again. One validation seed
chooses; it does not measure seed noise, which the suites' five seeds do (docs/baselines.md: "PPO settings per
task").
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from morbench import __version__
from morbench.benchmark import SUITES, Job, SuiteEntry, run_jobs
from morbench.errors import ConfigError
from morbench.runs import git_commit, hardware_info
from morbench.scoring import score_run

__all__ = ["GRID", "METHODS", "choose", "main", "sweep", "sweep_jobs"]

VALIDATION_SEED = 100  # outside every suite's seeds (0-4) and the precision checks' (0-9)
EVAL_SAMPLES = 256  # per preference: enough to rank settings whose hypervolumes differ by the prior's own spread
METHODS = ("rewarded_soups", "morlhf")  # the PPO methods that train one policy per preference or objective
GRID: dict[str, tuple[float, ...]] = {"ppo.learning_rate": (1e-4, 3e-4), "ppo.kl_coef": (0.05, 0.01)}
METRICS = ("hypervolume", "served_utility", "average_reward", "kl_to_prior", "validity")


def _label(setting: dict[str, Any]) -> str:
    """``{"ppo.learning_rate": 3e-4, "ppo.kl_coef": 0.01}`` -> ``"lr=0.0003,kl=0.01"`` (also its folder name)."""
    short = {"ppo.learning_rate": "lr", "ppo.kl_coef": "kl"}
    return ",".join(f"{short.get(key, key)}={value:g}" for key, value in setting.items())


def settings(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every point of ``grid`` (a key -> values mapping), in the order of ``itertools.product``."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[key] for key in keys))]


def _suite_entry(env_id: str, suite: str) -> SuiteEntry:
    """The suite's entry for ``env_id``: its budget, evaluation settings and per-method PPO settings."""
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; choose one of {sorted(SUITES)}")
    for entry in SUITES[suite]:
        if entry.env_id == env_id:
            return entry
    raise ConfigError(f"{env_id!r} is not in the {suite!r} suite ({sorted(e.env_id for e in SUITES[suite])})")


def sweep_jobs(
    env_id: str,
    out: Path,
    grid: Mapping[str, Sequence[Any]] = GRID,
    methods: Sequence[str] = METHODS,
    seed: int = VALIDATION_SEED,
    eval_samples: int = EVAL_SAMPLES,
    suite: str = "small",
) -> list[tuple[str, dict[str, Any] | None, Job]]:
    """(method, setting, job) for every method and grid point, plus the prior's (setting ``None``)."""
    entry = _suite_entry(env_id, suite)
    for key in grid:
        if not key.startswith("ppo."):
            raise ConfigError(f"grid key {key!r} is not a PPO setting (ppo.<field>)")
    folder = out / "runs"

    def job(method: str, overrides: dict[str, Any], name: str) -> Job:
        return Job(
            env_id,
            method,
            seed,
            str(folder / method / name / f"seed_{seed}"),
            overrides,
            entry.sampled_tokens,
            eval_samples,
            dict(entry.env_kwargs),
        )

    jobs: list[tuple[str, dict[str, Any] | None, Job]] = [("prior", None, job("prior", {}, "prior"))]
    for method in methods:
        base = dict(entry.overrides.get(method, {}))
        for setting in settings(grid):
            jobs.append((method, setting, job(method, {**base, **setting}, _label(setting))))
    return jobs


def choose(rows: list[dict[str, Any]], prior: dict[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """The setting whose hypervolume gain over the prior, averaged over ``methods``, is largest."""
    by_setting: dict[str, list[float]] = {}
    for row in rows:
        by_setting.setdefault(row["setting_label"], []).append(row["hypervolume"] - prior["hypervolume"])
    gains = {label: sum(values) / len(values) for label, values in by_setting.items() if len(values) == len(methods)}
    if not gains:
        raise ConfigError("no setting finished for every method")
    best = max(gains, key=lambda label: gains[label])
    return {"criterion": "mean hypervolume gain over the prior, over the methods", "gains": gains, "chosen": best}


def sweep(
    env_id: str,
    out: Path,
    grid: Mapping[str, Sequence[Any]] = GRID,
    methods: Sequence[str] = METHODS,
    seed: int = VALIDATION_SEED,
    eval_samples: int = EVAL_SAMPLES,
    workers: int = 1,
    progress: bool = True,
    suite: str = "small",
) -> dict[str, Any]:
    """Run (or continue) the sweep and return its record (see the module docstring)."""
    start = time.perf_counter()
    jobs = sweep_jobs(env_id, out, grid, methods, seed, eval_samples, suite)
    outcomes = run_jobs([job for _, _, job in jobs], workers=workers, progress=progress)
    failed = [outcome for outcome in outcomes if outcome["status"] == "failed"]
    if failed:
        raise RuntimeError(f"{len(failed)} sweep run(s) failed; first: {failed[0]['job']}: {failed[0]['error']}")
    rows, prior = [], None
    for (method, setting, job), outcome in zip(jobs, outcomes, strict=True):
        result = score_run(job.out, domain=False)
        row = {
            "method": method,
            "setting": setting,
            "setting_label": _label(setting) if setting is not None else None,
            **{metric: result.get(metric) for metric in METRICS},
            "sampled_tokens": result["compute"].get("sampled_tokens"),
            "ppo_iterations": result["compute"].get("ppo_iterations"),
            "wall_seconds": result["compute"].get("wall_seconds"),
            "evaluation_seconds": result["compute"].get("evaluation_seconds"),
            "outcome": outcome["status"],
        }
        if setting is None:
            prior = row
        else:
            rows.append(row)
    assert prior is not None
    for row in rows:
        row["hypervolume_gain"] = row["hypervolume"] - prior["hypervolume"]
        row["served_utility_gain"] = row["served_utility"] - prior["served_utility"]
    entry = _suite_entry(env_id, suite)
    current = {key: entry.overrides.get(methods[0], {}).get(key) for key in grid}
    return {
        "env": env_id,
        "what": f"PPO settings on a validation seed at the {suite} suite's budget (python -m morbench.baselines.ppo_sweep)",
        "seed": seed,
        "eval_samples_per_preference": eval_samples,
        "sampled_tokens": entry.sampled_tokens,
        "methods": list(methods),
        "grid": {key: list(values) for key, values in grid.items()},
        "suite_setting": {"values": current, "label": _label(current)},
        "prior": prior,
        "rows": rows,
        "choice": choose(rows, prior, methods),
        "seconds": time.perf_counter() - start,
        "workers": workers,
        "threads_per_run": 1,  # each run pins one torch thread (the benchmark's jobs); "hardware" is the parent's
        "hardware": hardware_info(),
        "morbench_version": __version__,
        "commit": git_commit(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m morbench.baselines.ppo_sweep", description=__doc__)
    parser.add_argument("--env", required=True, help="a task of the small suite, e.g. morbench/Enhancer-v0")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel (1 torch thread each)")
    parser.add_argument("--out", type=Path, help="run folder (default results/ppo-sweep/<task>)")
    parser.add_argument("--record", type=Path, help="JSON record (default docs/data/ppo_sweep_<task>.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    task = args.env.split("/")[-1].lower()
    out = args.out or Path("results/ppo-sweep") / task
    record_path = args.record or Path("docs/data") / f"ppo_sweep_{task.replace('-', '_')}.json"
    record = sweep(args.env, out, workers=args.workers, progress=not args.quiet)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    prior = record["prior"]
    print(f"prior: hypervolume {prior['hypervolume']:.4f}, served utility {prior['served_utility']:.4f}")
    for row in record["rows"]:
        print(
            f"{row['method']:15s} {row['setting_label']:18s} HV {row['hypervolume']:.4f} "
            f"(+{row['hypervolume_gain']:.4f})  served {row['served_utility']:.4f}  KL {row['kl_to_prior']:.3f}"
        )
    choice = record["choice"]
    print(f"chosen: {choice['chosen']} (the suite uses {record['suite_setting']['label']}) -> {record_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
