"""``morbench submit``: gather the run directories of one (env, method), check them, write one submission file."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from morbench.errors import InvalidRunError, SubmissionError
from morbench.leaderboard.schema import (
    MAX_FILE_BYTES,
    SCHEMA_VERSION,
    SUBMISSION_SUFFIXES,
    dumps_submission,
    env_stem,
    parse_submission,
    read_submission,
    submission_slug,
)
from morbench.leaderboard.validate import TaskCache, find_submissions, validate_submission
from morbench.runs import RUN_FILE, atomic_write_bytes, find_runs, read_evaluation, read_run

__all__ = ["collect_runs", "make_submission", "submit"]

REWARD_DECIMALS = 6  # claimed rewards are rounded to this (well inside the 1e-4 re-scoring tolerance)
LOGPROB_DECIMALS = 4


def _run_group(run_dir: Path) -> tuple[str, str]:
    """(env id, method) of a run directory, read leniently (incomplete runs are reported later)."""
    try:
        record = json.loads((run_dir / RUN_FILE).read_text())
        return str(record["env"]["id"]), str(record["method"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRunError(f"{run_dir / RUN_FILE}: unreadable run record ({exc})") from None


def collect_runs(path: str | Path, env_id: str | None = None, method: str | None = None) -> list[Path]:
    """The run directories of one (env, method) under ``path`` (a run directory or a benchmark output)."""
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for run_dir in find_runs(path):
        groups[_run_group(run_dir)].append(run_dir)
    if not groups:
        raise SubmissionError(f"{path}: no run directories (no {RUN_FILE}) found")
    selected = {
        key: dirs
        for key, dirs in groups.items()
        if (env_id is None or key[0] == env_id) and (method is None or key[1] == method)
    }
    if len(selected) != 1:
        available = ", ".join(f"{e} {m} ({len(d)} runs)" for (e, m), d in sorted(groups.items()))
        what = "nothing matches" if not selected else "several (env, method) groups match"
        raise SubmissionError(f"{path}: {what}; pick one with --env and --method. Available: {available}")
    return sorted(next(iter(selected.values())))


def _rounded(values: Any, decimals: int) -> Any:
    if values is None:
        return None
    if isinstance(values, list):
        return [_rounded(v, decimals) for v in values]
    if not math.isfinite(float(values)):
        return None
    return round(float(values), decimals)


def _preference(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "weights": [float(w) for w in entry["weights"]],
        "sequences": list(entry["sequences"]),
        "rewards": _rounded(entry["rewards"], REWARD_DECIMALS),
        "valid": list(entry["valid"]),
        "judge_rewards": _rounded(entry.get("judge_rewards"), REWARD_DECIMALS),
        "logprobs": _rounded(entry.get("logprobs"), LOGPROB_DECIMALS),
        "prior_logprobs": _rounded(entry.get("prior_logprobs"), LOGPROB_DECIMALS),
        "contexts": entry.get("contexts"),
    }


def _compute(record: dict[str, Any]) -> dict[str, Any]:
    compute = dict(record.get("compute") or {})
    for key in ("oracle_calls", "sampled_tokens", "wall_seconds"):
        compute.setdefault(key, None)
    return compute


def _read_seed(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    record = read_run(run_dir)
    evaluation = read_evaluation(run_dir)
    for key in ("method", "seed"):
        if record.get(key) != evaluation.get(key):
            raise SubmissionError(
                f"{run_dir}: run.json says {key}={record.get(key)!r} but the evaluation says {evaluation.get(key)!r}"
            )
    return record, evaluation


def _check_consistent(runs: list[tuple[Path, dict[str, Any], dict[str, Any]]]) -> None:
    """Same env (id, version, kwargs), method and config in every run; distinct seeds."""
    first_dir, first, first_eval = runs[0]
    seen: dict[int, Path] = {}
    for run_dir, record, evaluation in runs:
        for what, a, b in (
            ("env", evaluation["env"], first_eval["env"]),
            ("method", record["method"], first["method"]),
            ("config", record.get("config"), first.get("config")),
            ("objective_names", evaluation["objective_names"], first_eval["objective_names"]),
        ):
            if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
                raise SubmissionError(f"{run_dir} and {first_dir} have different {what}; submit them separately")
        seed = record["seed"]
        if seed in seen:
            raise SubmissionError(f"{run_dir} and {seen[seed]} are both seed {seed}; each seed may appear once")
        seen[seed] = run_dir


def make_submission(
    run_dirs: list[Path], name: str, description: str = "", code_url: str | None = None
) -> dict[str, Any]:
    """The submission record (schema version 1) of the runs of one (env, method)."""
    import morbench

    runs = [(d, *_read_seed(d)) for d in run_dirs]
    _check_consistent(runs)
    runs.sort(key=lambda item: item[1]["seed"])
    _, first, first_eval = runs[0]
    commits = {record.get("commit") for _, record, _ in runs}
    versions = {(record.get("hardware") or {}).get("morbench") for _, record, _ in runs}
    env = {key: first_eval["env"][key] for key in ("id", "name", "version", "entry_point", "kwargs")}
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "description": description,
        "code_url": code_url,
        "method": first["method"],
        "env": env,
        "objective_names": list(first_eval["objective_names"]),
        "morbench": {
            "version": versions.pop() if len(versions) == 1 and None not in versions else morbench.__version__,
            "commit": commits.pop() if len(commits) == 1 else None,
        },
        "config": first.get("config") or {},
        "protocol": first_eval.get("protocol"),
        "seeds": [
            {
                "seed": record["seed"],
                "created": record.get("created"),
                "commit": record.get("commit"),
                "compute": _compute(record),
                "hardware": record.get("hardware") or {},
                "preferences": [_preference(e) for e in evaluation["preferences"]],
            }
            for run_dir, record, evaluation in runs
        ],
    }


def _existing_names(folder: Path) -> dict[str, Path]:
    """Submission slugs already in an env folder (from the names inside the files)."""
    names: dict[str, Path] = {}
    if not folder.is_dir():
        return names
    for path in find_submissions(folder):
        try:
            names[submission_slug(str(read_submission(path).get("name", "")))] = path
        except SubmissionError:
            continue
    return names


def submit(
    path: str | Path,
    name: str,
    out_dir: str | Path,
    description: str = "",
    code_url: str | None = None,
    env_id: str | None = None,
    method: str | None = None,
    force: bool = False,
) -> Path:
    """Build, validate (schema and re-scoring) and atomically write ``<out_dir>/<env-stem>/<slug>.json.gz``."""
    run_dirs = collect_runs(path, env_id, method)
    submission = make_submission(run_dirs, name, description, code_url)
    data = dumps_submission(submission)
    folder = Path(out_dir) / env_stem(submission["env"]["id"])
    target = folder / f"{submission_slug(name)}{SUBMISSION_SUFFIXES[0]}"
    clash = _existing_names(folder).get(submission_slug(name))
    if clash is not None and not force:
        raise SubmissionError(
            f"{clash}: a submission named {name!r} already exists for {submission['env']['id']}; "
            "pass --force to replace it"
        )
    if len(data) > MAX_FILE_BYTES:
        raise SubmissionError(
            f"{target}: the submission would be {len(data)} bytes, over the limit of {MAX_FILE_BYTES}; "
            "evaluate with the protocol's sample count"
        )
    # validate exactly the bytes that will be written
    validate_submission(parse_submission(data, str(target), gzipped=True), str(target), TaskCache())
    atomic_write_bytes(target, data)
    if clash is not None and clash != target:
        clash.unlink()  # the same name stored as plain .json before
    return target
