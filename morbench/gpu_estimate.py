"""What a GPU would speed up in a study's runs, measured on the CPU: ``python -m morbench.gpu_estimate``.

No GPU was available to this work, so the study costs on a GPU (docs/studies.md) are estimates built from CPU
measurements. With ``--device cuda`` the policies, value heads and prior move to the GPU; the env, tokenization,
the oracles and judges (RDKit, xTB, the CNS and Enhancer models) and scoring stay on the CPU. So, for each study
task, this runs its paper-scale Rewarded Soups row for a few iterations per expert (evaluated at 128 samples per
preference) twice: plainly, for its seconds, and with every torch op dispatched outside an oracle or env step
counted and timed (a ``TorchDispatchMode``), with the matrix-product FLOPs they do, and the seconds inside oracles
and env steps. Differencing two run lengths gives the cost of one PPO iteration without the run's fixed start-up;
the evaluation is the longer run's. Seconds are the main thread's CPU time (``time.thread_time``: what other
processes on the machine take is not counted; torch runs one thread), except inside oracles and env steps, which
are timed by the clock, since some oracles wait on their own worker processes.

On a GPU, models this small are bound by launching kernels, not by arithmetic. A phase's GPU seconds are then
estimated as its CPU seconds less the time its ops' kernels took (a counted op's seconds less the cost of a
trivial counted op, :func:`tiny_op_seconds`), but never less than its seconds in oracles and env steps (they
stay on the CPU; the difference of two runs is noisy), plus per op that trivial op's cost (the dispatch stays on
the CPU too) and, unless it is a view, one kernel launch of :data:`LAUNCH_SECONDS`, plus its FLOPs at
:data:`GPU_FLOPS`. Syncs (one per sampled token step, to step the env) are left out: tens of microseconds each, a
few dozen per iteration. Both constants are assumptions (typical of current data-centre GPUs), not measurements.
The ratio GPU/CPU per phase is what ``morbench.study.GPU_RATIO`` keeps and the study estimates scale by.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

LAUNCH_SECONDS = 5e-6  # assumed: one CUDA kernel launch from eager PyTorch
GPU_FLOPS = 50e12  # assumed: sustained matrix-product throughput (TF32/bf16 on an H100/H200-class GPU is higher)
TASKS = {"paper-qm9": "morbench/QM9-v1", "paper-cns": "morbench/CNS-v1", "paper-enhancer": "morbench/Enhancer-v0"}
TASKS["paper-cns-mpo"] = "morbench/CNS-MPO-v1"
SHORT, LONG = 1, 8  # PPO iterations per expert of the two run lengths that are differenced
EVAL_SAMPLES = 128
OUT = Path("docs/data/gpu_estimate.json")
_MATMULS = {"mm": 0, "addmm": 1, "bmm": 0, "baddbmm": 1}  # op -> index of its first matrix argument


def _matmul_flops(name: str, args: tuple[Any, ...]) -> int:
    first = _MATMULS[name]
    a, b = args[first], args[first + 1]
    batch = a.shape[0] if a.dim() == 3 else 1
    return 2 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


class OpCounter(TorchDispatchMode):
    """Counts and times the torch ops dispatched per phase, except while :attr:`paused` (inside what stays on the
    CPU: :func:`_cpu_side_paused`); views are counted apart (they launch no kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.phase = "training"
        self.paused = 0
        self.ops: dict[str, int] = defaultdict(int)
        self.views: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, int] = defaultdict(int)
        self.cpu_side_seconds: dict[str, float] = defaultdict(float)  # in oracles, judges, env steps (they stay)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.paused:
            return func(*args, **(kwargs or {}))
        start = time.thread_time()
        out = func(*args, **(kwargs or {}))
        self.seconds[self.phase] += time.thread_time() - start
        name = func.overloadpacket.__name__
        if getattr(func, "is_view", False):
            self.views[self.phase] += 1
        else:
            self.ops[self.phase] += 1
        if name in _MATMULS:
            self.flops[self.phase] += _matmul_flops(name, args)
        return out


