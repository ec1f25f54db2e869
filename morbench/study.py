"""Studies: the paper's question at convergence (IterativeRS against its baselines, the merge period ``m``, KL).

``morbench study <name>`` runs a committed study definition: a list of *rows* (a method with its config, budget
and compute convention on one env), each over seeds. It reuses the benchmark's machinery
(:mod:`morbench.benchmark`: :class:`~morbench.benchmark.Job`, :func:`~morbench.benchmark.run_job`, the local and
Ray executors, run identities): finished runs are skipped, interrupted ones resume from their checkpoint, and a
run directory made with other settings is refused before any work starts. ``--max-hours H`` starts no run that
its estimate says would end after ``H`` hours, so a long study is run in chunks of at most about ``H`` hours whose
finished runs can be committed in between (the same command continues it). Runs are ordered seed-major (every
row of seed 0 first, longest first within a seed), so a partial study is close to a complete comparison over fewer
seeds.

Layout under ``results/studies/`` (a study's output is ``<name>/``, ``<name>-smoke/`` for ``--smoke``; runs are
pooled next to it, keyed by their identity, so studies share the runs they have in common):

* ``runs/<env>/<method>/<run key>/seed_<s>/``: ordinary run directories (weights included; never committed);
* ``evaluations/t<T>/<env>/<method>/<run key>/seed_<s>/evaluation.json.gz``: the same trained policy re-evaluated
  at decoding temperature ``T`` (a study-only override, :func:`morbench.evaluation.with_temperature`; never
  ranked);
* ``<name>/study.json``: the compact results (metrics, per-preference means, compute, learning curves; no weights, no
  samples) that ``morbench findings`` turns into ``docs/findings.md`` and the README's headline table
  (:mod:`morbench.findings`). Its format is :data:`STUDY_FORMAT` (docs/studies.md).

Studies: ``paper-qm9`` (every method at the paper's scale on QM9-v1, both compute conventions, decoding 0.7 and
the protocol's 1.0), ``m-sweep`` (IterativeRS over ``m`` and the objective subsampling ``M < K``) and
``frontier`` (reward against KL to the prior over KL coefficients); ``-cns``, ``-enhancer`` and ``-cns-mpo``
variants run the same at the standard scale on CNS-v1, Enhancer-v0 and CNS-MPO-v1.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import re
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from morbench.benchmark import _QM9, ALL_METHODS, Job, check_existing_runs, job_identity, run_job, run_jobs
from morbench.errors import ConfigError, MorbenchError
from morbench.runs import RUN_FILE, RunLock, atomic_write_bytes, read_run

if TYPE_CHECKING:
    from morbench.core import TokenEnv

__all__ = [
    "STUDIES",
    "STUDY_FORMAT",
    "Scale",
    "Study",
    "StudyJob",
    "StudyRow",
    "collect_study",
    "default_out",
    "estimate",
    "get_study",
    "run_study",
    "study_jobs",
    "submit_study",
]

STUDY_FORMAT = 1  # the format of study.json
SEEDS = (0, 1, 2, 3, 4)
PPO_METHODS = ("iterative_rs", "rewarded_soups", "morlhf")


@dataclasses.dataclass(frozen=True)
class StudyRow:
    """One row of a study: a method with its config overrides, budget and convention on one env, over seeds.

    ``label`` names the row in tables and its run folder; ``tags`` are what the analysis groups rows by
    (``group``: ``methods``, ``m-sweep``, ``subsampling``, ``frontier``; ``m``, ``M``, ``kl``, ``convention``).
    ``eval_temperatures`` are extra, study-only evaluations of the trained policy at those decoding temperatures,
    besides the run's own protocol evaluation.
    """

    label: str
    method: str
    env_id: str
    sampled_tokens: int
    eval_samples: int
    overrides: dict[str, Any]
    convention: str = "total"
    seeds: tuple[int, ...] = SEEDS
    eval_temperatures: tuple[float, ...] = ()
    tags: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def folder(self) -> str:
        """The row's folder name: its label with anything but letters, digits, ``.``, ``_`` and ``-`` as ``_``."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.label)

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "seeds": list(self.seeds),
            "eval_temperatures": list(self.eval_temperatures),
        }


@dataclasses.dataclass(frozen=True)
class Study:
    """A named list of rows; ``decodings`` are the evaluations the analysis reads (the first is the headline)."""

    name: str
    scale: str  # "paper", "standard" or "smoke"
    env_id: str
    description: str
    rows: tuple[StudyRow, ...]
    decodings: tuple[str, ...] = ("protocol",)  # "protocol" or "t<T>" (an eval_temperatures entry)

    def definition_hash(self) -> str:
        """sha256 (16 hex digits) of the rows: study.json records it, so results of another definition are refused."""
        text = json.dumps([row.to_dict() for row in self.rows], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Scale:
    """The settings a study kind is instantiated with on one env.

    ``iterations`` is T, the PPO iterations of every trained policy under the ``per_expert`` convention (the
    budget, T worst-case iterations, never binds first); under ``total`` every method gets the tokens IterativeRS
    spends in T iterations per expert (K T batch ``mean_tokens``, ``mean_tokens`` measured on the prior's
    samples), and the iteration cap is lifted.
    """

    env_id: str
    batch_size: int
    minibatch_size: int
    learning_rate: float
    kl_coef: float
    iterations: int
    max_length: int
    mean_tokens: float
    objectives: int
    eval_samples: int
    seeds: tuple[int, ...]
    temperature: float | None  # training and headline decoding temperature; None: the protocol's (1.0)
    m_values: tuple[int, ...]
    subsampling_m: int  # the m of the objective-subsampling rows (the paper's best for molecules: 4)
    subsets: tuple[int, ...]  # M < K
    kl_values: tuple[float, ...]
    ric: dict[str, Any]
    preferences: int = 10  # the task's preference grid size (best-of-N pays per evaluation sample of each)
    methods: tuple[str, ...] = ALL_METHODS
    smoke: bool = False

    def affords_best_of_n(self, convention: str) -> bool:
        """Whether best-of-N's budget pays for more than one candidate per evaluation sample after a 20% margin for
        its pilot batch and reserve (at exactly 1.2 it would be the prior; with less it refuses to run).

        ``total`` budgets are ``K T batch`` times the mean sample length, so the ratio is exact there and the
        rounding of the budget must not decide (CNS: ``3 * 64 * 64 = 1.2 * 10 * 1,024`` exactly)."""
        candidates = self.budget(convention) / self.mean_tokens
        return candidates > 1.2 * self.preferences * self.eval_samples * (1 + 1e-6)

    def methods_under(self, convention: str) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m != "best_of_n" or self.affords_best_of_n(convention))

    def ppo(self, kl_coef: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ppo.batch_size": self.batch_size,
            "ppo.minibatch_size": self.minibatch_size,
            "ppo.learning_rate": self.learning_rate,
            "ppo.kl_coef": self.kl_coef if kl_coef is None else kl_coef,
        }
        if self.temperature is not None:
            out["ppo.temperature"] = self.temperature
        return out

    def budget(self, convention: str) -> int:
        """Sampled tokens of every run under ``convention`` (see the class docstring)."""
        if convention == "per_expert":
            return self.iterations * self.batch_size * self.max_length
        return round(self.objectives * self.iterations * self.batch_size * self.mean_tokens)

    def cap(self, convention: str) -> int:
        """The iteration cap (T) of the PPO methods: T per expert, or lifted (10 T) under ``total``."""
        return self.iterations if convention == "per_expert" else 10 * self.iterations

    @property
    def eval_temperatures(self) -> tuple[float, ...]:
        return () if self.temperature is None else (self.temperature,)

    @property
    def decodings(self) -> tuple[str, ...]:
        return ("protocol",) if self.temperature is None else (temperature_key(self.temperature), "protocol")


