"""The standardized sweep: train -> evaluate -> score for every (env, method, seed) of a suite.

``morbench benchmark --suite quick`` is the README's main job. Runs are independent, so they go to a local
process pool by default, or to a Ray cluster with ``--executor ray``. A sweep can be interrupted and started
again with the same command: finished runs are skipped and interrupted ones resume from their checkpoint.
Every method of a suite gets the same compute budget (sampled tokens) on a given env.

The output defaults to ``results/<suite>``. Each run directory records its run identity (env id and version,
method, config, budget, seed, evaluation samples: ``morbench.runs.run_identity``); re-running into a directory
whose runs have another identity is refused before any work starts, so stale results are never mixed in.
While it runs, the progress bar names the runs in flight and a line reports each finished run's wall time, and
``benchmark.json`` (:class:`SuiteLog`) is rewritten as each run ends and every minute: every invocation in the
directory with its wall time and hardware, and each run's outcome from the invocation that ran it, so a suite
finished over several invocations (or killed in one) still says what it cost. Each finished run also leaves a
scored record (:func:`bank_scored`, ``scored/<env>/<method>/seed_<s>.json``): a few kB that are committed, so a
checkout without the run folders (a fresh clone) resumes the suite and scores it from them.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from morbench.errors import ConfigError, InvalidRunError, MorbenchError
from morbench.runs import RUN_FILE, RunLock, atomic_write_json, identity_difference, read_run, run_identity

__all__ = [
    "SUITES",
    "Job",
    "SuiteEntry",
    "check_existing_runs",
    "default_out",
    "job_identity",
    "run_benchmark",
    "run_job",
    "run_jobs",
    "suite_jobs",
]

ALL_METHODS = ("iterative_rs", "rewarded_soups", "morlhf", "rewards_in_context", "prior", "best_of_n")


@dataclasses.dataclass(frozen=True)
class SuiteEntry:
    """One env of a suite: which methods and seeds run, with what budget and method settings."""

    env_id: str
    seeds: tuple[int, ...]
    sampled_tokens: int  # the budget of every method's run
    eval_samples: int
    methods: tuple[str, ...] = ALL_METHODS
    overrides: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # method -> config overrides
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    # how methods with several trained policies share the budget (docs/baselines.md): "total" (every method
    # spends the same total) or "per_expert" (every expert/policy gets the whole budget: equal iterations per expert)
    convention: str = "total"


def _ppo(batch: int, minibatch: int, lr: float, kl: float) -> dict[str, Any]:
    return {"ppo.batch_size": batch, "ppo.minibatch_size": minibatch, "ppo.learning_rate": lr, "ppo.kl_coef": kl}


_MOTIFS_PPO = _ppo(32, 16, 3e-3, 0.005)
_MOTIFS = {
    "iterative_rs": {**_MOTIFS_PPO, "iterations": 1000, "merge_every": 2},
    "rewarded_soups": {**_MOTIFS_PPO, "iterations": 1000},
    "morlhf": {**_MOTIFS_PPO, "iterations": 1000},
    "rewards_in_context": {  # offline data: half of the budget; online rounds until it is spent
        "offline_samples": 1_000_000,
        "online_samples": 256,
        "offline_epochs": 8,
        "levels": 5,
        "online_epochs": 3,
        "learning_rate": 3e-3,
    },
}

_QM9_PPO = _ppo(64, 32, 1e-4, 0.05)
_QM9 = {
    "iterative_rs": {**_QM9_PPO, "iterations": 1000, "merge_every": 4},
    "rewarded_soups": {**_QM9_PPO, "iterations": 1000},
    "morlhf": {**_QM9_PPO, "iterations": 1000},
    "rewards_in_context": {  # offline data: half of the budget; online rounds until it is spent
        "offline_samples": 1_000_000,
        "online_samples": 512,
        "offline_epochs": 4,
        "online_epochs": 2,
        "learning_rate": 3e-4,
        "batch_size": 64,
    },
}
# the worst case of one PPO iteration, batch 64 x max_length sampled tokens (docs/baselines.md: budgets). Runs are
# charged what they sample and stop when the next worst case no longer fits, so IterativeRS (a round gives each
# of its K = 3 experts the same iterations) ends within K worst-case iterations of the budget: every suite budget
# is at least 10 K = 30 of them, so every method spends 90-100% of it (tests/test_benchmark_suites.py).
# CNS and Enhancer use QM9's PPO settings (checked to raise the scalarized reward within 16 iterations).
_ITERATION_TOKENS = {
    "morbench/QM9-v0": 64 * 31,  # prior samples average about 16 tokens: a PPO iteration costs about half of this
    "morbench/CNS-v0": 64 * 100,  # samples average about 39 tokens
    "morbench/Enhancer-v0": 64 * 51,  # every sequence is exactly 50 4-mers + EOS
    "morbench/QM9-v1": 64 * 31,  # v1 keeps v0's prior and max_length
    "morbench/CNS-v1": 64 * 100,  # v1 keeps v0's vocabulary and max_length
}
SEEDS = (0, 1, 2, 3, 4)  # every ranked baseline entry has 5 seeds


# best-of-N pays for its selection (n candidates per evaluation sample, at every preference) out of the same budget:
# at the quick and small budgets that is less than one candidate per sample at the protocol's 1,024 samples per
# preference (QM9: 59,520 tokens buy about 3,800 samples of 15.6 tokens, for 10,240 evaluation samples), so the
# method refuses to run there and those suites leave it out
WITHOUT_BEST_OF_N = tuple(m for m in ALL_METHODS if m != "best_of_n")


def _ppo_task(
    env_id: str,
    worst_case_iterations: int,
    eval_samples: int,
    methods: tuple[str, ...] = ALL_METHODS,
    overrides: dict[str, dict[str, Any]] = _QM9,
) -> SuiteEntry:
    """Every method, seeds 0-4, with the budget of ``worst_case_iterations`` PPO iterations at their worst case.

    The worst case is QM9's PPO settings; runs get about ``64 * max_length / mean sample tokens`` times as many.
    """
    tokens = _ITERATION_TOKENS[env_id] * worst_case_iterations
    return SuiteEntry(
        env_id, seeds=SEEDS, sampled_tokens=tokens, eval_samples=eval_samples, methods=methods, overrides=overrides
    )


# Enhancer's PPO settings in the standard suite, chosen on validation seed 100 at the small suite's budget by
# `python -m morbench.baselines.ppo_sweep --env morbench/Enhancer-v0` (docs/data/ppo_sweep_enhancer_v0.json;
# docs/baselines.md, "PPO settings per task"): learning rate 3e-4 and KL coefficient 0.01 gave the largest
# hypervolume gain over the prior (Rewarded Soups and MORLHF), where QM9's 1e-4 and 0.05 barely move the policy on
# this zero-sum task. The small suite keeps QM9's settings: its Enhancer rows are on the leaderboard.
ENHANCER_PPO = {"ppo.learning_rate": 3e-4, "ppo.kl_coef": 0.01}
_ENHANCER = {
    method: {**settings, **ENHANCER_PPO} if "ppo.learning_rate" in settings else settings
    for method, settings in _QM9.items()
}


# The standard suite's Rewards-in-Context trains a fixed number of steps after each online round, as RiC's own code
# does (online_training_steps: 4,000 steps of 8 sequences per round of 20,000 generations, 1.6 sequences trained
# per generation), instead of epochs over everything kept so far: those make a run's supervised work grow with
# the square of its rounds (QM9-v0: 5,264 steps of 64 sequences and 1,422 s a run against 304-379 s for the PPO
# methods at the same budget). docs/baselines.md, "Budgets and compute accounting".
RIC_SEQUENCES_PER_GENERATION = 1.6


def _ric_online_steps(overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``overrides`` with Rewards-in-Context's ``online_steps`` set to RiC's sequences-per-generation ratio."""
    from morbench.baselines.rewards_in_context import RewardsInContextConfig

    ric = overrides["rewards_in_context"]
    defaults = RewardsInContextConfig()
    batch = ric.get("batch_size", defaults.batch_size)
    samples = ric.get("online_samples", defaults.online_samples)
    steps = math.ceil(round(RIC_SEQUENCES_PER_GENERATION * samples) / batch)
    return {**overrides, "rewards_in_context": {**ric, "online_steps": steps}}


