"""Is PPO with ``ppo.precision="bf16"`` the same learner as in fp32? A side-by-side check over seeds, as JSON.

``python -m morbench.baselines.precision_check`` trains, for each task and seed, one fp32 and one bf16 PPO learner
from the task's prior (MORLHF at the uniform preference, the small suite's QM9 PPO settings: batch 64, minibatch
32, learning rate 1e-4, KL coefficient 0.05) for a fixed number of iterations, alternating their iterations in one
process (one torch thread) so that the per-iteration time ratio is measured side by side. It writes
``docs/data/precision_check.json``: per-iteration curves (PPO's approximate KL, clip fraction, KL to the prior,
mean scalarized reward), the final policies' evaluation (fp32 sampling, the same evaluation seeds for both), the
statistical comparison and the verdict, diagnostics of the two numerical pitfalls (old log-probabilities from
another precision path; one autocast region around the whole update), and the times.

The comparison, fixed before the measurement: for each task and metric (a curve's mean over the iterations, or a
final evaluation figure), one value per seed; bf16 passes a metric when the difference of the seed means lies
within the fp32 seeds' spread (max - min) *and* an exact two-sided permutation test over the seeds does not
reject equality at ``ALPHA``. bf16 passes the check when it passes every metric on every task. Per-iteration
agreement (the fraction of iterations whose bf16 seed mean lies within the fp32 seeds' range) is reported beside.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from morbench.baselines.common import PPOConfig, PPOLearner, collect_rollout, minibatch_loss, ppo_update
from morbench.core import TokenEnv
from morbench.models import load_prior
from morbench.preferences import uniform_preference
from morbench.registry import make
from morbench.scalarization import Linear
from morbench.vector import TokenVectorEnv

__all__ = ["check", "compare", "main", "permutation_p_value"]

TASKS = ("morbench/QM9-v0", "morbench/CNS-v0")
SEEDS = (0, 1, 2, 3, 4)
ITERATIONS = 20
PPO_SETTINGS: dict[str, Any] = {
    "batch_size": 64,
    "minibatch_size": 32,
    "learning_rate": 1e-4,
    "kl_coef": 0.05,
}  # benchmark._QM9_PPO
PRECISIONS = ("fp32", "bf16")
CURVE_METRICS = ("approx_kl", "clip_fraction", "kl_to_prior", "score_mean")
FINAL_METRICS = ("final_score", "final_valid_fraction", "final_kl_to_prior")
EVALUATION_ROLLOUTS = 4  # x batch_size samples from each final policy
ALPHA = 0.05
OUT = Path("docs/data/precision_check.json")


def permutation_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided permutation test of equal means: the fraction of the splits of ``a + b`` into groups of
    their sizes whose absolute difference of means is at least the observed one (the observed split included)."""
    values = np.asarray([*a, *b], dtype=np.float64)
    n = len(a)
    observed = abs(np.mean(values[:n]) - np.mean(values[n:]))
    total = values.sum()
    hits = count = 0
    for group in itertools.combinations(range(len(values)), n):
        first = values[list(group)].sum()
        difference = abs(first / n - (total - first) / (len(values) - n))
        hits += difference >= observed - 1e-12 * max(1.0, observed)
        count += 1
    return hits / count


def compare(fp32: Sequence[float], bf16: Sequence[float]) -> dict[str, Any]:
    """One metric's verdict from its per-seed values (see the module docstring)."""
    a, b = np.asarray(fp32, dtype=np.float64), np.asarray(bf16, dtype=np.float64)
    spread = float(a.max() - a.min())
    difference = float(b.mean() - a.mean())
    p_value = permutation_p_value(a.tolist(), b.tolist())
    within = abs(difference) <= spread
    return {
        "fp32_mean": float(a.mean()),
        "bf16_mean": float(b.mean()),
        "fp32_seed_std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "bf16_seed_std": float(b.std(ddof=1)) if len(b) > 1 else 0.0,
        "difference": difference,
        "fp32_seed_spread": spread,
        "within_fp32_spread": bool(within),
        "permutation_p": p_value,
        "passes": bool(within and p_value >= ALPHA),
    }


