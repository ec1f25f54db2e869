"""``morbench submit``: gather the run directories of one (env, method), check them, write one submission file."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from morbench.errors import BoardNotFoundError, InvalidRunError, SubmissionError, SubmissionNameError
from morbench.leaderboard.names import name_clash_message, names_clash, normalize_name, same_name, shown
from morbench.leaderboard.schema import (
    MAX_FILE_BYTES,
    SCHEMA_VERSION,
    SUBMISSION_SUFFIXES,
    check_name,
    dumps_submission,
    env_stem,
    parse_submission,
    read_submission,
    submission_slug,
)
from morbench.leaderboard.validate import TaskCache, find_submissions, validate_submission
from morbench.runs import RUN_FILE, atomic_write_bytes, find_runs, read_evaluation, read_run

__all__ = ["BOARD_DIR", "collect_runs", "find_board", "make_submission", "submit"]

BOARD_DIR = "leaderboard"  # the board's folder name, found from the current directory (see find_board)
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
    if evaluation.get("decoding_override") is not None:
        raise SubmissionError(
            f"{run_dir}: evaluated with a decoding override {evaluation['decoding_override']} (a study-only "
            "evaluation), not the protocol's decoding; submit the run's protocol evaluation instead"
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


_RUN_RECORD_FILES = ("run.json", "evaluation.json.gz", "curve.jsonl", ".morbench.lock")


def _saved_files(run_dir: Path) -> dict[str, str]:
    """sha256 of every file a run saved besides its records (model folders), relative to the run directory."""
    from morbench.serving import file_sha256

    return {
        p.relative_to(run_dir).as_posix(): file_sha256(p)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name not in _RUN_RECORD_FILES and "checkpoint" not in p.relative_to(run_dir).parts
    }


def baseline_provenance(runs: list[tuple[Path, dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """How ``morbench.baselines.run_method`` re-creates these runs, and the sha256 of what each run saved.

    Runs of other methods (``morbench.evaluate`` on any policy) get ``{"kind": "samples"}``: unranked until the
    submitter declares policy artifacts (see SUBMITTING.md).
    """
    from morbench.baselines import METHODS
    from morbench.registry import spec

    _, first, first_eval = runs[0]
    if first["method"] not in METHODS:
        return {"kind": "samples"}
    budgets, overrides = set(), set()
    for _, record, _ in runs:
        identity = (record.get("identity") or {}).get("fields") or {}
        budget = identity.get("budget") or (record.get("compute") or {}).get("budget") or {}
        kept = {k: budget.get(k) for k in ("sampled_tokens", "oracle_calls")}
        if budget.get("convention") is not None:
            kept["convention"] = budget["convention"]
        budgets.add(json.dumps(kept, sort_keys=True))
        if "env_kwargs" in identity:
            kwargs = identity["env_kwargs"] or {}
        else:
            registered = dict(spec(record["env"]["id"]).kwargs)
            kwargs = {k: v for k, v in record["env"]["kwargs"].items() if registered.get(k, object()) != v}
        overrides.add(json.dumps(kwargs, sort_keys=True))
    if len(budgets) != 1 or len(overrides) != 1:
        raise SubmissionError("the runs were made with different budgets or env kwargs; submit them separately")
    identity = (first.get("identity") or {}).get("fields") or {}
    convention = identity.get("compute_convention") or (identity.get("budget") or {}).get("convention")
    provenance: dict[str, Any] = {
        "kind": "baseline",
        "method": first["method"],
        "config": first.get("config") or {},
        "budget": json.loads(budgets.pop()),
        "env_kwargs": json.loads(overrides.pop()),
        "eval_samples": len(first_eval["preferences"][0]["sequences"]),
        "morbench_version": str((first.get("hardware") or {}).get("morbench") or "unknown"),
        "artifacts": [
            {"seed": record["seed"], "outputs": record.get("outputs") or {}, "files": _saved_files(run_dir)}
            for run_dir, record, _ in runs
        ],
    }
    if convention is not None:
        provenance["compute_convention"] = convention
    return provenance


def make_submission(
    run_dirs: list[Path],
    name: str,
    description: str = "",
    code_url: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The submission record (schema version 2) of the runs of one (env, method), provenance included."""
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
        "provenance": provenance if provenance is not None else baseline_provenance(runs),
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