_SUMMARIZE_PPO = _ppo(16, 8, 1e-5, 0.05)
_SUMMARIZE = {
    "iterative_rs": {**_SUMMARIZE_PPO, "iterations": 1000, "merge_every": 4},
    "rewarded_soups": {**_SUMMARIZE_PPO, "iterations": 1000},
    "morlhf": {**_SUMMARIZE_PPO, "iterations": 1000},
    "rewards_in_context": {  # offline data: half of the budget; online rounds until it is spent
        "offline_samples": 1_000_000,
        "online_samples": 128,
        "offline_epochs": 2,
        "online_epochs": 1,
        "learning_rate": 1e-5,
        "batch_size": 8,
    },
}

SUITES: dict[str, list[SuiteEntry]] = {
    "smoke": [  # seconds: used by the tests
        SuiteEntry(
            "morbench/Motifs-2obj-v0",
            seeds=(0,),
            sampled_tokens=32 * 6 * 8,
            eval_samples=16,
            methods=("iterative_rs", "morlhf", "prior"),
            overrides=_MOTIFS,
        ),
    ],
    # make demo: 25 runs (5 methods x 5 seeds), about 60 actual PPO iterations per PPO run; evaluated at the
    # protocol's sample count (1,024 per preference), the only count the leaderboard ranks
    "quick": [_ppo_task("morbench/QM9-v0", 30, 1024, WITHOUT_BEST_OF_N)],
    # the quick scale on the other real tasks (their leaderboard rows): about 77 (CNS) and 48 (Enhancer) actual
    # PPO iterations per PPO run; QM9-v1 and CNS-v1 at the budgets of their v0 rows
    "small": [
        _ppo_task("morbench/CNS-v0", 30, 1024, WITHOUT_BEST_OF_N),
        _ppo_task("morbench/Enhancer-v0", 48, 1024, WITHOUT_BEST_OF_N),
        # the v1 tasks (issue 15) at the scale of their v0 rows: QM9-v1 as the quick suite's QM9-v0
        _ppo_task("morbench/QM9-v1", 30, 1024, WITHOUT_BEST_OF_N),
        _ppo_task("morbench/CNS-v1", 30, 1024, WITHOUT_BEST_OF_N),
    ],
    "standard": [  # hours on 2 CPU cores; every method of an env gets the same sampled-token budget
        SuiteEntry(
            "morbench/Motifs-v0",
            seeds=SEEDS,
            sampled_tokens=32 * 8 * 400,
            eval_samples=512,
            overrides=_ric_online_steps(_MOTIFS),
        ),
        _ppo_task("morbench/QM9-v0", 150, 1024, overrides=_ric_online_steps(_QM9)),  # about 300 PPO iterations
        _ppo_task("morbench/CNS-v0", 80, 1024, overrides=_ric_online_steps(_QM9)),  # about 200
        _ppo_task("morbench/Enhancer-v0", 200, 1024, overrides=_ric_online_steps(_ENHANCER)),
    ],
    "text": [  # SmolLM2-135M: a GPU machine (about 30 sampled tokens/s on one CPU core)
        SuiteEntry(
            "morbench/Summarize-v0",
            seeds=(0, 1, 2),
            sampled_tokens=16 * 64 * 200,  # 200 PPO iterations of 16 summaries of at most 64 tokens
            eval_samples=100,  # one summary per test paper and preference
            overrides=_SUMMARIZE,
        ),
    ],
}


