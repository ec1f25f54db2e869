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
import errno
import functools
import gzip
import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from morbench.errors import ConfigError, InvalidRunError, RunLockedError

RUN_FORMAT = "morbench-run/1"
EVALUATION_FORMAT = "morbench-evaluation/1"
RUN_FILE = "run.json"
EVALUATION_FILE = "evaluation.json.gz"
CURVE_FILE = "curve.jsonl"
LOCK_FILE = ".morbench.lock"
FILE_MODE = 0o644  # results, runs and submissions are meant to be read by others (tempfile would give 0600)
COMPUTE_COUNTERS = ("oracle_calls", "sampled_tokens", "gradient_steps", "ppo_iterations")

__all__ = [
    "EVALUATION_FILE",
    "EVALUATION_FORMAT",
    "LOCK_FILE",
    "RUN_FILE",
    "RUN_FORMAT",
    "RunLock",
    "atomic_write_bytes",
    "atomic_write_json",
    "cpu_kernels",
    "cpu_name",
    "cpus_named",
    "find_runs",
    "hardware_info",
    "read_evaluation",
    "read_run",
    "resolve_device",
    "run_identity",
    "validate_evaluation",
    "validate_run_record",
    "write_evaluation",
    "write_run",
]


DEVICE_CHOICES = "cpu (the default), cuda, cuda:N or auto"
CUDA_FIX = (
    "install a CUDA build of torch (https://pytorch.org/get-started/locally/, e.g. pip install torch --index-url "
    "https://download.pytorch.org/whl/cu128) on a machine with an NVIDIA GPU and driver, or pass --device cpu"
)


def resolve_device(device: Any = "cpu") -> Any:
    """The ``torch.device`` that ``device`` names: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA if available).

    A bad string, or a CUDA device this machine does not have, raises :class:`ConfigError` naming it and the fix.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not device.strip():
        raise ConfigError(f"device {device!r} is not one of {DEVICE_CHOICES}")
    text = device.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, sep, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (sep and not (kind == "cuda" and index.isdigit())):
        raise ConfigError(f"device {device!r} is not one of {DEVICE_CHOICES}")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: torch {torch.__version__} sees no CUDA GPU here; {CUDA_FIX}")
    if sep and int(index) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); choose one of them"
        )
    return torch.device(text)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere the platform's processor string or the architecture)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def cpu_kernels() -> dict[str, str]:
    """Which CPU computes a run's floats: its model and the instruction set torch's kernels use on it.

    Torch's CPU kernels are chosen by instruction set (AVX2, AVX512, ...) and its matrix library by CPU model, so the
    same run rounds differently on another CPU model: a CPU run is bit-exact on one model, not across models.
    """
    import torch

    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def cpu_name(cpu: dict[str, Any]) -> str:
    """A CPU of :func:`cpu_kernels` in words, e.g. ``Intel(R) Xeon(R) Processor (AVX512 kernels)``."""
    return f"{cpu.get('cpu')} ({cpu.get('cpu_capability')} kernels)"


def cpus_named(hardware: dict[str, Any]) -> list[str]:
    """The CPUs a run's ``hardware`` says it trained on, in order (:func:`cpu_name`).

    Its ``trained_on`` list where it was resumed on another CPU, else its own CPU; none for a record made before runs
    named their CPU.
    """
    cpus = hardware.get("trained_on") or [hardware]
    return [cpu_name(cpu) for cpu in cpus if isinstance(cpu, dict) and cpu.get("cpu")]


def hardware_info(device: Any = None) -> dict[str, Any]:
    """What the run used: CPU model and cores, accelerator, library versions, and the training device."""
    import torch

    import morbench

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **cpu_kernels(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "morbench": morbench.__version__,
        "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "device": str(device) if device is not None else "cpu",
    }
    if device is not None and torch.device(device).type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def describe_checkout(directory: str | Path) -> str | None:
    """``git`` HEAD of the checkout holding ``directory``; ``-dirty`` is appended when tracked files differ from it.

    None outside a checkout (or without git).
    """
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=5, cwd=directory)
        return done.stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if head and dirty else head or None


@functools.cache
def git_commit() -> str | None:
    """The commit of the morbench checkout this process runs, read once (the first run of a process pins it).

    The code a process has loaded does not change when the checkout moves on while it runs: a long study records
    the commit it started with, not a later one.
    """
    return describe_checkout(Path(__file__).resolve().parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NaN refused) with :func:`atomic_write_bytes`."""
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
    """Write ``run.json`` last: its ``status`` says whether the run directory is complete.

    ``record["device"]`` (optional: the training device) and ``record["trained_on"]`` (optional: the CPUs a resumed
    run trained on, :func:`cpu_kernels`, when there were several) are recorded under ``hardware``.
    """
    record = dict(record)
    device = record.pop("device", None)
    trained_on = record.pop("trained_on", None)
    hardware = hardware_info(device)
    if trained_on:
        hardware["trained_on"] = trained_on
    record = _clean(
        {
            "format": RUN_FORMAT,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "hardware": hardware,
            **record,
        }
    )
    path = Path(run_dir) / RUN_FILE
    atomic_write_json(path, record)
    return path


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The checked ``run.json`` of a run directory; :class:`InvalidRunError` naming what is missing or damaged."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise InvalidRunError(f"{path}: missing; this is not a morbench run directory (or the run never finished)")
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
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
    validate_run_record(record, str(path))
    return record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_run_record(record: dict[str, Any], source: str) -> None:
    """The fields of ``run.json`` that the scorer reads: env, method, seed and the compute ledger."""

    def fail(problem: str) -> NoReturn:
        raise InvalidRunError(f"{source}: {problem}; the file was edited or is damaged (re-run the run)")

    env = record.get("env")
    if not isinstance(env, dict) or not isinstance(env.get("id"), str) or not _is_int(env.get("version")):
        fail("'env' must be an object with the env's 'id' (string) and 'version' (integer)")
    if not isinstance(env.get("kwargs", {}), dict):
        fail("env.kwargs must be an object")
    if not isinstance(record.get("method"), str) or not record["method"]:
        fail(f"'method' must be a non-empty string, got {record.get('method')!r}")
    if not _is_int(record.get("seed")):
        fail(f"'seed' must be an integer, got {record.get('seed')!r}")
    compute = record.get("compute", {})
    if not isinstance(compute, dict):
        fail("'compute' must be an object")
    for key, value in compute.items():
        if key in COMPUTE_COUNTERS:
            if not _is_int(value) or value < 0:
                fail(f"compute.{key} = {value!r} must be a non-negative integer")
        elif key == "budget":
            limits = [value.get(k) for k in ("sampled_tokens", "oracle_calls")] if isinstance(value, dict) else [0]
            if not all(v is None or (_is_int(v) and v > 0) for v in limits):
                fail(f"compute.budget = {value!r} must give positive integer (or null) limits")
        elif value is not None and (not _is_number(value) or value < 0):
            fail(f"compute.{key} = {value!r} must be a non-negative number")