def temperature_key(temperature: float) -> str:
    """``0.7`` -> ``"t0.7"``: the key of an extra evaluation (folder and study.json)."""
    return f"t{float(temperature):g}"


# -- the scales ------------------------------------------------------------------------------------------------
# mean sampled tokens per sequence of each prior, measured on this machine (batch of 128 at temperature 0.7 for
# QM9-v1; 64 at 1.0 for the others): they set the "total" budgets. Per-iteration wall times: docs/studies.md.
_QM9_RIC = _QM9["rewards_in_context"]  # the suites' QM9 Rewards-in-Context settings


def _paper_qm9() -> Scale:
    """The paper's QM9 scale: 100 PPO iterations of 128 molecules per expert, 4 epochs, minibatch 32, KL 0.05."""
    return Scale(
        env_id="morbench/QM9-v1",  # the QM9 task with a physics judge (GFN2-xTB at the uniform preference)
        batch_size=128,
        minibatch_size=32,
        learning_rate=1e-4,
        kl_coef=0.05,
        iterations=100,
        max_length=31,
        mean_tokens=16.1,
        objectives=3,
        eval_samples=1024,  # the protocol's count, the only one the leaderboard ranks
        seeds=SEEDS,
        temperature=0.7,  # the paper's decoding, in training and in the headline evaluation
        m_values=(1, 2, 4, 8, 16, 32, 100),
        subsampling_m=4,
        subsets=(1, 2),
        kl_values=(0.01, 0.05, 0.2),
        ric={**_QM9_RIC, "temperature": 0.7},
    )


def _standard(env_id: str, max_length: int, mean_tokens: float, objectives: int) -> Scale:
    """The standard scale on the other tasks: 64 PPO iterations of 64 sequences per expert, protocol decoding."""
    return Scale(
        env_id=env_id,
        batch_size=64,
        minibatch_size=32,
        learning_rate=1e-4,
        kl_coef=0.05,
        iterations=64,
        max_length=max_length,
        mean_tokens=mean_tokens,
        objectives=objectives,
        eval_samples=1024,
        seeds=SEEDS,
        temperature=None,
        m_values=(1, 2, 4, 8, 16, 32, 64),
        subsampling_m=4,
        subsets=(1, 2),
        kl_values=(0.01, 0.05, 0.2),
        ric=dict(_QM9_RIC),
    )


def _smoke(temperature: float | None) -> Scale:
    """Seconds: Motifs-v0 (3 objectives, 8 tokens, asset-free), 4 iterations of 8 per expert, one seed; the PPO
    methods and the prior (Rewards-in-Context's offline phase and best-of-N's candidates cost more than the rest)."""
    return Scale(
        env_id="morbench/Motifs-v0",
        batch_size=8,
        minibatch_size=4,
        learning_rate=3e-3,
        kl_coef=0.005,
        iterations=4,
        max_length=8,
        mean_tokens=7.0,
        objectives=3,
        eval_samples=8,
        seeds=(0,),
        temperature=temperature,
        m_values=(1, 2, 4),
        subsampling_m=2,
        subsets=(1,),
        kl_values=(0.005, 0.05),
        methods=("iterative_rs", "rewarded_soups", "morlhf", "prior"),
        ric={
            "offline_samples": 64,
            "online_samples": 16,
            "offline_epochs": 1,
            "online_epochs": 1,
            "levels": 5,
            "learning_rate": 3e-3,
            "batch_size": 16,
        },
        smoke=True,
    )


def _method_overrides(scale: Scale, method: str, convention: str, kl_coef: float | None = None) -> dict[str, Any]:
    if method in PPO_METHODS:
        out = {**scale.ppo(kl_coef), "iterations": scale.cap(convention)}
        if method == "iterative_rs":
            out["merge_every"] = scale.subsampling_m
        return out
    if method == "rewards_in_context":
        return dict(scale.ric)
    return {}


def _row(scale: Scale, label: str, method: str, convention: str, overrides: dict[str, Any], **tags: Any) -> StudyRow:
    return StudyRow(
        label=label,
        method=method,
        env_id=scale.env_id,
        sampled_tokens=scale.budget(convention),
        eval_samples=scale.eval_samples,
        overrides=overrides,
        convention=convention,
        seeds=scale.seeds,
        eval_temperatures=scale.eval_temperatures,
        tags={"convention": convention, **tags},
    )


def methods_rows(scale: Scale) -> list[StudyRow]:
    """Every method under both compute conventions (``<method>/<convention>``)."""
    return [
        _row(
            scale,
            f"{method}/{convention}",
            method,
            convention,
            _method_overrides(scale, method, convention),
            group="methods",
        )
        for convention in ("total", "per_expert")
        for method in scale.methods_under(convention)
    ]


def m_sweep_rows(scale: Scale) -> list[StudyRow]:
    """IterativeRS over m (T = one round: Rewarded Soups by construction), the subsampling rows, and the
    MORLHF and Rewarded Soups references, all with T iterations per trained policy (``per_expert``)."""
    convention = "per_expert"
    base = _method_overrides(scale, "iterative_rs", convention)
    rows = [
        _row(
            scale,
            f"m={m}",
            "iterative_rs",
            convention,
            {**base, "merge_every": m},
            group="m-sweep",
            m=m,
            M=scale.objectives,
            T=scale.iterations,
        )
        for m in scale.m_values
    ]
    rows += [
        _row(
            scale,
            f"M={size},m={scale.subsampling_m}",
            "iterative_rs",
            convention,
            {**base, "merge_every": scale.subsampling_m, "objectives_per_round": size},
            group="subsampling",
            m=scale.subsampling_m,
            M=size,
            T=scale.iterations,
        )
        for size in scale.subsets
    ]
    rows += [
        _row(
            scale,
            f"{method}/{convention}",
            method,
            convention,
            _method_overrides(scale, method, convention),
            group="references",
        )
        for method in ("rewarded_soups", "morlhf")
    ]
    return rows


def frontier_rows(scale: Scale) -> list[StudyRow]:
    """The PPO methods at every KL coefficient, and the methods without one (one point each), ``per_expert``."""
    convention = "per_expert"
    rows = [
        _row(
            scale,
            f"{method}/kl={kl:g}",
            method,
            convention,
            _method_overrides(scale, method, convention, kl),
            group="frontier",
            kl=kl,
        )
        for kl in scale.kl_values
        for method in PPO_METHODS
    ]
    rows += [
        _row(
            scale,
            f"{method}/{convention}",
            method,
            convention,
            _method_overrides(scale, method, convention),
            group="frontier",
            kl=None,
        )
        for method in scale.methods_under(convention)
        if method not in PPO_METHODS
    ]
    return rows


