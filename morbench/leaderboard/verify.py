"""``morbench leaderboard verify``: re-produce a submission's samples, and record the outcome in the ledger.

A ranked entry must come from a policy the leaderboard samples itself. ``verify`` validates the file (schema,
protocol, re-scoring), then re-produces every seed's samples from what the file's ``provenance`` names:

* ``baseline``, ``how="retrain"``: re-runs :func:`morbench.baselines.run_method` with the recorded method,
  config, budget, env kwargs and sample count for each seed, in a temporary folder (CPU runs are bit-exact);
* ``baseline``, ``how="artifacts"``: loads the run's saved models from ``--artifacts DIR`` (a benchmark output
  or run folder), after checking every file against the sha256 the submission records, rebuilds the method's
  serving rule from the run's ``outputs`` record, and re-samples with the protocol's seeds;
* ``baseline`` prior and best-of-N, ``how="resample"``: nothing was trained (the shipped prior; best-of-N selects
  among prior samples with the training oracle at evaluation time), so re-sampling is re-running the method,
  which costs about one evaluation;
* ``policy``, ``how="artifacts"``: loads the declared safetensors model folders (sha256-checked), builds the
  serving rule of :mod:`morbench.serving` and re-samples.

* ``parts``: every seed's entry (in its context: env, method, config, protocol, budget, that seed's artifacts) is
  one a passing record of the same ledger vouches for, seed by seed (its ``seed_digests``): a submission
  assembled from verified one-seed files (a study's runs, verified in the session that made them, whose weights are
  not kept) needs no second re-production.

The re-sampled sequences must equal the submitted ones exactly (per seed, preference and index). KL to the prior
is recomputed from the verifier's own log-probabilities, and sampling wall time (re-training: oracle calls,
sampled tokens and wall time too) is measured. The outcome goes to the ledger ``leaderboard/verified.json``,
keyed by the sha256 of the submission file's bytes: ``morbench leaderboard build`` ranks an entry only if its
*current* bytes have a passing record, so editing a verified file (or copying a record to another file) unranks
it. Only this module writes the ledger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from morbench.errors import MorbenchError, SubmissionError, VerificationError
from morbench.leaderboard.schema import content_sha256, parse_submission
from morbench.leaderboard.validate import TRUSTED_CLAIM_ERROR, TaskCache, ValidatedSubmission, validate_submission
from morbench.runs import RUN_FILE, atomic_write_bytes, find_runs, git_commit, hardware_info

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from morbench.core import TokenEnv

__all__ = [
    "LEDGER_FILE",
    "LEDGER_FORMAT",
    "VerifyOutcome",
    "compare_samples",
    "default_ledger",
    "passing_record",
    "read_ledger",
    "seed_digest",
    "trusted_digests",
    "verify_file",
    "verify_submission",
]

LEDGER_FILE = "verified.json"
LEDGER_FORMAT = "morbench-verified/1"
UNTRAINED_METHODS = ("prior", "best_of_n")  # nothing trained: re-sampling them is re-running them (cheap)
MAX_MISMATCHES_SHOWN = 10


@dataclasses.dataclass
class VerifyOutcome:
    """The verdict on one submission file (recorded in the ledger under the sha256 of its bytes)."""

    source: str
    sha256: str
    verdict: str  # "verified" or "failed"
    how: str | None
    seconds: float
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Whether the file was verified."""
        return self.verdict == "verified"


# -- the ledger -----------------------------------------------------------------------------------------------
def default_ledger(path: str | Path) -> Path:
    """The ledger of a submission file: ``<board>/verified.json`` for ``<board>/submissions/<env>/<file>``."""
    path = Path(path).resolve()
    for parent in path.parents:
        if parent.name == "submissions":
            return parent.parent / LEDGER_FILE
    from morbench.leaderboard.build import default_root

    return default_root() / LEDGER_FILE