def _task(env_id: str) -> tuple[TokenEnv, TokenVectorEnv]:
    task: TokenEnv = make(env_id).unwrapped  # type: ignore[assignment]
    venv = TokenVectorEnv(task, PPO_SETTINGS["batch_size"], AutoresetMode.DISABLED, defer_scoring=True)
    return task, venv


def _frozen_prior(task: TokenEnv, seed: int) -> torch.nn.Module:
    prior = load_prior(task, seed=seed).eval()
    for parameter in prior.parameters():
        parameter.requires_grad_(False)
    return prior


def _config(precision: str) -> PPOConfig:
    return PPOConfig(**PPO_SETTINGS, precision=precision)


def _evaluate(learner: PPOLearner, prior: torch.nn.Module, scalarize: Linear, seed: int) -> dict[str, float]:
    """The final policy's samples, drawn in fp32 with the same seeds for both precisions (no update)."""
    config = dataclasses.replace(learner.config, precision="fp32")
    scores, valid, kl = [], [], []
    for index in range(EVALUATION_ROLLOUTS):
        generator = torch.Generator().manual_seed(10_000 * (seed + 1) + index)
        rollout = collect_rollout(learner.model, prior, learner.venv, scalarize, config, generator, 777 + index)
        scores.append(rollout.scores)
        valid.append(rollout.valid)
        kl.append(((rollout.logprobs - rollout.ref_logprobs) * rollout.mask).sum(1).numpy())
    return {
        "final_score": float(np.concatenate(scores).mean()),
        "final_valid_fraction": float(np.concatenate(valid).mean()),
        "final_kl_to_prior": float(np.concatenate(kl).mean()),
    }


def train_pair(env_id: str, seed: int, iterations: int) -> dict[str, Any]:
    """One fp32 and one bf16 learner from the same prior and seed, iterations alternating (their order too)."""
    runs: dict[str, dict[str, Any]] = {}
    learners: dict[str, PPOLearner] = {}
    prior = None
    scalarize = None
    for precision in PRECISIONS:
        task, venv = _task(env_id)  # each its own env and oracle (cache, call count)
        prior = _frozen_prior(task, seed) if prior is None else prior
        scalarize = Linear(tuple(uniform_preference(task.reward_dim)))
        learners[precision] = PPOLearner(prior, prior, venv, _config(precision), seed=seed)
        runs[precision] = {"curve": {m: [] for m in CURVE_METRICS}, "seconds": [], "tokens": []}
    assert prior is not None and scalarize is not None
    for iteration in range(iterations):
        order = PRECISIONS if iteration % 2 == 0 else PRECISIONS[::-1]
        for precision in order:
            started = time.perf_counter()
            stats = learners[precision].iteration(scalarize)
            runs[precision]["seconds"].append(time.perf_counter() - started)
            runs[precision]["tokens"].append(int(stats["tokens"]))
            for metric in CURVE_METRICS:
                runs[precision]["curve"][metric].append(float(stats[metric]))
    for precision in PRECISIONS:
        runs[precision]["final"] = _evaluate(learners[precision], prior, scalarize, seed)
    return runs