_KINDS = {
    "paper": (methods_rows, "every method at {where}, under both compute conventions"),
    "m-sweep": (m_sweep_rows, "IterativeRS over the merge period m and the objective subsampling M < K at {where}"),
    "frontier": (frontier_rows, "average reward against KL to the prior over KL coefficients at {where}"),
}
_SCALES = {
    "qm9": _paper_qm9,
    "cns": lambda: _standard("morbench/CNS-v1", 100, 37.1, 3),
    "enhancer": lambda: _standard("morbench/Enhancer-v0", 51, 51.0, 3),
    "cns-mpo": lambda: dataclasses.replace(_standard("morbench/CNS-MPO-v1", 100, 37.1, 5), preferences=16),
}


def _names() -> dict[str, tuple[str, str]]:
    """Study name -> (kind, scale key): ``paper-qm9``, ``m-sweep``, ``frontier`` (QM9), ``<kind>-<task>``."""
    names = {"paper-qm9": ("paper", "qm9"), "m-sweep": ("m-sweep", "qm9"), "frontier": ("frontier", "qm9")}
    for task in ("cns", "enhancer", "cns-mpo"):
        for kind in _KINDS:
            names[f"{kind}-{task}"] = (kind, task)
    return names


STUDIES: tuple[str, ...] = tuple(_names())


def get_study(name: str, smoke: bool = False) -> Study:
    """The definition of study ``name`` (``smoke``: the same rows at the seconds scale of :func:`_smoke`)."""
    names = _names()
    if name not in names:
        raise ConfigError(f"unknown study {name!r}; choose one of {list(names)}")
    kind, task = names[name]
    scale = _SCALES[task]()
    if smoke:
        scale = _smoke(0.7 if scale.temperature is not None else None)
    build, text = _KINDS[kind]
    where = (
        "the smoke scale (Motifs-v0, 4 iterations of 8 per expert, one seed; tests only)"
        if smoke
        else f"{'the paper' if task == 'qm9' else 'the standard'} scale on {scale.env_id} "
        f"(T = {scale.iterations} PPO iterations of {scale.batch_size} per expert, {len(scale.seeds)} seeds)"
    )
    return Study(
        name=name,
        scale="smoke" if smoke else ("paper" if task == "qm9" else "standard"),
        env_id=scale.env_id,
        description=text.format(where=where),
        rows=tuple(build(scale)),
        decodings=scale.decodings,
    )


def default_out(name: str, smoke: bool = False) -> str:
    """Where ``morbench study <name>`` writes when ``--out`` is not given."""
    return f"results/studies/{name}{'-smoke' if smoke else ''}"


# -- cost estimates --------------------------------------------------------------------------------------------
# measured on the 2-core x86_64 CPU this project runs on, 1 torch thread, while other jobs shared the cores (so these
# are pessimistic for an idle machine): seconds per PPO iteration at the scale's batch (QM9-v1: 128 molecules at
# temperature 0.7; the others: 64 sequences), and seconds per protocol evaluation (1,024 samples per preference,
# judge included). QM9-v1: the means of paper-qm9's seed-0 runs (its PPO runs: 2.5-2.8 s per iteration, checkpoints
# and all; its 12 evaluations: 54-79 s). The others: a PPO iteration timed under `nice` next to two benchmark jobs,
# and 16 times the measured evaluation of 64 samples per preference
MEASURED_SECONDS = {
    "morbench/QM9-v1": {"iteration": 2.7, "evaluation": 65.0},
    "morbench/CNS-v1": {"iteration": 2.90, "evaluation": 16 * 10.5},
    "morbench/Enhancer-v0": {"iteration": 3.02, "evaluation": 16 * 8.4},
    "morbench/CNS-MPO-v1": {"iteration": 6.94, "evaluation": 16 * 20.5},
}
# measured on paper-qm9's seed 0 (QM9-v1, on the same loaded machine as the PPO rows, whose iterations took 2.7 s):
# Rewards-in-Context fine-tunes on all the data it has gathered in every online round, so its cost grows with the
# square of its budget in batches b: seconds = RIC_QUADRATIC_SHARE * b^2 PPO iterations (0.037 at b = 299, the
# `total` run's 9,025 s; 0.042 at b = 192, the `per_expert` run's 4,223 s; 23,852 and 9,470 supervised steps).
# Best-of-N samples and scores its candidates without an update: 0.14 (105 s, b = 286) and 0.17 (82 s, b = 178) of
# a PPO iteration per batch. Other tasks are estimated with the same shares.
RIC_QUADRATIC_SHARE, BEST_OF_N_ITERATION_SHARE = 0.04, 0.15
# estimated GPU seconds per CPU second of a PPO iteration and of a protocol evaluation with `--device cuda` (policies
# and prior on the GPU; env, oracles, judges and scoring on the CPU): `python -m morbench.gpu_estimate`
# (docs/data/gpu_estimate.json; a model of kernel launches fed by CPU measurements, not a GPU measurement).
# Rewards-in-Context and best-of-N, priced in PPO iterations, are scaled like them
GPU_RATIO = {
    "morbench/QM9-v1": {"iteration": 0.182, "evaluation": 0.412},
    "morbench/CNS-v1": {"iteration": 0.107, "evaluation": 0.123},
    "morbench/Enhancer-v0": {"iteration": 0.143, "evaluation": 0.1},
    "morbench/CNS-MPO-v1": {"iteration": 0.156, "evaluation": 0.061},
}


def _row_iterations(row: StudyRow, scale: Scale) -> float:
    """Estimated PPO-iteration equivalents of one run of ``row``."""
    from morbench.baselines import build_config

    config = build_config(row.method, row.overrides)
    batch_iterations = row.sampled_tokens / (scale.batch_size * scale.mean_tokens)
    if row.method in PPO_METHODS:
        if row.method == "morlhf":
            policies = scale.objectives + 1
        elif row.method == "iterative_rs":
            policies = min(config.objectives_per_round or scale.objectives, scale.objectives)
        else:
            policies = scale.objectives
        if row.convention == "per_expert":
            return float(policies * min(config.iterations, scale.iterations))
        return min(batch_iterations, policies * config.iterations)
    if row.method == "rewards_in_context":
        return RIC_QUADRATIC_SHARE * batch_iterations**2
    if row.method == "best_of_n":
        return BEST_OF_N_ITERATION_SHARE * batch_iterations
    return 0.0


def row_seconds(name: str, gpu: bool = False) -> dict[str, tuple[str, float]]:
    """Estimated seconds of one seed of each row of study ``name``: ``{label: (run key, seconds)}``; rows with the
    same run key define the same run (it runs once). ``gpu``: with ``--device cuda`` (:data:`GPU_RATIO`)."""
    _, task = _names()[name]
    scale = _SCALES[task]()
    study = get_study(name)
    measured = MEASURED_SECONDS[study.env_id]
    ratio = GPU_RATIO[study.env_id] if gpu else {"iteration": 1.0, "evaluation": 1.0}
    iteration = measured["iteration"] * ratio["iteration"]
    evaluation = measured["evaluation"] * ratio["evaluation"] * scale.eval_samples / 1024
    out = {}
    for row in study.rows:
        key = json.dumps([row.method, row.overrides, row.sampled_tokens, row.convention], sort_keys=True)
        seconds = _row_iterations(row, scale) * iteration + evaluation * (1 + len(row.eval_temperatures))
        out[row.label] = (key, seconds)
    return out