@dataclasses.dataclass(frozen=True)
class Job:
    """One run of a suite: an (env, method, seed) with its budget, evaluation size and output folder."""

    env_id: str
    method: str
    seed: int
    out: str
    overrides: dict[str, Any]
    sampled_tokens: int
    eval_samples: int
    env_kwargs: dict[str, Any]
    threads: int = 1
    convention: str = "total"  # the budget convention (SuiteEntry.convention)
    device: str = "cpu"  # where policies and priors live (morbench.runs.resolve_device); part of the run identity
    # where the finished run's scored record goes (:func:`bank_scored`; "" for none): what a checkout without the
    # run's folder (a fresh clone: weights and samples are never committed) keeps of it
    scored: str = ""

    @property
    def name(self) -> str:
        """``"<env id> <method> seed=<seed>"``, as progress lines and errors name the job."""
        return f"{self.env_id} {self.method} seed={self.seed}"


def suite_jobs(
    suite: str,
    out: Path,
    envs: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    threads: int = 1,
    convention: str | None = None,
    device: str = "cpu",
) -> list[Job]:
    """The jobs of ``suite`` under ``out``, optionally restricted to some envs, methods and seeds."""
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; choose one of {sorted(SUITES)}")
    if convention not in (None, "total", "per_expert"):
        raise ConfigError(f"unknown budget convention {convention!r}; use 'total' or 'per_expert'")
    entries = SUITES[suite]
    if envs:
        known = {e.env_id for e in entries}
        unknown = sorted(set(envs) - known)
        if unknown:
            raise ConfigError(f"envs {unknown} are not in the {suite!r} suite ({sorted(known)})")
        entries = [e for e in entries if e.env_id in envs]
    if methods:
        unknown = sorted(set(methods) - set(ALL_METHODS))
        if unknown:
            raise ConfigError(f"unknown methods {unknown}; choose from {list(ALL_METHODS)}")
    jobs = []
    for entry in entries:
        for method in entry.methods:
            if methods and method not in methods:
                continue
            for seed in seeds if seeds is not None else entry.seeds:
                relative = Path(entry.env_id.replace("/", "_")) / method / f"seed_{seed}"
                jobs.append(
                    Job(
                        entry.env_id,
                        method,
                        int(seed),
                        str(out / "runs" / relative),
                        dict(entry.overrides.get(method, {})),
                        entry.sampled_tokens,
                        entry.eval_samples,
                        dict(entry.env_kwargs),
                        threads,
                        convention or entry.convention,
                        device,
                        str(out / SCORED_DIR / relative.with_suffix(".json")),
                    )
                )
    if not jobs:
        raise ConfigError("the selection (--envs/--methods/--seeds) leaves no runs")
    return jobs


