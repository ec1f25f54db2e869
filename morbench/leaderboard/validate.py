"""Submission validation: schema, the task's protocol (env, objectives, preference grid, sample counts), re-scoring.

Every submitted sequence is re-scored with the env's training oracle (and with the held-out judge where the
task has one); a claimed reward that differs from the recomputed one by more than ``REWARD_TOLERANCE``
(absolute, per objective), or a claimed validity flag that differs, rejects the submission with the offending
rows. The recomputed rewards (not the claimed ones) are what the board scores.

Re-scoring is the expensive part (about 10 minutes for a 5-seed Enhancer-v0 file on one CPU core), so the board
builder does it once per file's bytes: a file whose exact bytes `morbench leaderboard verify` passed, with claims
that matched the re-scoring to ``TRUSTED_CLAIM_ERROR``, is read with its claimed rewards (``trusted``), every
other check still applied.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Container, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from morbench.errors import MorbenchError, SubmissionError
from morbench.leaderboard.schema import (
    SUBMISSION_SUFFIXES,
    check_schema,
    content_sha256,
    env_stem,
    parse_submission,
    read_submission_bytes,
    submission_slug,
)
from morbench.runs import EVALUATION_FORMAT

__all__ = [
    "MIN_RANKED_SEEDS",
    "MIN_SAMPLES_PER_PREFERENCE",
    "REWARD_TOLERANCE",
    "TRUSTED_CLAIM_ERROR",
    "TaskCache",
    "ValidatedSubmission",
    "ValidationReport",
    "find_submissions",
    "validate_files",
    "validate_submission",
]

REWARD_TOLERANCE = 1e-4  # absolute, per objective, claimed vs recomputed (oracle and judge rewards)
# claims at most this far from the re-scoring (`morbench submit` rounds to 6 decimals; oracles differ by ~1e-7
# across CPUs) may stand in for it once verified: a verified file cannot shift its rewards by more than this
TRUSTED_CLAIM_ERROR = 2e-6
WEIGHT_TOLERANCE = 1e-6  # a submitted preference must equal a grid point to this precision
MIN_RANKED_SEEDS = 5  # fewer distinct seeds: listed as unranked
MIN_SAMPLES_PER_PREFERENCE = 128  # the documented minimum (the quick suite's count); at most the protocol's count
MAX_ROWS_SHOWN = 20


@dataclasses.dataclass
class ValidatedSubmission:
    """A submission that passed every check, with its per-seed evaluations built from the recomputed rewards."""

    source: str
    submission: dict[str, Any]
    task: Any
    evaluations: list[dict[str, Any]]
    samples_per_preference: int
    seconds: float = 0.0
    sha256: str | None = None  # of the file's exact bytes (None for an in-memory submission)
    # largest |claimed - recomputed| over every reward and judge reward (inf: a judge reward was not claimed);
    # None when the claims were trusted instead of re-scored
    claims_error: float | None = None

    @property
    def name(self) -> str:
        """The submission's name."""
        return self.submission["name"]

    @property
    def env_id(self) -> str:
        """The env id the submission was evaluated on."""
        return self.submission["env"]["id"]

    @property
    def seeds(self) -> list[int]:
        """The submitted seeds, sorted."""
        return sorted(entry["seed"] for entry in self.submission["seeds"])

    @property
    def provenance(self) -> dict[str, Any] | None:
        """How the samples were produced (None: a schema-version-1 file, which has no provenance)."""
        return self.submission.get("provenance")

    @property
    def kind(self) -> str:
        """``baseline``, ``policy``, ``samples``, or ``legacy`` (schema version 1: no provenance)."""
        return self.provenance["kind"] if self.provenance else "legacy"

    def shape_blockers(self) -> list[str]:
        """Why this submission cannot be ranked whatever its verification: provenance kind, seeds, sample count."""
        reasons = []
        if self.kind == "legacy":
            reasons.append("schema v1: no provenance, not verifiable")
        elif self.kind == "samples":
            reasons.append("samples only")
        if len(self.seeds) < MIN_RANKED_SEEDS:
            reasons.append(f"fewer than {MIN_RANKED_SEEDS} seeds ({len(self.seeds)})")
        protocol_n = int(self.task.protocol.samples_per_preference)
        if self.samples_per_preference != protocol_n:
            reasons.append(
                f"not at the protocol's sample count ({self.samples_per_preference:,} of {protocol_n:,} per preference)"
            )
        return reasons

    @property
    def ranked(self) -> bool:
        """Rankable once verified: a verifiable provenance, enough seeds, the protocol's sample count."""
        return not self.shape_blockers()