def row_estimates(study: Study) -> dict[str, float] | None:
    """Estimated seconds of one run of each row of ``study`` (by label); None at the smoke scale (no prices)."""
    if study.scale == "smoke":
        return None
    return {label: seconds for label, (_, seconds) in row_seconds(study.name).items()}


def estimate(name: str) -> dict[str, float]:
    """Estimated cost of study ``name`` from :data:`MEASURED_SECONDS` (an estimate, not a measurement).

    ``core_hours``: every run once (rows that define the same run count once); ``hours_2_cores``: two local
    workers of one thread; ``hours_16_cores``: 16 Ray workers, at least the longest run; ``longest_run_hours``;
    ``hours_1_gpu``: one run at a time with ``--device cuda`` (:data:`GPU_RATIO`: a model, no GPU measurement).
    Runs shared with another study are counted in each.
    """
    runs = dict(row_seconds(name).values())
    per_seed = sum(runs.values())
    seeds = len(_SCALES[_names()[name][1]]().seeds)
    longest = max(runs.values())
    core = per_seed * seeds
    return {
        "core_hours": core / 3600,
        "hours_2_cores": core / 2 / 3600,
        "hours_16_cores": max(core / 16, longest) / 3600,
        "longest_run_hours": longest / 3600,
        "hours_1_gpu": sum(dict(row_seconds(name, gpu=True).values()).values()) * seeds / 3600,
    }


# a run resumed from its checkpoint is charged at least this share of its estimate (what its checkpoint says it
# spent is wall time, on cores that may have been shared; its protocol evaluations are still to come)
RESUMED_MIN_SHARE = 0.1


def seconds_left(run_dir: Path, estimate: float) -> float:
    """Estimated seconds still to spend on the run in ``run_dir`` whose whole run is estimated at ``estimate``.

    A run finished in this checkout only has its leftovers to do (scoring, its part): 0. A run with a checkpoint is
    charged its estimate less the training seconds its checkpoint's compute ledger records, but at least
    :data:`RESUMED_MIN_SHARE` of it (a damaged or unreadable checkpoint: the whole estimate, as the run may start
    over). Anything else: the whole estimate.
    """
    from morbench.baselines.checkpoint import load_checkpoint

    if (run_dir / RUN_FILE).is_file():
        return 0.0
    try:
        saved = load_checkpoint(run_dir / "checkpoint")
        spent = 0.0 if saved is None else float(saved["ledger"]["wall_seconds"])
    except (MorbenchError, OSError, KeyError, TypeError, ValueError):
        return estimate
    if not spent > 0 or spent == float("inf"):
        return estimate
    return max(estimate - spent, RESUMED_MIN_SHARE * estimate)


def remaining_core_hours(payload: dict[str, Any]) -> float:
    """Estimated core-hours of the runs a (paper, m-sweep or frontier scale) study.json does not hold yet: each
    (row, seed) without a protocol record, runs shared by several rows once."""
    done = {(r["row"], int(r["seed"])) for r in payload["records"] if r.get("decoding") == "protocol"}
    left: dict[tuple[str, int], float] = {}
    estimated = row_seconds(payload["study"])
    for row in payload["rows"]:
        key, seconds = estimated[row["label"]]
        for seed in row.get("seeds", ()):
            if (row["label"], int(seed)) not in done:
                left[(key, int(seed))] = seconds
    return sum(left.values()) / 3600