@contextmanager
def _cpu_side_paused(counter: OpCounter) -> Iterator[None]:
    """What stays on the CPU runs uncounted and timed: every oracle and judge class's ``evaluate`` and the vector
    env's ``step`` and ``score_finished`` (detokenizing, bookkeeping, scoring)."""
    from morbench.core import Oracle
    from morbench.vector import TokenVectorEnv

    methods: list[tuple[type, str]] = [(TokenVectorEnv, "step"), (TokenVectorEnv, "score_finished")]
    stack: list[type] = list(Oracle.__subclasses__())
    while stack:
        cls = stack.pop()
        stack += cls.__subclasses__()
        if "evaluate" in cls.__dict__:
            methods.append((cls, "evaluate"))
    originals = {(cls, name): cls.__dict__[name] for cls, name in methods}

    def paused(original: Any) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            counter.paused += 1
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                counter.paused -= 1
                if not counter.paused:  # the outermost call (scoring calls the oracle)
                    counter.cpu_side_seconds[counter.phase] += time.perf_counter() - start

        return method

    try:
        for (cls, name), original in originals.items():
            setattr(cls, name, paused(original))
        yield
    finally:
        for (cls, name), original in originals.items():
            setattr(cls, name, original)


@contextmanager
def _evaluation_phase(counter: OpCounter, switched: list[float]) -> Iterator[None]:
    """The run's protocol evaluation counts as phase ``evaluation``; ``switched`` gets the thread CPU time then."""
    import morbench.baselines.training as training

    original = training.evaluate_on_env

    def evaluate(*args: Any, **kwargs: Any) -> Any:
        counter.phase = "evaluation"
        switched.append(time.thread_time())
        return original(*args, **kwargs)

    training.evaluate_on_env = evaluate
    try:
        yield
    finally:
        training.evaluate_on_env = original


def _run(study: str, iterations: int, count: bool) -> dict[str, Any]:
    """One short run of the study's Rewarded Soups ``per_expert`` row: its compute record, and (``count``) the op
    counts per phase."""
    from morbench.benchmark import run_job
    from morbench.runs import read_run
    from morbench.study import get_study, study_jobs

    with tempfile.TemporaryDirectory() as folder:
        job = next(j for j in study_jobs(get_study(study), Path(folder)) if j.row == "rewarded_soups/per_expert").job
        job = dataclasses.replace(
            job, overrides={**job.overrides, "iterations": iterations}, eval_samples=EVAL_SAMPLES, out=folder
        )
        counter, switched = OpCounter(), list[float]()
        started = time.thread_time()
        with _evaluation_phase(counter, switched):
            if count:
                with _cpu_side_paused(counter), counter:
                    outcome = run_job(job)
            else:
                outcome = run_job(job)
        ended = time.thread_time()
        if outcome["status"] != "ok":
            raise RuntimeError(f"{job.name}: {outcome.get('error')}")
        compute = read_run(Path(folder))["compute"]
    tables: dict[str, dict[str, float]] = {
        "ops": dict(counter.ops),
        "views": dict(counter.views),
        "op_seconds": dict(counter.seconds),
        "flops": dict(counter.flops),
        "cpu_side_seconds": dict(counter.cpu_side_seconds),
    }
    return {
        "training_seconds": switched[0] - started,
        "evaluation_seconds": ended - switched[0],
        "ppo_iterations": compute["ppo_iterations"],
        **{
            f"{key}_{phase}": table.get(phase, 0)
            for key, table in tables.items()
            for phase in ("training", "evaluation")
        },
    }


def tiny_op_seconds(repeats: int = 20_000) -> float:
    """The seconds a counted op on a one-element tensor takes inside the dispatch mode: the cost of calling back
    into the dispatcher, which a counted op's timing includes and its kernel does not take."""
    x = torch.zeros(1)
    counter = OpCounter()
    with counter:
        for _ in range(repeats):
            torch.add(x, x)
    return counter.seconds["training"] / repeats


