"""The run directory format, defined once: what training and evaluation write and what the scorer reads.

A run directory holds one (method, env, seed)::

    run.json              written last, atomically; "status": "complete" marks a finished run
    evaluation.json.gz    raw evaluation samples per preference (format ``morbench-evaluation/1``)
    curve.jsonl           learning curve, one JSON object per PPO iteration (optional)
    checkpoint/           resumable training state (optional)
    <method outputs>      final policy, or experts + interpolation recipe

``evaluation.json.gz`` holds, for every preference of the grid, the sampled sequences, the training-oracle
reward vectors, validity, judge reward vectors, and (where known) the policy's and the prior's sequence
log-probabilities. Every metric the scorer reports is recomputed from these raw samples.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from morbench.errors import InvalidRunError

RUN_FORMAT = "morbench-run/1"
EVALUATION_FORMAT = "morbench-evaluation/1"
RUN_FILE = "run.json"
EVALUATION_FILE = "evaluation.json.gz"
CURVE_FILE = "curve.jsonl"

__all__ = [
    "EVALUATION_FILE",
    "EVALUATION_FORMAT",
    "RUN_FILE",
    "RUN_FORMAT",
    "atomic_write_bytes",
    "atomic_write_json",
    "find_runs",
    "hardware_info",
    "read_evaluation",
    "read_run",
    "validate_evaluation",
    "write_evaluation",
    "write_run",
]


def hardware_info() -> dict[str, Any]:
    """What the run used: CPU model and cores, accelerator, library versions."""
    import torch

    import morbench

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "morbench": morbench.__version__,
        "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def git_commit() -> str | None:
    """The commit of the morbench checkout, if it is one."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n").encode())


def _clean(value: Any) -> Any:
    """JSON-ready copy: numpy to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_evaluation(run_dir: str | Path, evaluation: dict[str, Any]) -> Path:
    """Validate and write ``evaluation.json.gz`` atomically."""
    evaluation = _clean({"format": EVALUATION_FORMAT, **evaluation})
    validate_evaluation(evaluation, source="evaluation to write")
    path = Path(run_dir) / EVALUATION_FILE
    atomic_write_bytes(path, gzip.compress(json.dumps(evaluation, allow_nan=False).encode(), mtime=0))
    return path


def write_run(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``run.json`` last: its ``status`` says whether the run directory is complete."""
    record = _clean(
        {
            "format": RUN_FORMAT,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "hardware": hardware_info(),
            **record,
        }
    )
    path = Path(run_dir) / RUN_FILE
    atomic_write_json(path, record)
    return path


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise InvalidRunError(f"{path}: missing; this is not a morbench run directory (or the run never finished)")
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidRunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise InvalidRunError(
            f"{path}: format {record.get('format') if isinstance(record, dict) else None!r} is not {RUN_FORMAT!r}"
        )
    if record.get("status") != "complete":
        raise InvalidRunError(
            f"{path}: status is {record.get('status')!r}; the run did not complete "
            f"(resume it with `morbench train ... --resume`)"
        )
    return record


def read_evaluation(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / EVALUATION_FILE
    if not path.is_file():
        raise InvalidRunError(f"{path}: missing; evaluate the run first")
    try:
        evaluation = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, json.JSONDecodeError, gzip.BadGzipFile) as exc:
        raise InvalidRunError(f"{path}: not a gzipped JSON file ({exc})") from None
    validate_evaluation(evaluation, source=str(path))
    return evaluation


def validate_evaluation(evaluation: Any, source: str) -> None:
    """Structural checks of an evaluation record; every message names ``source`` and the problem."""

    def fail(problem: str) -> None:
        raise InvalidRunError(f"{source}: {problem}")

    if not isinstance(evaluation, dict):
        fail("not a JSON object")
    if evaluation.get("format") != EVALUATION_FORMAT:
        fail(f"format {evaluation.get('format')!r} is not {EVALUATION_FORMAT!r}")
    for key in ("env", "method", "seed", "objective_names", "preferences"):
        if key not in evaluation:
            fail(f"missing key {key!r}")
    names = evaluation["objective_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        fail("objective_names must be a non-empty list of strings")
    k = len(names)
    env = evaluation["env"]
    if not isinstance(env, dict) or not isinstance(env.get("id"), str) or not isinstance(env.get("version"), int):
        fail("env must record at least 'id' and 'version'")
    preferences = evaluation["preferences"]
    if not isinstance(preferences, list) or not preferences:
        fail("preferences must be a non-empty list")
    for p, entry in enumerate(preferences):
        where = f"preferences[{p}]"
        if not isinstance(entry, dict):
            fail(f"{where} is not an object")
        weights = entry.get("weights")
        if not isinstance(weights, list) or len(weights) != k:
            fail(f"{where}.weights must list {k} numbers (one per objective), got {weights!r}")
        sequences = entry.get("sequences")
        if not isinstance(sequences, list) or not sequences or not all(isinstance(s, str) for s in sequences):
            fail(f"{where}.sequences must be a non-empty list of strings")
        n = len(sequences)
        for field, width in (("rewards", k), ("judge_rewards", k)):
            rows = entry.get(field)
            if rows is None and field == "judge_rewards":
                continue
            if not isinstance(rows, list) or len(rows) != n:
                fail(
                    f"{where}.{field} must have one row per sequence ({n}), got {len(rows) if isinstance(rows, list) else rows!r}"
                )
            for i, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != width:
                    fail(f"{where}.{field}[{i}] must have {width} values (one per objective), got {row!r}")
                if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in row):
                    fail(f"{where}.{field}[{i}] contains a NaN, infinite or non-numeric reward: {row!r}")
        valid = entry.get("valid")
        if not isinstance(valid, list) or len(valid) != n or not all(isinstance(v, bool) for v in valid):
            fail(f"{where}.valid must be a list of {n} booleans")
        for field in ("logprobs", "prior_logprobs"):
            values = entry.get(field)
            if values is None:
                continue
            if not isinstance(values, list) or len(values) != n:
                fail(f"{where}.{field} must have one value per sequence ({n})")
        contexts = entry.get("contexts")
        if contexts is not None and (not isinstance(contexts, list) or len(contexts) != n):
            fail(f"{where}.contexts must have one context key per sequence ({n})")


def find_runs(root: str | Path) -> list[Path]:
    """Run directories under ``root`` (itself included) that have a ``run.json``."""
    root = Path(root)
    if not root.exists():
        raise InvalidRunError(f"{root}: no such directory")
    return sorted(p.parent for p in root.rglob(RUN_FILE))


def remove_tree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