# -- jobs ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StudyJob:
    """A benchmark :class:`~morbench.benchmark.Job` and the study-only evaluations to make of its policy."""

    job: Job
    row: str
    eval_temperatures: tuple[float, ...]
    evaluations: tuple[str, ...]  # one folder per temperature, in that order
    compact: str = ""  # the folder of the run's scored compact records (one file per decoding)
    part: str = ""  # its leaderboard part (morbench.leaderboard.parts), or "" for none
    ledger: str = ""  # the ledger that verifies the part
    # a re-run of a run finished in another checkout (``--bank-parts``): the compact records committed for it, which
    # the re-run must reproduce (:func:`check_reproduced`) before its part is banked
    committed: tuple[dict[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.job.name} [{self.row}]"


def _env_folder(env_id: str) -> str:
    return env_id.replace("/", "_")


def run_key(job: Job) -> str:
    """12 hex digits of the run identity without the seed: the run's folder in the shared pool.

    Two studies (or two rows) that define the same run (method, env, config, budget, convention, evaluation
    samples, device type) share it, e.g. ``m-sweep``'s ``m=4`` is ``paper-qm9``'s ``iterative_rs/per_expert``.
    """
    fields = dict(job_identity(job)["fields"])
    fields.pop("seed", None)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def pool_of(out: Path) -> Path:
    """The folder holding the shared ``runs/`` and ``evaluations/``: the parent of a study's output folder."""
    return Path(out).resolve().parent


def study_jobs(
    study: Study, out: Path, threads: int = 1, device: str = "cpu", ledger: str | Path | None = None
) -> list[StudyJob]:
    """The study's jobs, seed-major (every row of the first seed, then the next seed).

    Runs live in the pool next to ``out`` (:func:`pool_of`): ``runs/<env>/<method>/<run key>/seed_<s>``,
    ``evaluations/t<T>/...`` and their scored compact records ``compact/...``, so studies share the runs they have
    in common. With a ``ledger``, the runs of a ``paper-*`` study (not the smoke scale) also get a leaderboard part,
    ``parts/<env>/<method>/<run key>/seed_<s>.json.gz``, verified into that ledger when the run finishes.
    """
    pool = pool_of(out)
    parts = ledger is not None and study.scale != "smoke" and _names()[study.name][0] == "paper"
    jobs = []
    seeds = sorted({seed for row in study.rows for seed in row.seeds})
    for seed in seeds:
        for row in study.rows:
            if seed not in row.seeds:
                continue
            job = Job(
                row.env_id,
                row.method,
                int(seed),
                "",
                dict(row.overrides),
                row.sampled_tokens,
                row.eval_samples,
                {},
                threads,
                row.convention,
                device,
            )
            relative = Path(_env_folder(row.env_id)) / row.method / run_key(job) / f"seed_{seed}"
            job = dataclasses.replace(job, out=str(pool / "runs" / relative))
            evaluations = tuple(
                str(pool / "evaluations" / temperature_key(t) / relative) for t in row.eval_temperatures
            )
            compact = str(pool / "compact" / relative)
            # the prior's samples do not depend on the scale: the board's prior entry is its entry (no part)
            banked = parts and row.method != "prior"
            part = str(pool / "parts" / relative.parent / f"seed_{seed}.json.gz") if banked else ""
            jobs.append(
                StudyJob(job, row.label, tuple(row.eval_temperatures), evaluations, compact, part, str(ledger or ""))
            )
    labels = [row.label for row in study.rows]
    if len(set(labels)) != len(labels) or len({row.folder for row in study.rows}) != len(labels):
        raise ConfigError(f"study {study.name!r} has rows with the same label or folder: {labels}")
    return jobs


def run_study_job(job: StudyJob) -> dict[str, Any]:
    """Train and evaluate the run (:func:`~morbench.benchmark.run_job`), then its extra evaluations; never raises.

    A re-run that must reproduce committed records fails at once, before hours of training, where this machine
    cannot (:func:`cannot_reproduce_here`)."""
    fresh = not (Path(job.job.out) / RUN_FILE).exists()
    if job.committed and fresh and (reason := cannot_reproduce_here(job)) is not None:
        error = f"reproducing its committed records: {reason}"
        return {"job": job.job.name, "status": "failed", "error": error, "seconds": 0.0}
    outcome = run_job(job.job)
    if outcome["status"] == "failed":
        return outcome
    start = time.perf_counter()
    step = "evaluation at another temperature"
    try:
        made = [
            evaluate_at_temperature(job.job, temperature, Path(folder))
            for temperature, folder in zip(job.eval_temperatures, job.evaluations, strict=True)
        ]
        step = "scoring"
        records, _ = compact_records(job)  # scored here, in parallel, and cached for collect_study
        if job.committed:
            step = "reproducing its committed records"
            check_reproduced(records, job.committed)
        step = "verifying its leaderboard part"
        bank_study_part(job)
    except Exception as exc:
        return {
            **outcome,
            "status": "failed",
            "error": f"{step}: " + (str(exc) if isinstance(exc, MorbenchError) else f"{type(exc).__name__}: {exc}"),
            "traceback": traceback.format_exc(),
        }
    if any(made) and outcome["status"].startswith("skipped"):
        outcome = {**outcome, "status": "ok"}
    return {**outcome, "seconds": outcome["seconds"] + time.perf_counter() - start}


UNTIMED = ("wall_seconds", "evaluation_seconds")


def reproducible(record: dict[str, Any]) -> dict[str, Any]:
    """What a re-run of a run must reproduce of its compact record: all but the seconds it took and the machine
    and commit it names (``hardware``)."""
    kept = {key: value for key, value in record.items() if key not in ("hardware", "row", "seed")}
    kept["compute"] = {key: value for key, value in (record.get("compute") or {}).items() if key not in UNTIMED}
    return kept


def _difference(here: Any, there: Any, path: str = "") -> str | None:
    """The first place where two JSON values differ, as ``path: here vs there``, or None."""
    if isinstance(here, dict) and isinstance(there, dict):
        for key in sorted(set(here) | set(there)):
            if key not in here or key not in there:
                shown = ["absent" if key not in side else repr(side[key]) for side in (here, there)]
                return f"{path}{key}: {shown[0]} vs {shown[1]}"
            if (found := _difference(here[key], there[key], f"{path}{key}.")) is not None:
                return found
        return None
    if isinstance(here, list) and isinstance(there, list) and len(here) == len(there):
        for i, (a, b) in enumerate(zip(here, there, strict=True)):
            if (found := _difference(a, b, f"{path}{i}.")) is not None:
                return found
        return None
    return None if here == there else f"{path.rstrip('.') or 'value'}: {here!r} vs {there!r}"


def check_reproduced(records: Sequence[dict[str, Any]], committed: Sequence[dict[str, Any]]) -> None:
    """Raise :class:`~morbench.errors.ConfigError` naming the first difference unless the re-run's ``records`` equal
    the ``committed`` ones (:func:`reproducible`: seconds and machine aside), decoding by decoding. A metric that
    records gained after the committed one was written (absent from it) has nothing to be compared with."""
    made = {record["decoding"]: record for record in records}
    for old in committed:
        new = made.get(old["decoding"])
        if new is None:
            raise ConfigError(f"the re-run has no {old['decoding']} record to compare with the committed one")
        known = old.get("metrics") or {}
        new = {**new, "metrics": {key: value for key, value in (new.get("metrics") or {}).items() if key in known}}
        if (found := _difference(reproducible(new), reproducible(old))) is not None:
            raise ConfigError(
                f"the re-run does not reproduce the record committed for it ({old['decoding']} decoding, "
                f"re-run vs committed: {found}); the committed record stays and no part is banked. Code that "
                "changed the run's numbers since it was committed, or a machine that computes differently, makes "
                f"this{_machines(new.get('hardware'), old.get('hardware'))}; re-run the study in a new folder to "
                "measure it anew"
            )


def cannot_reproduce_here(job: StudyJob) -> str | None:
    """Why this machine cannot re-make a run that must reproduce its committed records (None: it may).

    A CPU run is bit-exact on one CPU model only: a record that names another CPU than this one, or several, and a
    checkpoint made on another CPU (its resume would continue the run there) cannot be reproduced here. A record
    made before records named their CPU says nothing, and the re-run goes ahead.
    """
    from morbench.baselines.checkpoint import load_checkpoint
    from morbench.errors import CheckpointError
    from morbench.runs import cpu_kernels, cpu_name, cpus_named

    here = cpu_kernels()
    said = cpu_name(here)
    for record in job.committed:
        made = cpus_named(record.get("hardware") or {})
        if len(made) > 1:
            return f"its committed run was resumed across CPUs ({' then '.join(made)}): no re-run can reproduce it"
        if made and made != [said]:
            return (
                f"its committed run was made on {made[0]}, this machine is {said}: a CPU run is bit-exact on one CPU "
                "model only; re-run it on that CPU"
            )
    try:
        saved = load_checkpoint(Path(job.job.out) / "checkpoint")
    except CheckpointError:
        return None  # the resume reports the damage
    trained_on = (saved or {}).get("trained_on") or []
    if trained_on and trained_on[-1] != here:
        return (
            f"its checkpoint in {job.job.out} was made on {cpu_name(trained_on[-1])}, this machine is {said}: resumed "
            "here it would not "
            "reproduce its record; resume it on that CPU, or delete the checkpoint to start the run over here"
        )
    return None


def _machines(rerun: Any, committed: Any) -> str:
    """What :func:`check_reproduced`'s error says of the CPUs of a re-run and of the committed record it missed."""
    from morbench.runs import cpus_named

    here, there = (cpus_named(side if isinstance(side, dict) else {}) for side in (rerun, committed))
    notes = []
    if len(here) > 1:
        notes.append(f"the re-run was resumed across CPUs ({' then '.join(here)})")
    if not there:
        notes.append("the committed record does not name its CPU model (recorded since 2026-12-05)")
    elif here and here[-1:] != there[-1:]:
        notes.append(f"the committed run was made on {' then '.join(there)}, the re-run on {' then '.join(here)}")
    if not notes:
        return ""
    return " (" + "; ".join(notes) + ": a CPU run is bit-exact on one CPU model, not across models)"


def bank_study_part(job: StudyJob) -> bool:
    """Make and verify the finished run's leaderboard part (:func:`morbench.leaderboard.parts.bank_part`) if the job
    has one and it is not verified yet; whether one was made."""
    if not job.part:
        return False
    from morbench.leaderboard.parts import bank_part

    seed = job.job.seed
    description = f"morbench study row {job.row}, seed {seed}: one seed of a paper-scale entry (a part)"
    return bank_part(job.job.out, job.part, f"{job.row} seed {seed}", description, job.ledger) is not None


def submit_study(
    name: str, out: str | Path | None = None, board: str | Path | None = None, force: bool = False
) -> list[dict[str, Any]]:
    """Merge each row's verified parts into a leaderboard entry and verify it from the ledger (``how="parts"``).

    Rows with a verified part for every seed are written to ``<board>/submissions/<env>/`` as
    ``<method> <study> <convention>``; an entry of that name that is byte for byte the merge stays, another one is
    replaced only with ``force``. The prior's rows are skipped
    (its samples do not depend on the scale: the board's untuned-prior entry is the same policy). Returns one
    ``{"row", "status", ...}`` per row.
    """
    from morbench.leaderboard.parts import merge_parts, part_is_verified
    from morbench.leaderboard.schema import dumps_submission, env_stem, submission_slug
    from morbench.leaderboard.submit import _check_target, find_board
    from morbench.leaderboard.verify import LEDGER_FILE, verify_file

    study = get_study(name)
    board = Path(board) if board is not None else find_board()
    ledger = board / LEDGER_FILE
    out = Path(out if out is not None else default_out(name))
    jobs = study_jobs(study, out, ledger=ledger)
    if not any(job.part for job in jobs):
        raise ConfigError(f"study {name!r} makes no leaderboard parts (only the paper-scale studies do)")
    outcomes: list[dict[str, Any]] = []
    for row in study.rows:
        parts = [job.part for job in jobs if job.row == row.label]
        if row.method == "prior":
            outcomes.append({"row": row.label, "status": "skipped (the untuned prior: the board's prior entry)"})
            continue
        missing = [part for part in parts if not part_is_verified(part, ledger)]
        if missing:
            outcomes.append({"row": row.label, "status": f"skipped ({len(missing)} of {len(parts)} seeds lack a part)"})
            continue
        method, convention = row.method, row.convention
        entry = f"{method} {name} {convention}"
        description = (
            f"morbench study {name}, row {row.label}: {study.description.rstrip('.')}. Budget "
            f"{row.sampled_tokens:,} sampled tokens ({convention} convention), {row.eval_samples:,} samples per "
            f"preference, seeds {', '.join(map(str, row.seeds))}; merged from one-seed parts verified when their "
            "runs finished"
        )
        folder = board / "submissions" / env_stem(row.env_id)
        target = folder / f"{submission_slug(entry)}.json.gz"
        merged = dumps_submission(merge_parts(parts, entry, description))
        if not (target.is_file() and not target.is_symlink() and target.read_bytes() == merged):
            # an entry already submitted byte for byte stays (submitting again as parts arrive adds the new rows)
            replaced = _check_target(folder, target, entry, row.env_id, force)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, merged)
            for old in replaced:
                if old != target:
                    old.unlink()
        verified = verify_file(target, ledger=ledger)
        outcomes.append(
            {
                "row": row.label,
                "status": verified.verdict,
                "how": verified.how,
                "file": str(target),
                "sha256": verified.sha256,
            }
        )
    return outcomes