def diagnostics(env_id: str, seed: int = 0) -> dict[str, Any]:
    """The two pitfalls of a naive bf16 PPO, measured on one rollout from the prior.

    * The first minibatch's ratio ``exp(new - old)`` before any step: 1 when both log-probabilities come from one
      precision path (fp32 / fp32, bf16 / bf16), noise when the old ones are fp32 and the new ones bf16.
    * One autocast region around the whole update: autocast keeps the bf16 copies of the weights until the region
      ends, so every matmul of every minibatch uses the weights of the first pass; PPO's approximate KL and clip
      fraction then stay near 0 while the weights move (the statistics of the issue's naive measurement). One
      region per pass (``precision_context``) gives the fp32 update's statistics.
    """
    task, venv = _task(env_id)
    prior = _frozen_prior(task, seed)
    scalarize = Linear(tuple(uniform_preference(task.reward_dim)))
    rollouts = {}
    for precision in PRECISIONS:
        learner = PPOLearner(prior, prior, venv, _config(precision), seed=seed)
        generator = torch.Generator().manual_seed(seed)
        rollouts[precision] = collect_rollout(learner.model, prior, venv, scalarize, learner.config, generator, 1)
    fp32, bf16 = rollouts["fp32"], rollouts["bf16"]
    mask = fp32.mask
    out: dict[str, Any] = {
        "same_samples": bool(torch.equal(fp32.generation.tokens, bf16.generation.tokens)),  # sampling is fp32
        "mean_abs_logprob_bf16_minus_fp32": float(((bf16.logprobs - fp32.logprobs).abs() * mask).sum() / mask.sum()),
        "max_abs_logprob_bf16_minus_fp32": float(((bf16.logprobs - fp32.logprobs).abs() * mask).max()),
        "mean_abs_sampler_minus_rollout_logprob": {
            precision: float(((r.generation.logprobs - r.logprobs).abs() * mask).sum() / mask.sum())
            for precision, r in rollouts.items()
        },
        "kl_to_prior_at_the_prior": {
            precision: float(((r.logprobs - r.ref_logprobs) * r.mask).sum(1).mean())
            for precision, r in rollouts.items()
        },
    }
    first = torch.arange(PPO_SETTINGS["minibatch_size"])
    ratios = {}
    for name, old, new in (("fp32/fp32", "fp32", "fp32"), ("bf16/bf16", "bf16", "bf16"), ("fp32/bf16", "fp32", "bf16")):
        learner = PPOLearner(prior, prior, venv, _config(new), seed=seed)
        with torch.no_grad():
            terms = minibatch_loss(learner.model, rollouts[old], first, learner.config)
        deviation = ((terms.ratio - 1).abs() * terms.mask).max()
        clipped = (((terms.ratio - 1).abs() > learner.config.clip_range).float() * terms.mask).sum() / terms.mask.sum()
        ratios[name] = {"max_abs_ratio_minus_1": float(deviation), "clip_fraction": float(clipped)}
    out["first_minibatch_ratio (old/new precision)"] = ratios
    updates = {}
    for name, one_region in (("fp32", False), ("bf16, one region per pass", False), ("bf16, one region", True)):
        precision = "fp32" if name == "fp32" else "bf16"
        learner = PPOLearner(prior, prior, venv, _config(precision), seed=seed)
        generator = torch.Generator().manual_seed(seed)
        if one_region:  # the naive design: autocast around the whole update (also the optimizer steps)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                stats = ppo_update(learner.model, learner.optimizer, rollouts[precision], learner.config, generator)
        else:
            stats = ppo_update(learner.model, learner.optimizer, rollouts[precision], learner.config, generator)
        updates[name] = {key: stats[key] for key in ("approx_kl", "clip_fraction")}
    out["first_update"] = updates
    return out