def default_out(suite: str) -> str:
    """Where ``morbench benchmark --suite <suite>`` writes when ``--out`` is not given."""
    return f"results/{suite}"


def job_identity(job: Job) -> dict[str, Any]:
    """The run identity the job's run directory must record (the same fields ``RunContext`` records)."""
    from morbench.baselines import build_config
    from morbench.baselines.common import identity_config
    from morbench.baselines.training import Budget
    from morbench.registry import spec
    from morbench.runs import resolve_device

    return run_identity(
        job.method,
        job.env_id,
        spec(job.env_id).version,
        dict(job.env_kwargs),
        identity_config(dataclasses.asdict(build_config(job.method, job.overrides))),
        Budget(sampled_tokens=job.sampled_tokens, convention=job.convention).to_dict(),
        job.seed,
        job.eval_samples,
        device=resolve_device(job.device).type,
    )


def check_existing_runs(jobs: Sequence[Job]) -> None:
    """Refuse (before any work) to reuse finished runs whose identity differs from the jobs'.

    A different suite, budget, config, seed or env version would mix their results in silently.
    """
    problems = []
    for job in jobs:
        if job.scored and Path(job.scored).is_file():
            try:
                recorded = read_scored(job.scored)["identity"]
            except InvalidRunError as exc:
                problems.append(str(exc))
            else:
                if recorded != job_identity(job):
                    problems.append(f"{job.scored}: {identity_difference(recorded, job_identity(job))}")
        if not (Path(job.out) / RUN_FILE).exists():
            continue
        try:
            recorded = read_run(job.out).get("identity")
        except InvalidRunError as exc:
            problems.append(f"{job.out}: {exc}")
            continue
        expected = job_identity(job)
        if recorded != expected:
            problems.append(f"{job.out}: {identity_difference(recorded, expected)}")
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ConfigError(
            f"{len(problems)} existing run(s) in this output directory were made with other settings, so they "
            f"cannot be resumed or reused:\n  {shown}\nuse another --out, or delete those run directories and scored "
            "records"
        )


def run_job(job: Job) -> dict[str, Any]:
    """Train, evaluate and write one run (resuming it if it was interrupted); never raises."""
    import torch

    torch.set_num_threads(job.threads)
    start = time.perf_counter()
    try:
        from morbench.baselines import build_config, run_method
        from morbench.baselines.training import Budget

        out = Path(job.out)
        if (out / RUN_FILE).exists():
            recorded = read_run(out).get("identity")
            if recorded != job_identity(job):
                raise InvalidRunError(
                    f"{out} holds a run with other settings ({identity_difference(recorded, job_identity(job))}); "
                    "delete it or use another --out"
                )
            bank_scored(job)  # a run finished before its scored record was written (or by an older morbench)
            return {"job": job.name, "status": "skipped (already complete)", "seconds": 0.0}
        if job.scored and Path(job.scored).is_file():
            recorded = read_scored(job.scored)["identity"]
            if recorded != job_identity(job):
                raise InvalidRunError(
                    f"{job.scored} is the record of a run with other settings "
                    f"({identity_difference(recorded, job_identity(job))}); delete it or use another --out"
                )
            return {"job": job.name, "status": "skipped (already complete)", "seconds": 0.0}
        run_method(
            job.method,
            job.env_id,
            out,
            seed=job.seed,
            config=build_config(job.method, job.overrides),
            budget=Budget(sampled_tokens=job.sampled_tokens, convention=job.convention),
            resume=(out / "checkpoint").exists(),
            env_kwargs=job.env_kwargs,
            eval_samples=job.eval_samples,
            progress=False,
            device=job.device,
        )
        seconds = time.perf_counter() - start
        bank_scored(job)
        return {"job": job.name, "status": "ok", "seconds": seconds}
    except Exception as exc:
        return {
            "job": job.name,
            "status": "failed",
            "error": str(exc) if isinstance(exc, MorbenchError) else f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "seconds": time.perf_counter() - start,
        }


