"""Checkpoints cost under 5% of a Motifs IterativeRS run of the standard suite (its config and budget, 1 thread).

Periodic checkpoints inside a schedule come at most once per ``checkpoint_seconds`` (default 60 s) and append only
the oracle-cache entries added since the last one. The benchmark times every ``RunContext.checkpoint`` call of the
run against the run's training time (evaluation excluded), side by side with the same run at
``checkpoint_seconds=0`` (a checkpoint every ``checkpoint_every`` iterations, block and round), which shows what
the time limit saves. Time it with::

    pytest tests/benchmarks/test_checkpoint_overhead.py --benchmark-enable --benchmark-only -s

In the default test run it only checks that a short run at ``checkpoint_seconds=0`` checkpoints and resumes.
"""

import time

import torch

from morbench.baselines import build_config, run_method
from morbench.baselines import training as training_module
from morbench.baselines.training import Budget
from morbench.benchmark import _MOTIFS, SUITES

ENV = "morbench/Motifs-v0"


def _standard_budget() -> int:
    entry = next(e for e in SUITES["standard"] if e.env_id == ENV)
    return entry.sampled_tokens


def _timed_run(out, tokens: int, checkpoint_seconds: float, monkeypatch) -> tuple[float, float, int]:
    """(training seconds, seconds inside checkpoint(), checkpoints written) of one IterativeRS run."""
    spent = {"seconds": 0.0, "count": 0, "train_end": 0.0}
    checkpoint, finish = training_module.RunContext.checkpoint, training_module.RunContext.finish

    def timed_checkpoint(self):
        start = time.perf_counter()
        checkpoint(self)
        spent["seconds"] += time.perf_counter() - start
        spent["count"] += 1

    def timed_finish(self, *args, **kwargs):
        spent["train_end"] = time.perf_counter()
        return finish(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(training_module.RunContext, "checkpoint", timed_checkpoint)
        patch.setattr(training_module.RunContext, "finish", timed_finish)
        start = time.perf_counter()
        run_method(
            "iterative_rs",
            ENV,
            out,
            config=build_config("iterative_rs", _MOTIFS["iterative_rs"]),
            budget=Budget(sampled_tokens=tokens),
            eval_samples=8,
            progress=False,
            checkpoint_seconds=checkpoint_seconds,
        )
    return spent["train_end"] - start, spent["seconds"], spent["count"]


def test_checkpoints_cost_under_5_percent_of_a_motifs_iterative_rs_run(benchmark, tmp_path, monkeypatch):
    torch.set_num_threads(1)  # as the suites run (one thread per worker)
    if benchmark.disabled:
        _, _, count = _timed_run(tmp_path / "short", 3000, 0.0, monkeypatch)
        assert count > 0 and not (tmp_path / "short" / "checkpoint").exists()
        benchmark(lambda: None)
        return
    tokens = _standard_budget()
    train, seconds, count = _timed_run(tmp_path / "default", tokens, training_module.CHECKPOINT_SECONDS, monkeypatch)
    every_train, every_seconds, every_count = _timed_run(tmp_path / "every", tokens, 0.0, monkeypatch)
    print(
        f"\nMotifs IterativeRS, standard suite ({tokens:,} sampled tokens), 1 thread: "
        f"default ({training_module.CHECKPOINT_SECONDS:.0f} s): {count} checkpoints, {seconds:.2f} s of "
        f"{train:.1f} s training = {seconds / train:.1%}; every checkpoint_every: {every_count} checkpoints, "
        f"{every_seconds:.2f} s of {every_train:.1f} s = {every_seconds / every_train:.1%}"
    )
    benchmark.extra_info.update(overhead=seconds / train, checkpoints=count, overhead_every=every_seconds / every_train)
    benchmark(lambda: None)
    assert seconds / train < 0.05