@dataclasses.dataclass
class ValidationReport:
    """The submissions that passed validation and one message per rejected file."""

    valid: list[ValidatedSubmission]
    errors: list[str]

    @property
    def ok(self) -> bool:
        """Whether no file was rejected."""
        return not self.errors


class TaskCache:
    """One evaluation-protocol instance of each env id (oracle caches are shared across submissions)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Any] = {}

    def get(self, env_id: str, source: str) -> Any:
        """The evaluation-protocol task of ``env_id``, made on first use (``source`` names the file in errors)."""
        if env_id not in self._tasks:
            self._tasks[env_id] = _make_evaluation_task(env_id, source)
        return self._tasks[env_id]


def _make_evaluation_task(env_id: str, source: str) -> Any:
    from morbench.evaluation import make_evaluation_task

    try:
        return make_evaluation_task(env_id)
    except MorbenchError as exc:
        raise SubmissionError(f"{source}: env {env_id!r} is not available here: {exc}") from None


def _fail(source: str, problem: str) -> SubmissionError:
    return SubmissionError(f"{source}: {problem}")


# -- protocol checks ----------------------------------------------------------------------------------------
def check_env(submission: dict[str, Any], tasks: TaskCache, source: str) -> Any:
    """The env id is registered, at the submitted version, with the registered (evaluation) kwargs."""
    from morbench.registry import spec

    env = submission["env"]
    task = tasks.get(env["id"], source)
    version = task.spec.version if task.spec is not None else None
    if env["version"] != version:
        raise _fail(
            source,
            f"env {env['id']} version {env['version']} does not match the registered version {version}; "
            "re-run and re-submit on the current version",
        )
    allowed = [dict(spec(env["id"]).kwargs), dict(task.spec.kwargs)]
    if _canonical(env["kwargs"]) not in [_canonical(k) for k in allowed]:
        raise _fail(
            source,
            f"env kwargs {_clip(json.dumps(env['kwargs'], sort_keys=True))} differ from the registered task's "
            f"{json.dumps(allowed[-1], sort_keys=True)}; the board ranks the registered task only",
        )
    return task


def check_objectives(submission: dict[str, Any], task: Any, source: str) -> None:
    names = list(submission["objective_names"])
    if names != list(task.objective_names):
        raise _fail(
            source,
            f"objective_names {names} do not match {submission['env']['id']}'s {list(task.objective_names)} "
            f"({len(names)} objectives submitted, the task has {task.reward_dim})",
        )


def check_seeds(submission: dict[str, Any], source: str) -> None:
    seeds = [entry["seed"] for entry in submission["seeds"]]
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise _fail(source, f"seeds {duplicates} appear more than once; every seed entry needs a distinct seed")


def check_preference_grid(seed_entry: dict[str, Any], task: Any, source: str) -> list[int]:
    """Each submitted preference is a distinct point of the task's grid and every grid point is covered.

    Returns, for each submitted preference, the index of its grid point.
    """
    grid = np.asarray(task.preference_grid, dtype=np.float64)
    where = f"seed {seed_entry['seed']}"
    matched: list[int] = []
    for p, entry in enumerate(seed_entry["preferences"]):
        weights = np.asarray(entry["weights"], dtype=np.float64)
        if weights.shape != (grid.shape[1],):
            raise _fail(
                source,
                f"{where}, preferences[{p}]: weights {entry['weights']} have {weights.size} entries; "
                f"the task has {grid.shape[1]} objectives",
            )
        hits = np.flatnonzero(np.all(np.abs(grid - weights) <= WEIGHT_TOLERANCE, axis=1))
        if hits.size == 0:
            raise _fail(
                source,
                f"{where}, preferences[{p}]: weights {entry['weights']} are not on the task's preference grid "
                f"({_grid_text(grid)})",
            )
        if int(hits[0]) in matched:
            raise _fail(source, f"{where}: preference {entry['weights']} is submitted twice")
        matched.append(int(hits[0]))
    missing = sorted(set(range(len(grid))) - set(matched))
    if missing:
        raise _fail(
            source,
            f"{where}: preferences {[grid[i].tolist() for i in missing]} of the task's grid are missing; "
            f"submit every grid point ({len(grid)} in all)",
        )
    return matched


def check_shapes(entry: dict[str, Any], k: int, where: str, source: str) -> int:
    """Every per-sample field has one item per sequence; every reward row has one value per objective."""
    n = len(entry["sequences"])
    for field in ("rewards", "valid", "judge_rewards", "logprobs", "prior_logprobs", "contexts"):
        values = entry.get(field)
        if values is not None and len(values) != n:
            raise _fail(source, f"{where}: {field} has {len(values)} items for {n} sequences")
    for field in ("rewards", "judge_rewards"):
        for i, row in enumerate(entry.get(field) or []):
            if len(row) != k:
                raise _fail(
                    source,
                    f"{where}: {field}[{i}] has {len(row)} values; the task has {k} objectives (wrong number of "
                    "objectives)",
                )
    return n


def check_sample_counts(submission: dict[str, Any], task: Any, source: str) -> int:
    """One sample count for every (seed, preference), between the documented minimum and the protocol's count."""
    protocol_n = int(task.protocol.samples_per_preference)
    minimum = min(MIN_SAMPLES_PER_PREFERENCE, protocol_n)
    counts = {len(entry["sequences"]) for seed in submission["seeds"] for entry in seed["preferences"]}
    if len(counts) != 1:
        raise _fail(source, f"sample counts differ across seeds and preferences ({sorted(counts)}); use one count")
    n = counts.pop()
    if not minimum <= n <= protocol_n:
        raise _fail(
            source,
            f"{n} samples per preference; {submission['env']['id']}'s protocol asks for {protocol_n} "
            f"(at least {minimum} are accepted)",
        )
    return n