def read_evaluation(run_dir: str | Path, verify: bool = True) -> dict[str, Any]:
    """The run's evaluation record, checked against its task and re-scored (``verify=False``: structure only).

    With ``verify`` (the default) every reward must lie in the task's reward space, every preference of the
    task's grid must be present, and every sequence is re-scored; the recomputed rewards are returned.
    """
    path = Path(run_dir) / EVALUATION_FILE
    if not path.is_file():
        raise InvalidRunError(f"{path}: missing; evaluate the run first")
    try:
        evaluation = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, json.JSONDecodeError, gzip.BadGzipFile, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRunError(f"{path}: not a gzipped JSON file ({exc})") from None
    validate_evaluation(evaluation, source=str(path))
    run_file = Path(run_dir) / RUN_FILE
    if run_file.is_file():  # the two files of a run directory must describe the same run
        try:
            record = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            record = None
        env = record.get("env") if isinstance(record, dict) else None
        if isinstance(env, dict) and env.get("id") != evaluation["env"].get("id"):
            raise InvalidRunError(
                f"{Path(run_dir)}: run.json and evaluation.json.gz name different envs "
                f"({env.get('id')!r} vs {evaluation['env'].get('id')!r}); the run directory was edited"
            )
    if verify:
        from morbench.verification import verify_evaluation

        evaluation = verify_evaluation(evaluation, source=str(path))
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
    if not isinstance(evaluation["method"], str) or not evaluation["method"]:
        fail(f"method must be a non-empty string, got {evaluation['method']!r}")
    if not _is_int(evaluation["seed"]):
        fail(f"seed must be an integer, got {evaluation['seed']!r}")
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
        if not isinstance(weights, list) or len(weights) != k or not all(_is_number(w) for w in weights):
            fail(f"{where}.weights must list {k} numbers (finite, one per objective), got {weights!r}")
        sequences = entry.get("sequences")
        if not isinstance(sequences, list) or not sequences or not all(isinstance(s, str) for s in sequences):
            fail(f"{where}.sequences must be a non-empty list of strings")
        for i, sequence in enumerate(sequences):
            try:
                sequence.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800" in the JSON) is no text a policy wrote
                fail(f"{where}.sequences[{i}] is not valid Unicode text ({exc.reason} at character {exc.start})")
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
            if not all(v is None or _is_number(v) for v in values):
                bad = next(v for v in values if not (v is None or _is_number(v)))
                fail(f"{where}.{field} must hold numbers (or null for -inf), found {str(bad)[:40]!r}")
        contexts = entry.get("contexts")
        if contexts is not None and (
            not isinstance(contexts, list) or len(contexts) != n or not all(isinstance(c, str) for c in contexts)
        ):
            fail(f"{where}.contexts must have one context key (string) per sequence ({n})")