def default_ledger() -> Path | None:
    """The leaderboard's ledger (``leaderboard/verified.json`` found from the current directory), or None."""
    from morbench.leaderboard.submit import find_board
    from morbench.leaderboard.verify import LEDGER_FILE

    try:
        return find_board() / LEDGER_FILE
    except MorbenchError:
        return None


def _rebuilt_policy(job: Job, record: dict[str, Any], task: Any, prior: Any, scratch: Path) -> Any:
    """The policy the finished run served, rebuilt from its saved models (best-of-N: its selection rule)."""
    from morbench.evaluation import LMPolicy
    from morbench.leaderboard.verify import baseline_policy

    run_dir = Path(job.out)
    if job.method == "prior":
        return LMPolicy(prior, task)
    if job.method == "best_of_n":
        # nothing was trained: best-of-N draws its candidates at evaluation time, charging a fresh context of the
        # run's budget (its pilot batch picks the same n)
        from morbench.baselines import build_config
        from morbench.baselines.reference import train_best_of_n
        from morbench.baselines.training import Budget, RunContext

        context = RunContext(
            "best_of_n",
            job.env_id,
            scratch,
            seed=job.seed,
            budget=Budget(sampled_tokens=job.sampled_tokens, convention=job.convention),
            env_kwargs=job.env_kwargs,
            eval_samples=job.eval_samples,
            progress=False,
            config=build_config("best_of_n", job.overrides),
        )
        policy, _ = train_best_of_n(context, build_config("best_of_n", job.overrides))
        return policy
    files = {p.relative_to(run_dir).as_posix(): "" for p in run_dir.rglob("*") if p.is_file()}
    return baseline_policy(job.method, record.get("outputs") or {}, run_dir, files, task, prior)


def evaluate_at_temperature(job: Job, temperature: float, folder: Path) -> bool:
    """Write ``folder/evaluation.json.gz``: the finished run's policy evaluated at ``temperature``.

    Skipped (returns False) when the folder already holds this run's evaluation at that temperature. The record
    names the run it re-evaluates (``source_run``: its identity hash) and carries ``decoding_override``.
    """
    import torch

    from morbench.evaluation import evaluate_on_env, make_evaluation_task
    from morbench.models import load_prior
    from morbench.registry import make
    from morbench.runs import write_evaluation

    torch.set_num_threads(job.threads)
    record = read_run(job.out)
    identity = record.get("identity") or {}
    path = folder / "evaluation.json.gz"
    if path.is_file():
        try:
            existing = json.loads(gzip.decompress(path.read_bytes()))
        except (OSError, EOFError, ValueError):
            existing = None
        if isinstance(existing, dict) and (existing.get("source_run") or {}).get("identity") == identity.get("hash"):
            return False
    task = cast("TokenEnv", make(job.env_id, **job.env_kwargs).unwrapped)
    eval_task = make_evaluation_task(job.env_id, job.env_kwargs, training_task=task)
    prior = load_prior(task, seed=job.seed).eval()
    for parameter in prior.parameters():
        parameter.requires_grad_(False)
    with tempfile.TemporaryDirectory(prefix="morbench-study-") as scratch:  # best-of-N's budget context
        policy = _rebuilt_policy(job, record, task, prior, Path(scratch))
        torch.manual_seed(job.seed)
        evaluation = evaluate_on_env(
            policy,
            eval_task,
            job.seed,
            samples_per_preference=job.eval_samples,
            prior=prior,
            progress=False,
            temperature=temperature,
        )
    evaluation["method"] = job.method
    evaluation["source_run"] = {"identity": identity.get("hash"), "run_dir": job.out}
    folder.mkdir(parents=True, exist_ok=True)
    write_evaluation(folder, evaluation)
    return True