def find_board(start: str | Path | None = None) -> Path:
    """The leaderboard folder, found from ``start`` (default: the current directory) as git finds ``.git``.

    The first of ``start`` and its parents that holds ``leaderboard/submissions/`` gives ``<it>/leaderboard``;
    a ``leaderboard`` folder with ``submissions/`` on the way up is the board itself (running inside it). Never
    the installed package's location: a ``pip install -e`` checkout is not where another project's board lives.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if folder.name == BOARD_DIR and (folder / "submissions").is_dir():
            return folder
        if (folder / BOARD_DIR / "submissions").is_dir():
            return folder / BOARD_DIR
    raise BoardNotFoundError(
        f"no leaderboard found: neither {here} nor any folder above it holds {BOARD_DIR}/submissions/; run this in a "
        "clone of the morbench repository (or of your own board), or pass --board DIR (the folder holding "
        "submissions/)"
    )


def _stem(path: Path) -> str:
    return next((path.name[: -len(s)] for s in SUBMISSION_SUFFIXES if path.name.endswith(s)), path.name)


def _existing_entries(folder: Path) -> list[tuple[Path, str | None]]:
    """Every file in an env folder with the name inside it (None where the file cannot be read as a submission)."""
    if not folder.is_dir():
        return []
    entries: list[tuple[Path, str | None]] = []
    for path in find_submissions(folder):
        try:
            name = read_submission(path).get("name")
        except SubmissionError:
            name = None
        entries.append((path, name if isinstance(name, str) else None))
    return entries


def _check_out_dir(out_dir: Path) -> None:
    """The submissions folder is a folder (or can be created as one): checked before any run is read."""
    for folder in (out_dir, *out_dir.parents):
        if folder.is_dir():
            _check_writable(folder, out_dir)
            return
        if folder.exists() or folder.is_symlink():
            what = "is a file" if folder.is_file() else "is not a directory"
            raise SubmissionError(
                f"{out_dir}: cannot write submissions there: {folder} {what}; pass a folder (--out-dir DIR or "
                "--board DIR)"
            )


def _check_writable(folder: Path, out_dir: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SubmissionError(
            f"{out_dir}: cannot write submissions there: {folder} is not writable by this user; fix its permissions "
            "or pass another folder (--out-dir DIR or --board DIR)"
        )


def _check_target(folder: Path, target: Path, name: str, env_id: str, force: bool) -> list[Path]:
    """Refuse to write unless the path is free, or ``force`` and what is there is the same submission.

    Returns the files the new one replaces. Anything at the target path (readable or not) needs ``force``; a
    readable file whose name is the same (up to case) or has the same slug needs ``force``; a file whose name
    merely looks the same (:func:`~morbench.leaderboard.names.names_clash`) is refused even with ``force``.
    """
    if folder.exists() and not folder.is_dir():
        raise SubmissionError(f"{folder}: exists and is not a directory; remove it or pass another --out-dir")
    if folder.is_dir():
        _check_writable(folder, folder.parent)
    replaced: list[Path] = []
    if target.exists() or target.is_symlink():
        if target.is_dir():
            raise SubmissionError(f"{target}: a directory is in the way of the submission file; remove it")
        if not force:
            present = dict(_existing_entries(folder)).get(target)
            what = (
                f"a submission named {shown(present)}" if present is not None else "a file (not a readable submission)"
            )
            raise SubmissionError(
                f"{target}: {what} already exists at this submission's path (for {env_id}); pass --force to replace it"
            )
        replaced.append(target)
    slug = submission_slug(name)
    for path, other in _existing_entries(folder):
        if path == target:
            continue
        if other is None:  # unreadable: its file name is all there is to compare
            if _stem(path) != slug:
                continue
        elif not names_clash(name, other):
            continue
        elif not (same_name(name, other) or submission_slug(other) == slug):
            raise SubmissionNameError(name_clash_message(name, "--name", other, str(path), env_id))
        if not force:
            raise SubmissionError(
                f"{path}: a submission named {shown(other) if other is not None else repr(slug)} already exists for "
                f"{env_id}; pass --force to replace it"
            )
        replaced.append(path)
    return replaced


def submit(
    path: str | Path,
    name: str,
    out_dir: str | Path,
    description: str = "",
    code_url: str | None = None,
    env_id: str | None = None,
    method: str | None = None,
    force: bool = False,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Build, validate (schema and re-scoring) and atomically write ``<out_dir>/<env-stem>/<slug>.json.gz``.

    The name (NFKC-normalised, see :mod:`morbench.leaderboard.names`) and every output path are checked before
    the runs are read and re-scored; the file is written with mode 0644.
    """
    name = normalize_name(name)
    check_name(name, "--name")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    run_dirs = collect_runs(path, env_id, method)
    group_env = _run_group(run_dirs[0])[0]
    folder = out_dir / env_stem(group_env)
    target = folder / f"{submission_slug(name)}{SUBMISSION_SUFFIXES[0]}"
    _check_target(folder, target, name, group_env, force)  # before the expensive part
    submission = make_submission(run_dirs, name, description, code_url, provenance)
    if submission["env"]["id"] != group_env:
        raise SubmissionError(
            f"{run_dirs[0]}: run.json names env {group_env} but the evaluation says {submission['env']['id']}"
        )
    data = dumps_submission(submission)
    if len(data) > MAX_FILE_BYTES:
        raise SubmissionError(
            f"{target}: the submission would be {len(data)} bytes, over the limit of {MAX_FILE_BYTES}; "
            "evaluate with the protocol's sample count"
        )
    # validate exactly the bytes that will be written
    validate_submission(parse_submission(data, str(target), gzipped=True), str(target), TaskCache())
    replaced = _check_target(folder, target, name, group_env, force)  # again: the folder may have changed meanwhile
    atomic_write_bytes(target, data)
    for old in replaced:
        if old != target:
            old.unlink()  # the same name stored under another file name (plain .json) before
    return target