def read_ledger(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ledger's records by submission sha256 (empty when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SubmissionError(f"{path}: unreadable verification ledger ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != LEDGER_FORMAT or not isinstance(data.get("entries"), dict):
        raise SubmissionError(f"{path}: not a {LEDGER_FORMAT} ledger (written only by `morbench leaderboard verify`)")
    return data["entries"]


@contextlib.contextmanager
def _ledger_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<ledger>.lock`` around a read-modify-write of the ledger (waits its turn)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def record_in_ledger(path: Path, sha: str, record: dict[str, Any]) -> None:
    """Add (or replace) the record of the file whose bytes hash to ``sha``; concurrent verifiers wait their turn."""
    with _ledger_lock(path):
        entries = read_ledger(path)
        entries[sha] = record
        _write_ledger(path, entries)


def _write_ledger(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    text = json.dumps({"format": LEDGER_FORMAT, "entries": entries}, indent=1, sort_keys=True, ensure_ascii=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def passing_record(entries: dict[str, dict[str, Any]], sha256: str | None) -> dict[str, Any] | None:
    """The ledger record of exactly these bytes, if it says verified."""
    record = entries.get(sha256) if sha256 else None
    return record if isinstance(record, dict) and record.get("verdict") == "verified" else None


def trusted_digests(entries: dict[str, dict[str, Any]]) -> set[str]:
    """Bytes whose claimed rewards the builder may take instead of re-scoring.

    Those verified, with every claimed reward and judge reward within ``TRUSTED_CLAIM_ERROR`` of the verifier's
    re-scoring (records written before this was measured, or with a larger error, are re-scored).
    """
    trusted = set()
    for sha, record in entries.items():
        error = record.get("claims_max_error") if passing_record(entries, sha) else None
        if isinstance(error, (int, float)) and not isinstance(error, bool) and 0 <= error <= TRUSTED_CLAIM_ERROR:
            trusted.add(sha)
    return trusted


SEED_CONTEXT_FIELDS = ("schema_version", "env", "method", "objective_names", "config", "protocol")


def entry_context(submission: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every seed entry of a submission claims to be.

    Its top-level fields of :data:`SEED_CONTEXT_FIELDS`, and its provenance without the per-seed ``artifacts``.
    """
    provenance = {k: v for k, v in (submission.get("provenance") or {}).items() if k != "artifacts"}
    return {k: submission.get(k) for k in SEED_CONTEXT_FIELDS}, provenance


def seed_digest(submission: dict[str, Any], seed: int) -> str:
    """sha256 of one seed's entry in its context: what a passing record vouches for, seed by seed.

    The context is everything that says what the samples are: the env, method, objective names, config, protocol
    and provenance (budget, env kwargs, sample count), with the artifacts of this seed only, so an entry keeps its
    digest when it moves to a file with other seeds, and loses it with any change to it or to what it claims to be.
    """
    context, provenance = entry_context(submission)
    artifacts = (submission.get("provenance") or {}).get("artifacts") or []
    artifacts = [a for a in artifacts if isinstance(a, dict) and a.get("seed") == seed]
    entries = [e for e in submission["seeds"] if e.get("seed") == seed]
    payload = {"context": context, "provenance": provenance, "artifacts": artifacts, "entries": entries}
    return content_sha256(json.dumps(payload, sort_keys=True, ensure_ascii=True, allow_nan=True).encode())


def _vouched_seeds(validated: ValidatedSubmission, entries: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Per seed, what the passing record that vouches for this very entry measured; None unless every seed has one.

    A digest covers its seed number, so a record can only vouch for the same seed.
    """
    vouching: dict[str, tuple[str, dict[str, Any]]] = {}
    for sha, record in entries.items():
        # every passing record vouches: one made from parts was written only while a re-producing record of the
        # same entries existed, so re-verifying a file (which replaces its record) never breaks the chain
        if passing_record(entries, sha) is None:
            continue
        for seed, digest in (record.get("seed_digests") or {}).items():
            vouching.setdefault(digest, (sha, (record.get("seeds") or {}).get(seed) or {}))
    seeds: dict[str, Any] = {}
    for seed in validated.seeds:
        found = vouching.get(seed_digest(validated.submission, seed))
        if found is None:
            return None
        sha, info = found
        source = entries[sha]
        seeds[str(seed)] = {
            **info,
            "part": {"sha256": sha, "file": source.get("file"), "how": source.get("how"), "date": source.get("date")},
        }
    return seeds


# -- comparing samples ----------------------------------------------------------------------------------------
def compare_samples(submitted: dict[str, Any], resampled: dict[str, Any], seed: int) -> list[str]:
    """Every (preference, index) where the submitted sequence (or context) is not the re-sampled one."""
    problems: list[str] = []
    subs, news = submitted["preferences"], resampled["preferences"]
    if len(subs) != len(news):
        return [f"seed {seed}: {len(subs)} preferences submitted, {len(news)} re-sampled"]
    for sub, new in zip(subs, news, strict=True):
        if not np.allclose(sub["weights"], new["weights"], atol=1e-9):
            problems.append(f"seed {seed}: preference {sub['weights']} vs re-sampled {new['weights']}")
            continue
        a, b = sub["sequences"], new["sequences"]
        if len(a) != len(b):
            problems.append(f"seed {seed}, preference {sub['weights']}: {len(a)} samples vs {len(b)} re-sampled")
            continue
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                problems.append(
                    f"seed {seed}, preference {sub['weights']}, index {i}: submitted {x!r}, re-sampled {y!r}"
                )
        if (sub.get("contexts") or None) != (new.get("contexts") or None):
            problems.append(f"seed {seed}, preference {sub['weights']}: context keys differ from the protocol's")
    return problems


# -- re-producing samples -------------------------------------------------------------------------------------
def _tasks(validated: ValidatedSubmission, env_kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(the task the policy was trained on, the evaluation-protocol task it is re-sampled on).

    Without env kwargs the latter is the task validation used, so re-sampled sequences (the submitted ones, if
    they reproduce) are scored from its oracle caches instead of a second time.
    """
    from morbench.evaluation import make_evaluation_task
    from morbench.registry import make

    task = cast("TokenEnv", make(validated.env_id, **env_kwargs).unwrapped)
    if not env_kwargs:
        return task, validated.task
    return task, make_evaluation_task(validated.env_id, env_kwargs, training_task=task)


def _resample(policy: Any, eval_task: Any, seed: int, samples: int, prior: torch.nn.Module) -> dict[str, Any]:
    from morbench.evaluation import evaluate_on_env

    torch.manual_seed(seed)
    return evaluate_on_env(policy, eval_task, seed, samples_per_preference=samples, prior=prior, progress=False)


def _provenance(validated: ValidatedSubmission) -> dict[str, Any]:
    """The submission's provenance; schema-version-1 files have none and are refused before anything reads it."""
    if validated.provenance is None:
        raise VerificationError("schema version 1: the file has no provenance; re-submit with `morbench submit`")
    return validated.provenance


def _retrain(validated: ValidatedSubmission, seed: int, folder: Path, progress: bool) -> tuple[dict, dict]:
    from morbench.baselines import get_method, run_method
    from morbench.baselines.training import Budget
    from morbench.runs import read_evaluation, read_run

    provenance = _provenance(validated)
    spec = get_method(provenance["method"])
    try:
        config = spec.config(**provenance["config"])
    except (TypeError, MorbenchError) as exc:
        raise VerificationError(f"provenance.config does not build a {spec.config.__name__}: {exc}") from None
    kwargs: dict[str, Any] = {}
    if provenance.get("compute_convention") and "compute_convention" in inspect.signature(run_method).parameters:
        kwargs["compute_convention"] = provenance["compute_convention"]
    out = folder / f"seed_{seed}"
    run_method(
        provenance["method"],
        validated.env_id,
        out,
        seed=seed,
        config=config,
        budget=Budget(**provenance["budget"]),
        env_kwargs=provenance["env_kwargs"],
        eval_samples=provenance["eval_samples"],
        progress=progress,
        **kwargs,
    )
    compute = read_run(out).get("compute") or {}
    measured = {k: compute.get(k) for k in ("oracle_calls", "sampled_tokens", "wall_seconds")}
    return read_evaluation(out), measured


def _find_run_dir(validated: ValidatedSubmission, seed: int, files: dict[str, str], artifacts: Path) -> Path:
    """The run directory under ``artifacts`` of this (env, method, seed) whose files have the recorded digests."""
    from morbench.serving import file_sha256

    candidates = []
    for run_dir in find_runs(artifacts):
        try:
            record = json.loads((run_dir / RUN_FILE).read_text())
            same = (record["env"]["id"], record["method"], record["seed"]) == (
                validated.env_id,
                _provenance(validated)["method"],
                seed,
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if same:
            candidates.append(run_dir)
    problems = []
    for run_dir in candidates:
        bad = [
            name
            for name, digest in sorted(files.items())
            if not (run_dir / name).is_file() or file_sha256(run_dir / name) != digest
        ]
        if not bad:
            return run_dir
        problems.append(f"{run_dir}: {bad[:3]} missing or changed")
    where = "; ".join(problems) if problems else "no run of this env, method and seed"
    raise VerificationError(
        f"seed {seed}: no run directory under {artifacts} has the model files this submission records ({where})"
    )


def _checked(run_dir: Path, relative: str, files: dict[str, str]) -> Path:
    """A model folder of a run, every file of which the submission declared (digests were checked)."""
    folder = run_dir / relative
    undeclared = sorted(
        p.relative_to(run_dir).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(run_dir).as_posix() not in files
    )
    if not folder.is_dir() or undeclared:
        raise VerificationError(f"{folder}: missing, or holds files the submission did not declare {undeclared[:5]}")
    return folder


def baseline_policy(
    method: str, outputs: dict[str, Any], run_dir: Path, files: dict, task: Any, prior: PreTrainedModel
) -> Any:
    """The policy a trained baseline run served, rebuilt from its saved models as its ``outputs`` record says.

    Experts (Rewarded Soups, IterativeRS): interpolated by ``w`` with the Rewarded Soups merge. A dict of models
    (MORLHF's trained preferences, IterativeRS's per-preference trajectories): the nearest trained preference
    (L1, ties to the first in training order). Rewards-in-Context: its own conditioned policy, with the level
    support it recorded.
    """
    from morbench import serving
    from morbench.preferences import preference_key

    def model(relative: str) -> torch.nn.Module:
        return serving.model_from_state(prior, serving.load_state(_checked(run_dir, relative, files)))

    if isinstance(outputs.get("experts"), dict):
        experts = outputs["experts"]
        states = [serving.load_state(_checked(run_dir, experts[name], files)) for name in task.objective_names]
        base: Any = model(outputs["base"]) if isinstance(outputs.get("base"), str) else prior  # LoRA experts' base
        return serving.interpolation_policy(base, states, task)
    for field in ("models", "merged"):
        if isinstance(outputs.get(field), dict):
            paths, trained = outputs[field], outputs.get("trained_preferences")
            order = [preference_key(w) for w in trained] if trained else list(paths)
            models = {key: model(paths[key]) for key in order}
            return serving.nearest_policy(models, task, points=trained)
    if method == "rewards_in_context":
        from morbench.baselines.rewards_in_context import RiCPolicy

        policy = RiCPolicy(model(outputs["model"]), task, int(outputs["base_vocab_size"]), int(outputs["levels"]))
        if outputs.get("support") is not None and hasattr(policy, "support"):
            policy.support = np.asarray(outputs["support"])
        return policy
    raise VerificationError(
        f"{method}: its run's outputs record ({sorted(outputs)}) names no saved models this verifier can serve; "
        "verify with --retrain"
    )


def _baseline_from_artifacts(validated: ValidatedSubmission, seed: int, artifacts: Path | None) -> dict[str, Any]:
    from morbench.models import load_prior

    provenance = _provenance(validated)
    task, eval_task = _tasks(validated, provenance["env_kwargs"])
    entry = next((a for a in provenance.get("artifacts") or [] if a["seed"] == seed), None)
    if entry is None or not entry["files"]:
        raise VerificationError(f"seed {seed}: the submission records no saved model files; verify with --retrain")
    if artifacts is None:
        raise VerificationError(f"seed {seed}: pass the run folder with --artifacts DIR, or verify with --retrain")
    run_dir = _find_run_dir(validated, seed, entry["files"], artifacts)
    prior = load_prior(task, seed=seed).eval()
    policy = baseline_policy(provenance["method"], entry["outputs"], run_dir, entry["files"], task, prior)
    return _resample(policy, eval_task, seed, validated.samples_per_preference, prior)


def _policy_from_artifacts(validated: ValidatedSubmission, seed: int, artifacts: Path | None) -> dict[str, Any]:
    from morbench.models import load_prior
    from morbench.serving import policy_from_provenance

    if artifacts is None:
        raise VerificationError("a policy submission is verified from its model folders: pass --artifacts DIR")
    task, eval_task = _tasks(validated, {})
    policy = policy_from_provenance(_provenance(validated), artifacts, task, seed)
    return _resample(policy, eval_task, seed, validated.samples_per_preference, load_prior(task).eval())


def _kl(record: dict[str, Any], task: Any) -> float | None:
    from morbench.scoring import score_evaluation

    value = score_evaluation(record, task, domain=False).get("kl_to_prior")
    return float(value) if value is not None and np.isfinite(value) else None


def verify_submission(
    validated: ValidatedSubmission,
    artifacts: str | Path | None = None,
    retrain: bool = False,
    progress: bool = False,
    ledger: dict[str, dict[str, Any]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Re-produce every seed's samples; returns (how, per-seed measurements) or raises VerificationError.

    With ``ledger`` (its entries) and neither ``artifacts`` nor ``retrain``, a baseline submission whose every
    seed entry a passing record re-produced is verified from those records (``how="parts"``).
    """
    kind = validated.kind
    if kind == "legacy":
        raise VerificationError(
            "schema version 1: the file has no provenance, so nothing can re-produce its samples; re-submit with "
            "`morbench submit` (schema version 2)"
        )
    if kind == "samples":
        raise VerificationError(
            "provenance kind 'samples': samples alone cannot be re-produced; the entry stays in the unranked table "
            "(submit a baseline config or policy artifacts to be ranked)"
        )
    artifacts = Path(artifacts) if artifacts is not None else None
    if artifacts is not None and not artifacts.is_dir():
        raise VerificationError(f"--artifacts {artifacts}: no such directory")
    if kind == "baseline" and ledger and artifacts is None and not retrain:
        vouched = _vouched_seeds(validated, ledger)
        if vouched is not None:
            return "parts", vouched
    if kind == "baseline":
        method = _provenance(validated)["method"]
        if retrain and method not in UNTRAINED_METHODS:
            how = "retrain"
        elif method in UNTRAINED_METHODS:
            how = "resample"
        elif artifacts is not None:
            how = "artifacts"
        else:
            how = "retrain"
    else:
        how = "artifacts"
    submitted = {e["seed"]: e for e in validated.evaluations}
    seeds: dict[str, Any] = {}
    problems: list[str] = []
    workdir = tempfile.TemporaryDirectory(prefix="morbench-verify-") if kind == "baseline" else None
    try:
        for seed in validated.seeds:
            started = time.perf_counter()
            measured = None
            if how in ("retrain", "resample") and kind == "baseline":
                assert workdir is not None  # made for every baseline submission
                record, measured = _retrain(validated, seed, Path(workdir.name), progress)
            elif kind == "baseline":
                record = _baseline_from_artifacts(validated, seed, artifacts)
            else:
                record = _policy_from_artifacts(validated, seed, artifacts)
            problems += compare_samples(submitted[seed], record, seed)
            if problems:
                break  # the first seed that differs decides; the others need not be re-produced
            info: dict[str, Any] = {
                "kl_to_prior": _kl(record, validated.task),
                "sampling_seconds": round(float((record.get("evaluation_compute") or {}).get("wall_seconds", 0)), 3),
                "seconds": round(time.perf_counter() - started, 3),
            }
            if measured is not None:
                info["compute"] = measured
            seeds[str(seed)] = info
    finally:
        if workdir is not None:
            workdir.cleanup()
    if problems:
        shown = "\n  ".join(problems[:MAX_MISMATCHES_SHOWN])
        more = (
            f"\n  ... and {len(problems) - MAX_MISMATCHES_SHOWN} more" if len(problems) > MAX_MISMATCHES_SHOWN else ""
        )
        raise VerificationError(
            f"{len(problems)} submitted sample(s) differ from the re-produced ones ({how}):\n  {shown}{more}"
        )
    return how, seeds


def verify_file(
    path: str | Path,
    artifacts: str | Path | None = None,
    retrain: bool = False,
    ledger: str | Path | None = None,
    progress: bool = False,
    tasks: TaskCache | None = None,
) -> VerifyOutcome:
    """Validate and verify one submission file; record the verdict under the sha256 of its bytes."""
    import morbench

    path = Path(path)
    started = time.perf_counter()
    data = path.read_bytes()
    sha = content_sha256(data)
    ledger_path = Path(ledger) if ledger is not None else default_ledger(path)
    record: dict[str, Any] = {
        "file": path.name,
        "morbench_version": morbench.__version__,
        "commit": git_commit(),
        "hardware": {k: v for k, v in hardware_info().items() if k in ("processor", "cpu_count", "torch_threads")},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    how = None
    try:
        submission = parse_submission(data, str(path), gzipped=path.name.endswith(".gz"))
        validated = validate_submission(submission, str(path), tasks or TaskCache())
        record.update(name=validated.name, env=validated.env_id, kind=validated.kind)
        error = validated.claims_error
        # lets the builder take the claims for these bytes (None: some claim missing, e.g. no judge rewards)
        record["claims_max_error"] = error if error is not None and np.isfinite(error) else None
        how, seeds = verify_submission(validated, artifacts, retrain, progress, read_ledger(ledger_path))
        digests = {str(seed): seed_digest(validated.submission, seed) for seed in validated.seeds}
        record.update(verdict="verified", how=how, seeds=seeds, seed_digests=digests)
    except SubmissionError as exc:  # VerificationError included
        record.update(verdict="failed", how=how, message=str(exc)[:4000])
    record["seconds"] = round(time.perf_counter() - started, 3)
    record_in_ledger(ledger_path, sha, record)
    return VerifyOutcome(str(path), sha, record["verdict"], record.get("how"), record["seconds"], record)