# -- running ---------------------------------------------------------------------------------------------------
def run_study(
    name: str,
    out: str | Path | None = None,
    smoke: bool = False,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    max_hours: float | None = None,
    progress: bool = True,
    threads: int | None = None,
    device: str = "cpu",
    ledger: str | Path | None = None,
    bank_parts: bool = False,
) -> dict[str, Any]:
    """Run (or continue) study ``name``, then write ``out/study.json``; returns ``{"outcomes", "study"}``.

    ``ledger``: where the leaderboard parts of a paper study are verified (default: the leaderboard's
    ``verified.json`` found from the current directory; none found: no parts).

    ``bank_parts``: also re-run the runs that finished in another checkout (their weights are gone) and have no
    verified leaderboard part; each re-run must reproduce the records committed for it (:func:`check_reproduced`)
    before its part is banked, and the committed records stay in study.json.

    ``max_hours``: no run starts after that many hours, nor one whose estimate (:func:`row_estimates`; a run
    resumed from a checkpoint is charged what its checkpoint has not yet spent: :func:`seconds_left`) says it would
    end after them: the next run that fits starts instead, and the rest are left for the next call. Within a seed
    the runs go longest first. The compact results cover every run finished so far.
    """
    from morbench.runs import resolve_device

    study = get_study(name, smoke=smoke)
    out = Path(out if out is not None else default_out(name, smoke))
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers={workers!r} must be a positive integer")
    if max_hours is not None and not max_hours > 0:
        raise ConfigError(f"max_hours={max_hours!r} must be > 0 (or None: no limit)")
    # one torch thread per run, whatever the cores and workers: the thread count changes the last bits of CPU
    # gradients, and a study's runs must reproduce across chunks and machines (--bank-parts re-runs are checked
    # exactly against the committed records); more cores run more runs at once (--workers, --executor ray)
    threads = threads or 1
    if executor != "ray":  # Ray: one run per worker CPU; --workers (default: the cluster's CPUs) caps runs in flight
        workers = workers or max(1, min(2, os.cpu_count() or 1))
    device = str(resolve_device(device))
    jobs = study_jobs(study, out, threads=threads, device=device, ledger=default_ledger() if ledger is None else ledger)
    if bank_parts and not any(job.part for job in jobs):
        raise ConfigError(f"study {name!r} makes no leaderboard parts (only the paper-scale studies do, with a ledger)")
    check_existing_runs([j.job for j in jobs])
    committed = committed_records(out)
    unique, seen, kept = [], set(), []
    for job in jobs:  # rows that define the same run run it once
        if job.job.out in seen:
            continue
        seen.add(job.job.out)
        earlier = None if (Path(job.job.out) / RUN_FILE).is_file() else _committed_for(job, committed)
        if earlier is None:
            unique.append(job)
        elif bank_parts and job.part and not _part_is_verified(job):
            unique.append(dataclasses.replace(job, committed=tuple(earlier)))  # re-run it for its part
        else:
            # finished in an earlier chunk (another checkout): its compact records are committed, its weights are not
            kept.append({"job": job.name, "status": "kept (compact records in a committed study.json)", "seconds": 0.0})
    estimates = row_estimates(study)
    expected = None
    if estimates is not None:  # longest first within a seed, so that a chunk starts its long runs while it has time
        unique.sort(key=lambda job: (job.job.seed, -estimates[job.row]))
        left = {job.job.out: seconds_left(Path(job.job.out), estimates[job.row]) for job in unique}
        expected = lambda job: left[job.job.out]  # noqa: E731
    deadline = None if max_hours is None else time.monotonic() + max_hours * 3600
    start = time.perf_counter()
    with RunLock(out, what="study"):
        outcomes = kept + run_jobs(
            unique, executor, workers, ray_address, progress, fn=run_study_job, deadline=deadline, expected=expected
        )
        log = {
            "study": name,
            "smoke": smoke,
            "executor": executor,
            "workers": workers,
            "jobs": outcomes,
            "wall_seconds": time.perf_counter() - start,
        }
        atomic_write_bytes(out / "study-log.json", json.dumps(log, indent=1).encode())
        compact = collect_study(name, out, smoke=smoke)
    return {"outcomes": outcomes, "study": compact}


# -- compact results -------------------------------------------------------------------------------------------
METRICS = (
    "average_reward",
    "icv",
    "icv_samples",
    "cv_samples",
    "hypervolume",
    "expected_utility",
    "served_utility",
    "kl_to_prior",
    "validity",
    "uniqueness",
    "judge_average_reward",
    "judge_gap",
)
COMPUTE = ("sampled_tokens", "ppo_iterations", "gradient_steps", "oracle_calls", "wall_seconds", "evaluation_seconds")
CURVE_POINTS = 50  # learning-curve points kept per trained policy


def _round(value: Any, digits: int = 6) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return round(value, digits) if not float(value).is_integer() else (int(value) if abs(value) < 2**53 else value)
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    return value


def _metrics(result: dict[str, Any]) -> dict[str, Any]:
    out = {key: result.get(key) for key in METRICS if key in result}
    out["per_objective_mean"] = result["per_objective_mean"]
    return _round(out)


def _per_preference(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _round({"weights": row["weights"], "mean": row["mean"], "validity": row["validity"]})
        for row in result["per_preference"]
    ]


