"""LoRA experts vs full fine-tuning: memory and time per PPO iteration, side by side in one process, 1 thread.

Both learners start from the same prior on the same batch (same env, seed and PPO settings) and run their
iterations interleaved (full, LoRA, full, LoRA, ...), so load on a shared machine hits both alike. Per iteration:
wall seconds, sampled tokens, and the peak resident memory above the start of the iteration and of its update
phase (RSS sampled every 10 ms, freed heap returned to the OS before each); per learner, the exact bytes of what training keeps
(trainable parameters, their gradients, AdamW's two moments). The figures in docs/baselines.md come from::

    pytest tests/benchmarks/test_lora_memory.py --benchmark-enable --benchmark-only -s

which measures the Summarize-v0 prior (SmolLM2-135M) with a shortened prompt and summary (a few iterations: some
minutes on one core). A normal test run checks the measurement on Motifs-v0's tiny GPT-2 only.
"""

import contextlib
import ctypes
import gc
import os
import threading
import time

import pytest
import torch
from gymnasium.vector import AutoresetMode

import morbench
from morbench.baselines import common
from morbench.baselines.common import PPOConfig, PPOLearner
from morbench.models import load_prior
from morbench.vector import TokenVectorEnv

pytest.importorskip("peft")


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim() -> None:
    """Return freed heap to the OS, so that one learner's high-water mark does not hide the next one's."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """The peak resident set size while the block runs (a thread samples it every ``interval`` seconds)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.peak, self.start = interval, 0, 0
        self._stop = threading.Event()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = _rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def state_bytes(learner: PPOLearner) -> dict[str, int]:
    """What training keeps besides the frozen weights: trainable parameters, gradients, optimizer moments."""
    trainable = [p for p in learner.model.parameters() if p.requires_grad]
    size = sum(p.numel() * p.element_size() for p in trainable)
    moments = sum(
        t.numel() * t.element_size()
        for state in learner.optimizer.state.values()
        for t in state.values()
        if isinstance(t, torch.Tensor) and t.dim() > 0
    )
    return {
        "trainable_parameters": sum(p.numel() for p in trainable),
        "all_parameters": sum(p.numel() for p in learner.model.parameters()),
        "trainable_bytes": size,
        "gradient_bytes": size,
        "optimizer_bytes": moments,
        "training_state_bytes": 2 * size + moments,
    }


def measure(env_id: str, iterations: int, batch: int, rank: int, **env_kwargs) -> dict[str, dict]:
    """Full fine-tuning and LoRA (rank ``rank``) PPO learners on one prior, ``iterations`` each after a warm-up."""
    torch.set_num_threads(1)
    task = morbench.make(env_id, **env_kwargs).unwrapped
    prior = load_prior(task, seed=0).eval()
    for parameter in prior.parameters():
        parameter.requires_grad_(False)
    venv = TokenVectorEnv(task, batch, AutoresetMode.DISABLED, defer_scoring=True)
    settings = {"batch_size": batch, "minibatch_size": batch // 2, "ppo_epochs": 2, "learning_rate": 1e-5}
    learners = {
        "full": PPOLearner(prior, prior, venv, PPOConfig(**settings), seed=0),
        "lora": PPOLearner(prior, prior, venv, PPOConfig(**settings, lora_rank=rank), seed=0),
    }
    keys = ("seconds", "tokens", "peak_rss_above_start", "update_peak_rss_above_start", "update_seconds")
    results: dict[str, dict] = {name: {key: [] for key in keys} for name in learners}
    scalarize = lambda r: r.mean(axis=1)  # noqa: E731
    update = common.ppo_update
    phase: dict[str, float] = {}

    def measured_update(*args, **kwargs):  # the update phase alone (the rollout's full-vocabulary logits aside)
        _trim()
        with PeakRSS() as rss:
            start = time.perf_counter()
            out = update(*args, **kwargs)
            phase.update(seconds=time.perf_counter() - start, peak=rss.peak - rss.start)
        return out

    common.ppo_update = measured_update  # PPOLearner.iteration looks it up in its module
    try:
        for step in range(iterations + 1):
            for name, learner in learners.items():
                _trim()
                with PeakRSS() as rss:
                    start = time.perf_counter()
                    stats = learner.iteration(scalarize)
                    seconds = time.perf_counter() - start
                if step == 0:
                    continue  # warm-up: first-touch allocations, lazy initialisation
                results[name]["seconds"].append(seconds)
                results[name]["tokens"].append(stats["tokens"])
                results[name]["peak_rss_above_start"].append(rss.peak - rss.start)
                results[name]["update_peak_rss_above_start"].append(phase["peak"])
                results[name]["update_seconds"].append(phase["seconds"])
    finally:
        common.ppo_update = update
    for name, learner in learners.items():
        results[name].update(state_bytes(learner))
        results[name]["seconds_per_iteration"] = sum(results[name]["seconds"]) / iterations
        results[name]["peak_rss_above_start_max"] = max(results[name]["peak_rss_above_start"])
        results[name]["update_peak_rss_above_start_max"] = max(results[name]["update_peak_rss_above_start"])
    results["setting"] = {"env": env_id, "batch": batch, "rank": rank, "threads": torch.get_num_threads(), **env_kwargs}
    return results


def _report(results: dict[str, dict]) -> str:
    mib = 2**20
    lines = [f"setting: {results['setting']}"]
    for name in ("full", "lora"):
        r = results[name]
        lines.append(
            f"{name:5s} {r['seconds_per_iteration']:.2f} s/iteration (each {[round(s, 2) for s in r['seconds']]}, "
            f"tokens {r['tokens']}), trainable {r['trainable_parameters']:,} of {r['all_parameters']:,} parameters, "
            f"training state {r['training_state_bytes'] / mib:.1f} MiB (grads {r['gradient_bytes'] / mib:.1f}, "
            f"AdamW {r['optimizer_bytes'] / mib:.1f}), peak RSS above the start: iteration "
            f"{r['peak_rss_above_start_max'] / mib:.0f} MiB, update {r['update_peak_rss_above_start_max'] / mib:.0f} "
            f"MiB (update {[round(s, 2) for s in r['update_seconds']]} s)"
        )
    return "\n".join(lines)


def test_lora_vs_full_fine_tuning_memory_and_time(benchmark):
    if benchmark.disabled:  # normal test run: the measurement itself, on a tiny prior
        results = measure("morbench/Motifs-v0", iterations=1, batch=8, rank=2)
        full, lora = results["full"], results["lora"]
        assert 0 < lora["trainable_parameters"] < full["trainable_parameters"] / 4
        assert full["optimizer_bytes"] == 2 * full["trainable_bytes"]  # AdamW: two moments per trainable weight
        assert lora["training_state_bytes"] < full["training_state_bytes"] / 4
        assert all(r["seconds_per_iteration"] > 0 and len(r["tokens"]) == 1 for r in (full, lora))
        assert all(0 < r["update_seconds"][0] < r["seconds"][0] for r in (full, lora))
        benchmark(lambda: None)
        return
    iterations = int(os.environ.get("MORBENCH_LORA_ITERATIONS", "2"))
    results = measure(
        "morbench/Summarize-v0", iterations=iterations, batch=4, rank=8, max_length=32, max_prompt_length=96
    )
    print("\n" + _report(results))
    benchmark.extra_info.update({k: v for k, v in results.items()})
    benchmark.pedantic(lambda: None, rounds=1)
    assert results["lora"]["training_state_bytes"] < results["full"]["training_state_bytes"] / 10