def run_identity(
    method: str,
    env_id: str,
    env_version: int | None,
    env_kwargs: dict[str, Any],
    config: Any,
    budget: dict[str, Any],
    seed: int,
    eval_samples: int | None,
    device: str = "cpu",
) -> dict[str, Any]:
    """What makes two runs the same run: ``{"hash": <16 hex digits>, "fields": {...}}``.

    A run directory (its checkpoint and its ``run.json``) records it; resuming or re-using the directory with
    anything else (another config, budget, seed, env version, evaluation sample count or device type) is refused.
    ``device`` is the device *type* (``cpu`` or ``cuda``: results differ between them, not between two GPUs of
    one kind); a CPU run records none, so run directories made before devices existed keep their identity.
    """
    extra = {} if device == "cpu" else {"device": device}
    fields = _clean(
        {
            **extra,
            "method": method,
            "env_id": env_id,
            "env_version": env_version,
            "env_kwargs": env_kwargs,
            "config": config,
            "budget": budget,
            "seed": seed,
            "eval_samples": eval_samples,  # None: the task's protocol count
        }
    )
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    return {"hash": digest, "fields": fields}


def identity_difference(recorded: Any, expected: dict[str, Any]) -> str:
    """A readable list of the fields in which a recorded identity differs from the expected one."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("fields"), dict):
        return "it records no run identity (written by an older morbench or edited)"
    old, new = _flatten(recorded["fields"]), _flatten(expected["fields"])
    missing = object()
    changed = [
        f"{key}: {_short(old.get(key, missing))} -> {_short(new.get(key, missing))}"
        for key in sorted(set(old) | set(new))
        if old.get(key, missing) != new.get(key, missing)
    ]
    return "; ".join(changed) if changed else f"identity hash {recorded.get('hash')} != {expected['hash']}"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"config": {"ppo": {"kl_coef": 0.05}}}`` -> ``{"config.ppo.kl_coef": 0.05}`` (non-empty dicts only)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _short(value: Any) -> str:
    text = "(absent)" if not isinstance(value, (dict, list, str, int, float, bool, type(None))) else json.dumps(value)
    return text if len(text) <= 60 else text[:60] + "..."


class RunLock:
    """An exclusive, non-blocking lock on a run (or benchmark) directory, held while a process writes to it.

    ``fcntl.flock`` on ``<directory>/.morbench.lock``: released when the process exits, even by ``kill -9``,
    so a crashed run never leaves a stale lock. A second process gets :class:`RunLockedError` at once.
    """

    def __init__(self, directory: str | Path, what: str = "run") -> None:
        self.directory = Path(directory)
        self.what = what
        self._handle: Any = None

    def __enter__(self) -> RunLock:
        import fcntl

        if self.directory.exists() and not self.directory.is_dir():
            raise InvalidRunError(f"--out {self.directory} is an existing file, not a directory; choose another --out")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = open(self.directory / LOCK_FILE, "a+")
        except OSError as exc:
            raise InvalidRunError(f"cannot create the {self.what} directory {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLockedError(
                    f"another morbench process is writing to {self.directory} (it holds {self.directory / LOCK_FILE}); "
                    f"wait for it to finish, or choose another --out"
                ) from None
            raise
        self._handle = handle
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None


def find_runs(root: str | Path) -> list[Path]:
    """Run directories under ``root`` (itself included) that have a ``run.json``."""
    root = Path(root)
    if not root.exists():
        raise InvalidRunError(f"{root}: no such directory")
    return sorted(p.parent for p in root.rglob(RUN_FILE))


def remove_tree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