def _curve(run_dir: Path) -> dict[str, list[list[Any]]]:
    """Per trained policy: ``[its iteration (1, 2, ...), score_mean, kl_to_prior]``, thinned to at most
    :data:`CURVE_POINTS` (the first and last kept)."""
    from morbench.plots import POLICY_TAGS
    from morbench.runs import CURVE_FILE

    path = run_dir / CURVE_FILE
    if not path.is_file():
        return {}
    lines: dict[str, list[list[Any]]] = {}
    for text in path.read_text().splitlines():
        entry = json.loads(text)
        name = next((str(entry[t]) for t in POLICY_TAGS if t in entry), "policy")
        points = lines.setdefault(name, [])
        points.append([len(points) + 1, entry.get("score_mean"), entry.get("kl_to_prior")])
    thinned = {}
    for name, points in lines.items():
        step = max(1, -(-len(points) // CURVE_POINTS))
        kept = points[::step]
        if kept[-1] is not points[-1]:
            kept.append(points[-1])
        thinned[name] = _round(kept)
    return thinned


HARDWARE = (
    "processor", "cpu", "cpu_capability", "cpu_count", "torch_threads", "device", "accelerator", "torch", "morbench"
)  # fmt: skip


def run_hardware(recorded: dict[str, Any]) -> dict[str, Any]:
    """What a compact record keeps of the machine that made a run (its run file's ``hardware``; ``trained_on`` too
    where the run was resumed on another CPU) and the commit."""
    hardware = recorded.get("hardware")
    if not isinstance(hardware, dict):
        hardware = {}
    kept = {key: hardware.get(key) for key in HARDWARE}
    if hardware.get("trained_on"):
        kept["trained_on"] = hardware["trained_on"]
    return {**kept, "commit": recorded.get("commit")}


def compact_records(job: StudyJob) -> tuple[list[dict[str, Any]], int]:
    """The run's compact records (protocol decoding first, then each extra evaluation) and how many are missing.

    Every evaluation is re-scored with its task (``morbench.verification``) before its metrics are computed; the
    records are cached in ``job.compact`` under the sha256 of the evaluation file and of the code that scores it
    (the leaderboard cache's :func:`~morbench.leaderboard.cache.code_fingerprint`), so each is scored once.
    """
    from morbench.leaderboard.cache import code_fingerprint
    from morbench.runs import EVALUATION_FILE, read_evaluation
    from morbench.scoring import score_evaluation
    from morbench.verification import verify_evaluation

    run_dir = Path(job.job.out)
    if not (run_dir / RUN_FILE).is_file():
        return [], 1 + len(job.eval_temperatures)
    recorded = read_run(run_dir)
    if recorded.get("identity") != job_identity(job.job):
        raise ConfigError(f"{run_dir} holds a run of other settings than the study defines; delete it")
    identity = (recorded.get("identity") or {}).get("hash")
    compute = {key: recorded.get("compute", {}).get(key) for key in COMPUTE}
    hardware = run_hardware(recorded)
    outputs = recorded.get("outputs") or {}
    for key in ("iterations_per_expert", "iterations_per_preference", "iterations_per_policy", "n"):
        if key in outputs:
            compute[key] = outputs[key]
    sources = [("protocol", run_dir / EVALUATION_FILE)] + [
        (temperature_key(t), Path(folder) / EVALUATION_FILE)
        for t, folder in zip(job.eval_temperatures, job.evaluations, strict=True)
    ]
    records, missing = [], 0
    scorer = code_fingerprint()
    for decoding, path in sources:
        if not path.is_file():
            missing += 1
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        cache = Path(job.compact) / f"{decoding}.json"
        if cache.is_file():
            try:
                cached = json.loads(cache.read_text())
            except (OSError, ValueError):
                cached = {}
            if (cached.get("evaluation_sha256"), cached.get("identity"), cached.get("scorer")) == (
                digest,
                identity,
                scorer,
            ):
                records.append({**cached["record"], "identity": identity, "hardware": hardware})
                continue
        if decoding == "protocol":
            evaluation = read_evaluation(run_dir)  # checked against the task and re-scored
            extra: dict[str, Any] = {"curve": _curve(run_dir)}
            seconds = compute.get("evaluation_seconds")
        else:
            raw = json.loads(gzip.decompress(data))
            if (raw.get("source_run") or {}).get("identity") != identity:
                raise ConfigError(f"{path} re-evaluates another run than {run_dir}; delete it")
            evaluation = verify_evaluation(raw, source=str(path))
            extra, seconds = {}, raw["evaluation_compute"]["wall_seconds"]
        scored = score_evaluation(evaluation, source=str(path), domain=False)
        record = {
            "decoding": decoding,
            "identity": identity,  # the run's identity hash: a later checkout keeps the record by it
            "temperature": float(evaluation["protocol"]["temperature"]),
            "metrics": _metrics(scored),
            "per_preference": _per_preference(scored),
            "compute": _round({**compute, "evaluation_seconds": seconds}),
            "hardware": hardware,
            **extra,
        }
        cache.parent.mkdir(parents=True, exist_ok=True)
        cached = {"evaluation_sha256": digest, "identity": identity, "scorer": scorer, "record": record}
        text = json.dumps(cached, sort_keys=True)
        atomic_write_bytes(cache, text.encode())
        records.append(record)
    return records, missing


def committed_records(out: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The compact records in every ``study.json`` of the pool next to ``out``: ``{identity hash: {decoding:
    record}}`` (without their row and seed; records written before records carried their identity are skipped).

    A checkout holds the committed study.json files but none of the runs (their weights are never committed):
    these records are how a later chunk, in a fresh clone, knows which runs are finished, and how the study.json
    it writes keeps them. A study.json of another format is refused (:func:`read_study`), never overwritten.
    """
    index: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(pool_of(Path(out)).glob("*/study.json")):
        for record in read_study(path)["records"]:
            identity = record.get("identity") if isinstance(record, dict) else None
            if isinstance(identity, str) and isinstance(record.get("decoding"), str):
                kept = {k: v for k, v in record.items() if k not in ("row", "seed")}
                index.setdefault(identity, {}).setdefault(record["decoding"], kept)
    return index


def _part_is_verified(job: StudyJob) -> bool:
    from morbench.leaderboard.parts import part_is_verified

    return part_is_verified(job.part, job.ledger)


def _committed_for(job: StudyJob, committed: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]] | None:
    """The committed records of the run (protocol decoding, then each extra temperature), or None (a decoding's
    record is missing)."""
    found = committed.get(job_identity(job.job)["hash"], {})
    decodings = ["protocol"] + [temperature_key(t) for t in job.eval_temperatures]
    if not all(d in found for d in decodings):
        return None
    return [found[d] for d in decodings]


def collect_study(name: str, out: str | Path, smoke: bool = False) -> dict[str, Any]:
    """Gather the compact records of every finished run (and extra evaluation) of the study; write
    ``out/study.json``.

    The file holds no samples and no weights: per (row, seed, decoding) the scalar metrics, the per-preference
    mean rewards, the compute the run used and (protocol decoding) its thinned learning curves. A run that is not
    here but whose records a committed study.json holds (:func:`committed_records`: a chunk run in another
    checkout) keeps those records, so collecting never loses a finished part. Committed records are final: they
    are kept even when the run is here (a re-run for its part reproduced them, seconds aside; to re-score a run,
    remove its records from study.json first).
    """
    study = get_study(name, smoke=smoke)
    out = Path(out)
    rows = {row.label: row for row in study.rows}
    records = []
    missing = 0
    jobs = study_jobs(study, out)
    pool = pool_of(out)
    committed = committed_records(out)
    folders = {job.row: Path(job.job.out).parent.relative_to(pool).as_posix() for job in jobs}
    for job in jobs:
        earlier = _committed_for(job, committed)
        found, absent = (earlier, 0) if earlier is not None else compact_records(job)
        missing += absent
        records += [{"row": job.row, "seed": job.job.seed, **record} for record in found]
    payload = {
        "format": STUDY_FORMAT,
        "study": name,
        "scale": study.scale,
        "env_id": study.env_id,
        "description": study.description,
        "definition": study.definition_hash(),
        "decodings": list(study.decodings),
        # each row's run folder under results/studies/ (`morbench submit` takes it: the protocol evaluations)
        "rows": [{**rows[label].to_dict(), "runs": folders[label]} for label in rows],
        "complete": missing == 0,
        "missing": missing,
        "records": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "study.json", (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode())
    return payload


def read_study(path: str | Path) -> dict[str, Any]:
    """A study.json, checked for its format."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable study.json ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != STUDY_FORMAT:
        raise ConfigError(
            f"{path}: format {payload.get('format') if isinstance(payload, dict) else None!r} is not "
            f"{STUDY_FORMAT}; regenerate it with `morbench study <name> --report`"
        )
    return payload


def study_names(names: Sequence[str] | None = None) -> list[str]:
    """``names`` checked against :data:`STUDIES` (default: all)."""
    chosen = list(names or STUDIES)
    unknown = [n for n in chosen if n not in STUDIES]
    if unknown:
        raise ConfigError(f"unknown studies {unknown}; choose from {list(STUDIES)}")
    return chosen