def _speed(runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = {p: np.concatenate([r[p]["seconds"] for r in runs]) for p in PRECISIONS}
    tokens = {p: np.concatenate([r[p]["tokens"] for r in runs]) for p in PRECISIONS}
    return {
        "fp32_seconds_per_iteration": float(seconds["fp32"].mean()),
        "bf16_seconds_per_iteration": float(seconds["bf16"].mean()),
        "speedup_per_iteration": float(seconds["fp32"].sum() / seconds["bf16"].sum()),
        "median_paired_speedup": float(np.median(seconds["fp32"] / seconds["bf16"])),
        "speedup_per_sampled_token": float(
            (seconds["fp32"].sum() / tokens["fp32"].sum()) / (seconds["bf16"].sum() / tokens["bf16"].sum())
        ),
    }


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    per_iteration: dict[str, Any] = {}
    for metric in CURVE_METRICS:
        curves = {p: np.asarray([r[p]["curve"][metric] for r in runs]) for p in PRECISIONS}  # (seeds, iterations)
        metrics[f"mean_{metric}"] = compare(curves["fp32"].mean(1).tolist(), curves["bf16"].mean(1).tolist())
        low, high = curves["fp32"].min(0), curves["fp32"].max(0)
        bf16_mean = curves["bf16"].mean(0)
        per_iteration[metric] = {
            "fp32_mean": curves["fp32"].mean(0).tolist(),
            "bf16_mean": bf16_mean.tolist(),
            "fp32_min": low.tolist(),
            "fp32_max": high.tolist(),
            "fraction_of_iterations_bf16_mean_in_fp32_range": float(((bf16_mean >= low) & (bf16_mean <= high)).mean()),
        }
    for metric in FINAL_METRICS:
        metrics[metric] = compare(
            [r["fp32"]["final"][metric] for r in runs], [r["bf16"]["final"][metric] for r in runs]
        )
    return {"metrics": metrics, "per_iteration": per_iteration, "speed": _speed(runs)}


def _hardware() -> dict[str, Any]:
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()),
    }


def check(
    tasks: Sequence[str] = TASKS, seeds: Sequence[int] = SEEDS, iterations: int = ITERATIONS, log: Any = None
) -> dict[str, Any]:
    """Run the whole check; return the JSON record (see the module docstring)."""
    record: dict[str, Any] = {
        "command": "python -m morbench.baselines.precision_check " + " ".join(sys.argv[1:]),
        "settings": {
            "method": "MORLHF at the uniform preference",
            "ppo": PPO_SETTINGS,
            "iterations": iterations,
            "seeds": list(seeds),
            "alpha": ALPHA,
            "evaluation_samples": EVALUATION_ROLLOUTS * PPO_SETTINGS["batch_size"],
            "rule": "a metric passes when |bf16 mean - fp32 mean| <= the fp32 seeds' spread and the exact "
            "permutation test over seeds has p >= alpha; bf16 passes when every metric of every task passes",
        },
        "hardware": _hardware(),
        "tasks": {},
    }
    started = time.perf_counter()
    for env_id in tasks:
        runs = []
        for seed in seeds:
            runs.append(train_pair(env_id, seed, iterations))
            if log is not None:
                log(f"{env_id} seed {seed} done ({time.perf_counter() - started:.0f} s)")
        record["tasks"][env_id] = {
            **_summarize(runs),
            "diagnostics": diagnostics(env_id),
            "runs": {str(seed): run for seed, run in zip(seeds, runs, strict=True)},
        }
    record["hardware"]["load_average_at_end"] = list(os.getloadavg())
    record["seconds"] = time.perf_counter() - started
    failed = [
        f"{env_id}: {metric}"
        for env_id, result in record["tasks"].items()
        for metric, verdict in result["metrics"].items()
        if not verdict["passes"]
    ]
    record["verdict"] = {"bf16_passes": not failed, "failed_metrics": failed}
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m morbench.baselines.precision_check", description=__doc__)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    record = check(args.tasks, args.seeds, args.iterations, log=lambda line: print(line, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for env_id, result in record["tasks"].items():
        speed = result["speed"]
        print(f"{env_id}: bf16/fp32 speed-up per iteration {speed['speedup_per_iteration']:.2f}x")
        for metric, verdict in result["metrics"].items():
            print(
                f"  {metric:24s} fp32 {verdict['fp32_mean']:.4f}  bf16 {verdict['bf16_mean']:.4f}  "
                f"spread {verdict['fp32_seed_spread']:.4f}  p {verdict['permutation_p']:.3f}  "
                f"{'pass' if verdict['passes'] else 'FAIL'}"
            )
    print(f"bf16 passes: {record['verdict']['bf16_passes']} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