# -- scored records: what a fresh clone keeps of a finished run -------------------------------------------------
SCORED_DIR, SCORED_FORMAT = "scored", 1
SCORED_CURVE_POINTS = 100  # learning-curve points kept per trained policy
_CURVE_KEYS = ("sampled_tokens", "score_mean", "kl_to_prior")


def thinned_curve(run_dir: Path, points: int = SCORED_CURVE_POINTS) -> list[dict[str, Any]]:
    """The run's learning curve, thinned for a scored record.

    The ``curve.jsonl`` entries that carry a training score, reduced to the policy tag, sampled tokens, score and KL,
    at most ``points`` per trained policy (its first and last kept).
    """
    from morbench.plots import POLICY_TAGS
    from morbench.runs import CURVE_FILE

    path = run_dir / CURVE_FILE
    if not path.is_file():
        return []
    by_policy: dict[Any, list[dict[str, Any]]] = {}
    for text in path.read_text().splitlines():
        if not text.strip():
            continue
        entry = json.loads(text)
        if "score_mean" not in entry:
            continue
        tags = {t: entry[t] for t in POLICY_TAGS if entry.get(t) is not None}
        by_policy.setdefault(json.dumps(tags, sort_keys=True), []).append(
            {**tags, **{k: entry[k] for k in _CURVE_KEYS if k in entry}}
        )
    kept = []
    for entries in by_policy.values():
        step = max(1, -(-len(entries) // points))
        thinned = entries[::step]
        if thinned[-1] is not entries[-1]:
            thinned.append(entries[-1])
        kept += thinned
    return kept


def bank_scored(job: Job) -> None:
    """Write ``job.scored``: the finished run's identity, score and thinned learning curve.

    The score is :func:`morbench.scoring.score_run`'s result without the run's folder, the curve :func:`thinned_curve`.
    Suites run for hours over several sessions, and a checkout keeps only what is committed: never the runs' weights
    or samples (megabytes each). These records (a few kB) are committed as runs finish; a later invocation, in a
    fresh clone, counts a run whose record matches its identity as finished and scores the suite from the records
    of the runs that are not here (their samples plot aside). Nothing to do without ``job.scored`` or when the
    record exists.
    """
    if not job.scored or Path(job.scored).is_file():
        return
    from morbench.scoring import _jsonable, score_run

    run_dir = Path(job.out)
    result = score_run(run_dir)
    result.pop("run_dir", None)
    record = {
        "format": SCORED_FORMAT,
        "job": job.name,
        "identity": job_identity(job),
        "result": _jsonable(result),
        "curve": thinned_curve(run_dir),
    }
    atomic_write_json(job.scored, record)


def read_scored(path: str | Path) -> dict[str, Any]:
    """A scored record (:func:`bank_scored`), checked for its format and fields."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRunError(f"{path}: not a readable scored record ({exc})") from None
    fields_ok = isinstance(record, dict) and all(
        isinstance(record.get(k), t) for k, t in (("identity", dict), ("result", dict), ("curve", list))
    )
    if not fields_ok or record.get("format") != SCORED_FORMAT:
        raise InvalidRunError(
            f"{path}: not a scored record of format {SCORED_FORMAT} (it needs identity, result and curve); "
            "delete it and re-run its job"
        )
    return record


def restored_results(out: Path) -> list[dict[str, Any]]:
    """The results of the runs under ``out`` whose folder is gone but whose scored record is here (a fresh clone).

    Each result is the record's score with its ``run_dir`` (the folder the run had) and its thinned ``curve``.
    """
    results = []
    for path in sorted((Path(out) / SCORED_DIR).glob("*/*/*.json")):
        run_dir = Path(out) / "runs" / path.relative_to(Path(out) / SCORED_DIR).with_suffix("")
        if (run_dir / RUN_FILE).is_file():
            continue  # the run itself is here: it is scored from its folder
        record = read_scored(path)
        results.append({**record["result"], "run_dir": str(run_dir), "curve": record["curve"]})
    return results


def _finished_line(outcome: dict[str, Any], done: int, total: int) -> str:
    """One line per finished run: ``[3/18] ok      morbench/QM9-v0 morlhf seed=1   412.3 s``."""
    return f"[{done}/{total}] {outcome['status']:<8} {outcome['job']}  {outcome['seconds']:.1f} s"


def _in_flight(names: Sequence[str]) -> str:
    return "running: " + ", ".join(names) if names else ""


def _show_in_flight(bar: Any, names: Sequence[str]) -> None:
    """Name the runs in flight after the bar.

    On a terminal it redraws every call (the clock ticks); into a log file (stderr not a terminal) only when they
    change, since each redraw there is a new line: the once-a-second redraw used to write about 2 MB into the log
    of a 2.5-hour study chunk.
    """
    if bar.disable:  # no progress (a disabled bar has no postfix either)
        return
    text = _in_flight(names)
    if sys.stderr.isatty() or text != (bar.postfix or ""):
        bar.set_postfix_str(text)


Expected = Callable[[Any], float | None]  # a job's estimated seconds (None: no estimate)


def _refused_start(job: Any, deadline: float | None, expected: Expected | None) -> dict[str, Any] | None:
    """None if ``job`` may start now, else its "not started" outcome.

    ``deadline`` is a ``time.monotonic()`` value (None: no limit). A run starts only before it and, where
    ``expected`` estimates its seconds, only if it should finish by it: a chunk then ends near its limit instead of
    one long run past it (what is left of a session would kill that run and lose its work). The time left only
    shrinks, so a refused run would never start later in the same call.
    """
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        return {"job": job.name, "status": "not started (time limit)", "seconds": 0.0}
    seconds = None if expected is None else expected(job)
    if seconds is not None and seconds > left:
        status = f"not started (estimated {seconds / 3600:.2f} h, more than the {left / 3600:.2f} h left)"
        return {"job": job.name, "status": status, "seconds": 0.0, "estimated_seconds": seconds}
    return None


def _run_local(
    jobs: list[Job],
    workers: int,
    progress: bool,
    fn: Callable[[Any], dict[str, Any]] = run_job,
    deadline: float | None = None,
    expected: Expected | None = None,
    on_outcome: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    results = []
    bar = tqdm(total=len(jobs), desc="benchmark", unit="run", disable=not progress)

    def finished(outcome: dict[str, Any]) -> None:
        results.append(outcome)
        bar.update(1)
        if progress:
            bar.write(_finished_line(outcome, len(results), len(jobs)), file=sys.stderr)
        if on_outcome is not None:
            on_outcome(outcome)

    if workers <= 1:
        for job in jobs:
            if refused := _refused_start(job, deadline, expected):
                finished(refused)
                continue
            _show_in_flight(bar, [job.name])
            outcome = fn(job)
            _show_in_flight(bar, [])
            finished(outcome)
    else:
        context = multiprocessing.get_context("spawn")
        queue = list(jobs)
        with futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            # at most `workers` runs in flight, so that a time limit stops new runs from starting
            pending: dict[futures.Future, Job] = {}
            while queue or pending:
                while queue and len(pending) < workers:
                    job = queue.pop(0)
                    if refused := _refused_start(job, deadline, expected):
                        finished(refused)
                    else:
                        pending[pool.submit(fn, job)] = job
                if not pending:
                    continue
                done, _ = futures.wait(pending, timeout=1.0, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    pending.pop(future)
                    finished(future.result())
                _show_in_flight(bar, [job.name for future, job in pending.items() if future.running()])
    bar.close()
    return results


def _run_ray(
    jobs: list[Job],
    address: str | None,
    progress: bool,
    fn: Callable[[Any], dict[str, Any]] = run_job,
    deadline: float | None = None,
    workers: int | None = None,
    expected: Expected | None = None,
    on_outcome: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install 'morbench[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        remote = ray.remote(num_cpus=1)(fn)
        # without a time limit every run is queued at once; with one, at most `workers` (default: the cluster's
        # CPUs) are in flight, so that runs stop starting at the limit
        limit = len(jobs) if deadline is None else (workers or max(1, int(ray.cluster_resources().get("CPU", 1))))
        queue, results = list(jobs), []
        refs: list[Any] = []
        bar = tqdm(total=len(jobs), desc="benchmark (ray)", unit="run", disable=not progress)
        while queue or refs:
            while queue and len(refs) < limit:
                job = queue.pop(0)
                if refused := _refused_start(job, deadline, expected):
                    results.append(refused)
                    bar.update(1)
                    if on_outcome is not None:
                        on_outcome(refused)
                else:
                    refs.append(remote.remote(job))
            if not refs:
                continue
            done, refs = ray.wait(refs, num_returns=1)
            results.append(ray.get(done[0]))
            bar.update(1)
            if progress:
                bar.write(_finished_line(results[-1], len(results), len(jobs)), file=sys.stderr)
            if on_outcome is not None:
                on_outcome(results[-1])
        bar.close()
        return results
    finally:
        if started_here:
            ray.shutdown()


def run_jobs(
    jobs: Sequence[Any],
    executor: str = "local",
    workers: int | None = 1,
    ray_address: str | None = None,
    progress: bool = True,
    fn: Callable[[Any], dict[str, Any]] = run_job,
    deadline: float | None = None,
    expected: Expected | None = None,
    on_outcome: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn(job)`` (default :func:`run_job`) for every job on the local pool or Ray; one outcome per job.

    ``fn`` must be a picklable module-level function that never raises and returns ``{"job", "status",
    "seconds", ...}``. With ``deadline`` (a ``time.monotonic()`` value) no run starts after it, nor one that
    ``expected(job)`` (its estimated seconds, or None) says would end after it; the next job in order that fits
    starts instead. Jobs left get a status starting with ``"not started"``; the same command continues them later.
    ``on_outcome(outcome)`` is called in this process as each job ends (or is not started), in that order.
    """
    if executor == "local":
        return _run_local(list(jobs), workers or 1, progress, fn, deadline, expected, on_outcome)
    if executor == "ray":
        return _run_ray(list(jobs), ray_address, progress, fn, deadline, workers, expected, on_outcome)
    raise ConfigError(f"unknown executor {executor!r}; use 'local' or 'ray'")


LOG_FILE, LOG_FORMAT = "benchmark.json", 2
HEARTBEAT_SECONDS = 60.0  # how often benchmark.json's wall time is refreshed while runs are in flight


class SuiteLog:
    """``<out>/benchmark.json``: what running a suite in ``out`` has cost, over every invocation.

    ``invocations``: one entry per ``morbench benchmark`` call into the directory (UTC start, executor, workers,
    torch threads per run, wall seconds so far, whether it ended, hardware and versions). ``jobs``: one outcome per
    run, from the invocation that ran it (``invocation`` is its index); a later invocation that skips the finished
    run keeps that record. ``wall_seconds`` sums the invocations (the suite's wall time if it ran in one go, or the
    time its pieces took), ``run_seconds`` the finished runs' own seconds, and ``complete`` says whether every run
    of the last invocation's suite has finished. The file is rewritten as each run ends, so a killed invocation
    leaves the runs it finished recorded, and every ``heartbeat`` seconds in between, so the wall time of a killed
    invocation misses at most that much (what its runs in flight had done resumes from their checkpoints). A log of
    format 1 (the last invocation only) is read as one invocation; one that is not a log of this suite is kept
    aside as ``benchmark.json.unreadable`` (never overwritten) and a new log starts.
    """

    def __init__(
        self,
        out: Path,
        suite: str,
        names: Sequence[str],
        *,
        executor: str,
        workers: int,
        threads: int = 1,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        from morbench.runs import hardware_info

        self.path, self.suite, self.names = Path(out) / LOG_FILE, suite, list(names)
        jobs, self.invocations = self._previous()
        self.jobs = {job["job"]: job for job in jobs}
        self._start = time.perf_counter()
        self.current = {
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "executor": executor,
            "workers": workers,
            "threads_per_run": threads,  # each run's torch threads (the hardware's torch_threads is this process's)
            "runs": len(self.names),
            "wall_seconds": 0.0,
            "finished": False,
            "hardware": hardware_info(),
        }
        self.invocations.append(self.current)
        self._lock, self._stop = threading.Lock(), threading.Event()
        self.write()
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat,), name="benchmark.json", daemon=True)
        self._beat.start()

    def close(self) -> None:
        """Stop the heartbeat (``write(finished=True)`` also does); the file keeps its last write."""
        self._stop.set()
        self._beat.join()

    def _heartbeat(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            with self._lock:
                if not self._stop.is_set():  # the final write may have happened while this one waited
                    self._write(finished=False)

    def _previous(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if not self.path.is_file():
            return [], []
        try:
            log = json.loads(self.path.read_text())
            if not isinstance(log, dict) or log.get("suite") != self.suite:
                found = log.get("suite") if isinstance(log, dict) else None
                raise ValueError(f"it is not a log of suite {self.suite!r} (suite {found!r})")
            if "invocations" not in log:  # format 1: the last invocation only
                log["invocations"] = [{k: log.get(k) for k in ("executor", "workers", "wall_seconds")}]
            jobs, invocations = log["jobs"], log["invocations"]
            if not all(isinstance(x, list) and all(isinstance(e, dict) for e in x) for x in (jobs, invocations)):
                raise ValueError("its jobs and invocations must be lists of objects")
            if not all(isinstance(job.get("job"), str) and isinstance(job.get("status"), str) for job in jobs):
                raise ValueError("every job needs a name and a status")
            return jobs, invocations
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            aside = self.path.with_name(LOG_FILE + ".unreadable")
            while aside.exists():
                aside = aside.with_name(aside.name + "~")
            os.replace(self.path, aside)
            print(f"{self.path}: not read ({exc}); kept as {aside}, a new log starts", file=sys.stderr)
            return [], []

    def record(self, outcome: dict[str, Any]) -> None:
        """Record one run's outcome (a skip keeps the record of the invocation that ran it) and rewrite the file."""
        earlier = self.jobs.get(outcome["job"])
        ran_before = earlier is not None and earlier["status"] == "ok"
        with self._lock:
            if not (ran_before and outcome["status"].startswith(("skipped", "not started"))):
                self.jobs[outcome["job"]] = {**outcome, "invocation": len(self.invocations) - 1}
            self._write(finished=False)

    def write(self, finished: bool = False) -> None:
        """Rewrite ``benchmark.json`` (atomically); ``finished``: this invocation has ended (the heartbeat stops)."""
        if finished:
            self._stop.set()
        with self._lock:
            self._write(finished)

    def _write(self, finished: bool) -> None:
        self.current.update(wall_seconds=time.perf_counter() - self._start, finished=finished)
        jobs = list(self.jobs.values())
        atomic_write_json(
            self.path,
            {
                "format": LOG_FORMAT,
                "suite": self.suite,
                "complete": all(
                    self.jobs.get(name, {}).get("status") in ("ok", "skipped (already complete)") for name in self.names
                ),
                "wall_seconds": sum(float(i.get("wall_seconds") or 0.0) for i in self.invocations),
                "run_seconds": sum(float(job.get("seconds") or 0.0) for job in jobs if job["status"] == "ok"),
                "invocations": self.invocations,
                "jobs": jobs,
            },
        )


def run_benchmark(
    suite: str,
    out: str | Path,
    envs: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = True,
    plots: bool = True,
    threads: int | None = None,
    convention: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run a suite and score it; writes ``out/results.{csv,md}``, ``metrics.json``, ``report.md``, ``plots/``.

    ``convention`` overrides the suite's budget convention: ``"total"`` or ``"per_expert"`` (docs/baselines.md).
    ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``) is where every run trains and evaluates its policies.
    """
    out = Path(out)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers={workers!r} must be a positive integer")
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    threads = threads or max(1, (os.cpu_count() or 1) // workers)  # torch threads per run
    from morbench.runs import resolve_device

    device = str(resolve_device(device))  # a bad device fails here, before any run starts
    jobs = suite_jobs(suite, out, envs, methods, seeds, threads=threads, convention=convention, device=device)
    check_existing_runs(jobs)
    with RunLock(out, what="benchmark"):
        return _run_and_score(suite, out, jobs, executor, workers, ray_address, progress, plots)


def _run_and_score(
    suite: str,
    out: Path,
    jobs: list[Job],
    executor: str,
    workers: int,
    ray_address: str | None,
    progress: bool,
    plots: bool,
) -> dict[str, Any]:
    threads = jobs[0].threads if jobs else 1
    log = SuiteLog(out, suite, [job.name for job in jobs], executor=executor, workers=workers, threads=threads)
    try:
        outcomes = run_jobs(jobs, executor, workers, ray_address, progress, on_outcome=log.record)
        log.write(finished=True)
    finally:
        log.close()  # an error or Ctrl-C leaves the invocation unfinished, and no heartbeat behind
    failed = [o for o in outcomes if o["status"] == "failed"]

    from morbench.scoring import report_markdown, score_directory

    payload = score_directory(out / "runs", out=out, plots=plots, restored=restored_results(out))
    (out / "results.md").write_text(report_markdown(payload["summary"], payload["runs"], [], out))
    payload["failed"] = failed
    return payload