def check_protocol_decoding(submission: dict[str, Any], task: Any, source: str) -> None:
    """The decoding the runs recorded (``protocol.temperature``, ``top_p``) must be the task's protocol's.

    ``morbench study`` evaluates at other temperatures (a study-only override, recorded in the evaluation's
    ``protocol``); such samples are never compared with protocol results.
    """
    recorded = submission.get("protocol")
    if not isinstance(recorded, dict):
        return
    for field in ("temperature", "top_p"):
        value, expected = recorded.get(field), getattr(task.protocol, field)
        if value is not None and (not isinstance(value, (int, float)) or float(value) != float(expected)):
            raise _fail(
                source,
                f"protocol.{field} {value!r} differs from {task.spec.id}'s protocol ({expected}); the board ranks "
                "samples decoded with the protocol's settings only (a study's decoding override is not a submission)",
            )


def check_provenance(submission: dict[str, Any], task: Any, samples: int, source: str) -> None:
    """What the schema cannot say about ``provenance``: it must match the method, seeds, grid and protocol."""
    from morbench.preferences import preference_key

    provenance = submission.get("provenance")
    if provenance is None or provenance["kind"] == "samples":
        return
    seeds = sorted(entry["seed"] for entry in submission["seeds"])
    if provenance["kind"] == "baseline":
        from morbench.baselines import METHODS

        if provenance["method"] not in METHODS:
            raise _fail(
                source, f"provenance.method {provenance['method']!r} is not a morbench baseline ({sorted(METHODS)})"
            )
        if provenance["method"] != submission["method"]:
            raise _fail(
                source, f"provenance.method {provenance['method']!r} differs from method {submission['method']!r}"
            )
        if provenance["eval_samples"] != samples:
            raise _fail(
                source,
                f"provenance.eval_samples {provenance['eval_samples']} differs from the {samples} samples per "
                "preference submitted",
            )
        artifact_seeds = [a["seed"] for a in provenance.get("artifacts") or []]
        if len(set(artifact_seeds)) != len(artifact_seeds) or not set(artifact_seeds) <= set(seeds):
            raise _fail(source, f"provenance.artifacts seeds {artifact_seeds} must be distinct submitted seeds {seeds}")
        return
    # policy artifacts
    by_seed = provenance.get("models_by_seed")
    if by_seed is not None and sorted(int(s) for s in by_seed) != seeds:
        raise _fail(
            source, f"provenance.models_by_seed names seeds {sorted(int(s) for s in by_seed)}; submitted: {seeds}"
        )
    model_lists = list(by_seed.values()) if by_seed is not None else [provenance["models"]]
    serving, mapping = provenance["serving"], provenance.get("mapping")
    keys = [preference_key(w) for w in task.preference_grid]
    for models in model_lists:
        if serving in ("single", "conditioned") and len(models) != 1:
            raise _fail(source, f"provenance.serving {serving!r} takes exactly one model, got {len(models)}")
        if serving == "interpolate" and len(models) != task.reward_dim:
            raise _fail(
                source,
                f"provenance.serving 'interpolate' takes one expert per objective ({task.reward_dim}), "
                f"got {len(models)} models",
            )
        if serving == "per_preference":
            bad = [k for k in keys if not (isinstance((mapping or {}).get(k), int) and 0 <= mapping[k] < len(models))]
            if bad:
                raise _fail(
                    source,
                    f"provenance.mapping must give a model index (0..{len(models) - 1}) for every preference key "
                    f"{keys}; missing or invalid: {bad[:5]}",
                )
    if serving == "conditioned":
        bad = [
            k
            for k in keys
            if not (
                isinstance((mapping or {}).get(k), list)
                and 0 < len(mapping[k]) <= 64
                and all(type(t) is int and t >= 0 for t in mapping[k])
            )
        ]
        if bad:
            raise _fail(
                source,
                f"provenance.mapping must give a list of 1-64 prefix token ids for every preference key {keys}; "
                f"missing or invalid: {bad[:5]}",
            )
    decoding = provenance["decoding"]
    protocol = (task.protocol.temperature, task.protocol.top_p)
    if (float(decoding["temperature"]), float(decoding["top_p"])) != (float(protocol[0]), float(protocol[1])):
        raise _fail(
            source,
            f"provenance.decoding {decoding} differs from the protocol's temperature {protocol[0]} and top_p "
            f"{protocol[1]}; the board compares policies under the protocol's decoding",
        )