def gpu_seconds(values: dict[str, float], tiny: float) -> float:
    """A phase's estimated GPU seconds from its measured ``values``: its CPU seconds without its kernels' own time
    (Python, the env, oracles and judges stay on the CPU; never less than the seconds measured inside oracles,
    judges and env steps, since the difference of two runs' seconds is noisy), per op the CPU cost of a trivial op (``tiny``; counted
    again, so a dispatch the kernels' time absorbed is not lost) and a launch unless it is a view, its FLOPs."""
    return (
        max(values["cpu_seconds"] - values["kernel_seconds"], values["cpu_side_seconds"], 0.0)
        + values["ops"] * (tiny + LAUNCH_SECONDS)
        + values["views"] * tiny
        + values["flops"] / GPU_FLOPS
    )


def with_estimate(values: dict[str, float], tiny: float) -> dict[str, float]:
    """``values`` with their ``gpu_seconds`` and the ratio GPU/CPU."""
    estimated = gpu_seconds(values, tiny)
    return {**values, "gpu_seconds": estimated, "ratio": estimated / values["cpu_seconds"]}


def measure(study: str) -> dict[str, Any]:
    """Per PPO iteration and per evaluation of ``study``'s task: CPU seconds of a plain run, the seconds its ops'
    kernels took, ops, views and FLOPs (a counted run of the same work), and the estimated GPU seconds and ratio."""
    tiny = tiny_op_seconds()
    plain = {n: _run(study, n, count=False) for n in (SHORT, LONG)}
    counted = {n: _run(study, n, count=True) for n in (SHORT, LONG)}

    def phase(n: int, name: str) -> dict[str, float]:
        keys = ("op_seconds", "ops", "views", "flops", "cpu_side_seconds")
        counts = {key: float(counted[n][f"{key}_{name}"]) for key in keys}
        kernels = max(counts["op_seconds"] - (counts["ops"] + counts["views"]) * tiny, 0.0)
        return {"cpu_seconds": float(plain[n][f"{name}_seconds"]), "kernel_seconds": kernels, **counts}

    short, long = phase(SHORT, "training"), phase(LONG, "training")
    iterations = plain[LONG]["ppo_iterations"] - plain[SHORT]["ppo_iterations"]
    per_iteration = {key: (long[key] - short[key]) / iterations for key in long}
    return {
        "env_id": TASKS[study],
        "tiny_op_seconds": tiny,
        "iteration": with_estimate(per_iteration, tiny),
        "evaluation": with_estimate(phase(LONG, "evaluation"), tiny),
    }


def main(argv: list[str] | None = None) -> int:
    from morbench.runs import hardware_info

    parser = argparse.ArgumentParser(prog="python -m morbench.gpu_estimate", description=__doc__)
    parser.add_argument("--studies", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for study in args.studies:
        results[study] = measure(study)
        it, ev = results[study]["iteration"], results[study]["evaluation"]
        print(
            f"{TASKS[study]}: PPO iteration {it['cpu_seconds']:.2f} s CPU ({it['op_seconds']:.2f} s in "
            f"{it['ops']:.0f} ops) -> {it['gpu_seconds']:.2f} s GPU ({it['ratio']:.3f}); evaluation of "
            f"{EVAL_SAMPLES} x 10 {ev['cpu_seconds']:.1f} s ({ev['op_seconds']:.1f} s in {ev['ops']:.0f} ops) -> "
            f"{ev['gpu_seconds']:.1f} s ({ev['ratio']:.3f})",
            flush=True,
        )
    payload = {
        "command": "python -m morbench.gpu_estimate " + " ".join(sys.argv[1:] if argv is None else argv),
        "assumptions": {"launch_seconds": LAUNCH_SECONDS, "gpu_flops": GPU_FLOPS},
        "hardware": hardware_info(),
        "studies": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