def resolve_contexts(entry: dict[str, Any], task: Any, where: str, source: str) -> list[Any]:
    """The task's Context objects for the submitted context keys (None for unconditional tasks)."""
    keys = entry.get("contexts")
    n = len(entry["sequences"])
    if task.contexts is None:
        if keys is not None:
            raise _fail(source, f"{where}: contexts given, but {task.spec.id} is not prompt-conditioned")
        return [None] * n
    if keys is None:
        raise _fail(source, f"{where}: {task.spec.id} is prompt-conditioned; every sample needs its context key")
    by_key = {context.key: context for context in task.contexts}
    unknown = sorted({key for key in keys if key not in by_key})
    if unknown:
        raise _fail(
            source, f"{where}: context keys {[_clip(k, 40) for k in unknown[:5]]} are not in the evaluation split"
        )
    return [by_key[key] for key in keys]


# -- re-scoring -----------------------------------------------------------------------------------------------
def _compare(difference: np.ndarray, claimed_valid: list[bool] | None, valid: np.ndarray | None) -> np.ndarray:
    """Indices of rows whose claimed rewards (``difference``: |claimed - recomputed|) or validity do not match."""
    bad = np.any(difference > REWARD_TOLERANCE, axis=1)
    if claimed_valid is not None and valid is not None:
        bad |= np.asarray(claimed_valid, dtype=bool) != valid
    return np.flatnonzero(bad)


def _difference(claimed: list[list[float]], recomputed: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(claimed, dtype=np.float64) - recomputed.astype(np.float64))


def _offending_row(
    seed: int, weights: list[float], index: int, sequence: str, kind: str, claimed: Any, recomputed: Any
) -> str:
    return (
        f"seed={seed} preference={weights} index={index} sequence={_clip(sequence, 60)!r}: {kind} claimed "
        f"{claimed} vs recomputed {recomputed}"
    )


def _largest(difference: np.ndarray) -> float:
    return float(difference.max()) if difference.size else 0.0


def _trusted_entry(
    entry: dict[str, Any], task: Any, contexts: Any, judged: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The claimed rewards and validity of a trusted file (its judge rewards are computed if not claimed)."""
    rewards = np.asarray(entry["rewards"], dtype=np.float64).reshape(len(entry["sequences"]), task.reward_dim)
    valid = np.asarray(entry["valid"], dtype=bool)
    judge = None
    if judged:
        claimed = entry.get("judge_rewards")
        judge = (
            np.asarray(claimed, dtype=np.float64)
            if claimed is not None
            else np.asarray(task.judge_score(entry["sequences"], contexts).rewards, dtype=np.float64)
        )
    return rewards, valid, judge


def rescore_seed(
    seed_entry: dict[str, Any],
    task: Any,
    order: list[int],
    source: str,
    offending: list[str],
    trusted: bool = False,
    errors: list[float] | None = None,
) -> list[dict[str, Any]]:
    """Re-score one seed's samples and return the evaluation's preference entries.

    Mismatches are appended to ``offending`` and the largest claim error per preference to ``errors``.
    ``trusted``: take the claims instead of re-scoring (only for bytes a verification re-scored; see the module
    docstring).
    """
    k = task.reward_dim
    grid = np.asarray(task.preference_grid, dtype=np.float64)
    entries = []
    for p, entry in sorted(enumerate(seed_entry["preferences"]), key=lambda item: order[item[0]]):
        where = f"seed {seed_entry['seed']}, preferences[{p}]"
        check_shapes(entry, k, where, source)
        contexts = resolve_contexts(entry, task, where, source)
        sequences = entry["sequences"]
        judged = task.judge is not None and task.protocol.judges(grid[order[p]])
        if entry.get("judge_rewards") is not None and not judged:
            raise _fail(
                source,
                f"{where}: judge_rewards given, but {task.spec.id} "
                + (
                    "has no held-out judge"
                    if task.judge is None
                    else f"judges only the uniform preference's samples (its protocol), not {entry['weights']}"
                ),
            )
        if trusted:
            rewards, valid, judge = _trusted_entry(entry, task, contexts, judged)
            entries.append(_evaluation_entry(grid[order[p]], entry, rewards, valid, judge))
            continue
        result = task.score(sequences, contexts)
        rewards = np.asarray(result.rewards, dtype=np.float64)
        difference = _difference(entry["rewards"], rewards)
        if errors is not None:
            errors.append(_largest(difference))
        for i in _compare(difference, entry["valid"], result.valid):
            offending.append(
                _offending_row(
                    seed_entry["seed"],
                    entry["weights"],
                    int(i),
                    sequences[i],
                    "rewards/valid",
                    f"{_row(entry['rewards'][i])}/{entry['valid'][i]}",
                    f"{_row(rewards[i])}/{bool(result.valid[i])}",
                )
            )
        judge = None
        if judged:
            judge = np.asarray(task.judge_score(sequences, contexts).rewards, dtype=np.float64)
            if entry.get("judge_rewards") is None:
                if errors is not None:
                    errors.append(float("inf"))  # nothing claimed: these bytes cannot stand in for re-scoring
            else:
                difference = _difference(entry["judge_rewards"], judge)
                if errors is not None:
                    errors.append(_largest(difference))
                for i in _compare(difference, None, None):
                    offending.append(
                        _offending_row(
                            seed_entry["seed"],
                            entry["weights"],
                            int(i),
                            sequences[i],
                            "judge rewards",
                            _row(entry["judge_rewards"][i]),
                            _row(judge[i]),
                        )
                    )
        entries.append(_evaluation_entry(grid[order[p]], entry, rewards, result.valid, judge))
    return entries


def _evaluation_entry(
    weights: np.ndarray, entry: dict[str, Any], rewards: np.ndarray, valid: np.ndarray, judge: np.ndarray | None
) -> dict[str, Any]:
    return {
        "weights": weights.tolist(),
        "sequences": list(entry["sequences"]),
        "rewards": rewards.tolist(),
        "valid": np.asarray(valid, dtype=bool).tolist(),
        "judge_rewards": judge.tolist() if judge is not None else None,
        "logprobs": entry.get("logprobs"),
        "prior_logprobs": entry.get("prior_logprobs"),
        "contexts": entry.get("contexts"),
    }


def validate_submission(
    submission: Any,
    source: str,
    tasks: TaskCache | None = None,
    started: float | None = None,
    trusted: bool = False,
) -> ValidatedSubmission:
    """Every check of one parsed submission; raises :class:`SubmissionError` naming ``source`` and the problem.

    ``trusted``: the claimed rewards stand in for re-scoring (the board builder passes it only for bytes whose
    verification measured claims within ``TRUSTED_CLAIM_ERROR``); every other check is applied.
    """
    started = time.perf_counter() if started is None else started
    tasks = tasks or TaskCache()
    check_schema(submission, source)
    task = check_env(submission, tasks, source)
    check_objectives(submission, task, source)
    check_seeds(submission, source)
    samples = check_sample_counts(submission, task, source)
    check_protocol_decoding(submission, task, source)
    check_provenance(submission, task, samples, source)
    offending: list[str] = []
    errors: list[float] = []
    evaluations = []
    for seed_entry in sorted(submission["seeds"], key=lambda s: s["seed"]):
        order = check_preference_grid(seed_entry, task, source)
        preferences = rescore_seed(seed_entry, task, order, source, offending, trusted, errors)
        evaluations.append(_evaluation(submission, seed_entry, preferences))
    if offending:
        shown = "\n  ".join(offending[:MAX_ROWS_SHOWN])
        more = f"\n  ... and {len(offending) - MAX_ROWS_SHOWN} more" if len(offending) > MAX_ROWS_SHOWN else ""
        raise _fail(
            source,
            f"{len(offending)} sample(s) do not match re-scoring with {submission['env']['id']}'s oracle "
            f"(tolerance {REWARD_TOLERANCE:g} absolute per objective):\n  {shown}{more}",
        )
    claims_error = None if trusted else max(errors, default=0.0)
    return ValidatedSubmission(
        source, submission, task, evaluations, samples, time.perf_counter() - started, claims_error=claims_error
    )


def _evaluation(submission: dict[str, Any], seed_entry: dict[str, Any], preferences: list[dict[str, Any]]) -> dict:
    """A ``morbench-evaluation/1`` record of one seed, as :func:`morbench.scoring.score_evaluation` reads it."""
    return {
        "format": EVALUATION_FORMAT,
        "env": {"id": submission["env"]["id"], "version": submission["env"]["version"]},
        "method": submission["name"],
        "seed": seed_entry["seed"],
        "objective_names": list(submission["objective_names"]),
        "preferences": preferences,
    }


# -- files ----------------------------------------------------------------------------------------------------
def find_submissions(root: str | Path) -> list[Path]:
    """Every submission file under ``root`` (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise SubmissionError(f"{root}: no such submissions directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def check_location(path: Path, submission: dict[str, Any], root: Path | None) -> None:
    """Files under the submissions root live at ``<env-stem>/<name slug>.json[.gz]``."""
    if root is None:
        return
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        return
    expected_dir = env_stem(submission["env"]["id"])
    slug = submission_slug(submission["name"])
    expected = [f"{expected_dir}/{slug}{suffix}" for suffix in SUBMISSION_SUFFIXES]
    if relative.as_posix() not in expected:
        raise _fail(
            str(path),
            f"a submission for {submission['env']['id']} named {_clip(submission['name'], 80)!r} must be at "
            f"{root}/{expected[0]} (or .json)",
        )


def validate_files(
    paths: Iterable[str | Path],
    root: str | Path | None = None,
    progress: bool = False,
    trusted: Container[str] = (),
) -> ValidationReport:
    """Validate files one by one (collecting every error), then reject duplicate names within an env.

    ``progress``: a progress bar on stderr (one step per file). ``trusted``: sha256 digests of file bytes whose
    claimed rewards stand in for re-scoring (see :func:`validate_submission`).
    """
    from tqdm.auto import tqdm

    tasks = TaskCache()
    valid: list[ValidatedSubmission] = []
    errors: list[str] = []
    root_path = Path(root) if root is not None else None
    bar = tqdm(sorted(Path(p) for p in paths), desc="validate", unit="file", disable=not progress)
    for path in bar:
        bar.set_postfix_str(path.name, refresh=False)
        started = time.perf_counter()
        try:
            data = read_submission_bytes(path)
            sha = content_sha256(data)
            submission = parse_submission(data, str(path), gzipped=path.name.endswith(".gz"))
            result = validate_submission(submission, str(path), tasks, started, trusted=sha in trusted)
            check_location(path, submission, root_path)
            result.sha256 = sha
            valid.append(result)
        except SubmissionError as exc:
            errors.append(str(exc))
        except Exception as exc:  # a hostile file must be rejected, never crash the whole run
            errors.append(f"{path}: could not be checked ({type(exc).__name__}: {_clip(str(exc))})")
    valid, duplicate_errors = reject_duplicates(valid)
    return ValidationReport(valid, errors + duplicate_errors)


class NamedSubmission(Protocol):
    """What the duplicate-name check reads of a submission (validated now or cached by an earlier build)."""

    @property
    def source(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def env_id(self) -> str: ...


Named = TypeVar("Named", bound=NamedSubmission)


def reject_duplicates(results: Sequence[Named]) -> tuple[list[Named], list[str]]:
    """Reject every file whose name clashes with another's of the same env, with a message naming both.

    Names are unique per env and must not look alike (:func:`morbench.leaderboard.names.names_clash`: confusable
    skeletons, case-insensitively, and file slugs).
    """
    from morbench.leaderboard.names import name_clash_message, names_clash

    keep, errors = [], []
    for result in results:
        clash = [
            r for r in results if r is not result and r.env_id == result.env_id and names_clash(result.name, r.name)
        ]
        if not clash:
            keep.append(result)
            continue
        errors.append(name_clash_message(result.name, result.source, clash[0].name, clash[0].source, result.env_id))
    return keep, errors


# -- helpers --------------------------------------------------------------------------------------------------
def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _row(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"


def _grid_text(grid: np.ndarray) -> str:
    points = [[round(float(x), 6) for x in row] for row in grid]
    text = ", ".join(str(p) for p in points[:12])
    return f"{len(points)} points: {text}" + (", ..." if len(points) > 12 else "")
