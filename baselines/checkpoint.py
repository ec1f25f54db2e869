"""Crash-safe, checksummed checkpoints: nested training state -> one safetensors file + one JSON file.

Tensors (weights, optimizer moments, RNG states) go to ``tensors.safetensors``; everything else (counters, the
oracle cache, the learning curve, Python ints/floats/strings) to ``state.json``; ``checksums.json`` holds the
SHA-256 of both. A checkpoint is written into ``checkpoint.tmp/`` and renamed over ``checkpoint/`` only when
complete, so a ``kill -9`` at any moment leaves either the previous or the new checkpoint, never a half-written
one. Loading verifies both checksums before anything is parsed: a flipped bit, a truncated file or a hand edit
raises :class:`~morbench.errors.CheckpointError` naming the file, and nothing is restored. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from morbench.errors import CheckpointError

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "pack", "save_checkpoint", "unpack"]

STATE_FILE, TENSOR_FILE, CHECKSUM_FILE = "state.json", "tensors.safetensors", "checksums.json"
CHECKPOINT_FORMAT = "morbench-checkpoint/1"


def pack(obj: Any, tensors: dict[str, torch.Tensor], path: str = "t") -> Any:
    """Replace tensors in a nested structure by references, collecting them in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        name = f"{path}"
        tensors[name] = obj.detach().cpu().clone().contiguous()  # clone: tied weights must not share memory
        return {"__tensor__": name}
    if isinstance(obj, dict):
        return {"__dict__": [[key, pack(value, tensors, f"{path}.{key}")] for key, value in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {
            "__list__" if isinstance(obj, list) else "__tuple__": [
                pack(value, tensors, f"{path}.{i}") for i, value in enumerate(obj)
            ]
        }
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {path}")


def unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {key: unpack(value, tensors) for key, value in obj["__dict__"]}
        if "__list__" in obj:
            return [unpack(value, tensors) for value in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(unpack(value, tensors) for value in obj["__tuple__"])
    return obj


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> None:
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory} is a file, not a checkpoint directory; delete it (or choose another --out)")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = pack(state, tensors)
    files = {TENSOR_FILE: save_tensors(tensors), STATE_FILE: json.dumps(tree, allow_nan=True).encode()}
    for name, data in files.items():
        _write(tmp / name, data)
    checksums = {"format": CHECKPOINT_FORMAT, "sha256": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}
    _write(tmp / CHECKSUM_FILE, json.dumps(checksums, indent=2).encode())
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The latest complete checkpoint, verified, or None if there is none.

    Falls back to ``<directory>.old`` only when ``<directory>`` is absent (a crash between the two renames of
    :func:`save_checkpoint`). Raises :class:`CheckpointError` for anything else that is not a verified checkpoint.
    """
    directory = Path(directory)
    old = directory.with_name(directory.name + ".old")
    if directory.exists() or directory.is_symlink():
        return _load_verified(directory)
    if old.exists():
        return _load_verified(old)
    return None


def _damaged(path: Path, problem: str) -> CheckpointError:
    checkpoint = path if path.is_dir() or not path.parent.exists() else path.parent
    return CheckpointError(
        f"{path}: {problem}; the checkpoint cannot be trusted and nothing was restored from it. "
        f"Delete {checkpoint} to start the run over (or restore an intact copy), then run again"
    )


def _load_verified(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise _damaged(directory, "is not a directory (a checkpoint is a directory of three files)")
    contents = {}
    for name in (CHECKSUM_FILE, STATE_FILE, TENSOR_FILE):
        try:
            contents[name] = (directory / name).read_bytes()
        except FileNotFoundError:
            raise _damaged(directory / name, "missing") from None
        except OSError as exc:
            raise _damaged(directory / name, f"unreadable ({exc.strerror or exc})") from None
    try:
        checksums = json.loads(contents[CHECKSUM_FILE])
        expected = checksums["sha256"]
        if checksums.get("format") != CHECKPOINT_FORMAT or not isinstance(expected, dict):
            raise ValueError(f"format is not {CHECKPOINT_FORMAT}")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, AttributeError) as exc:
        raise _damaged(directory / CHECKSUM_FILE, f"not a checksum file ({type(exc).__name__}: {exc})") from None
    for name in (STATE_FILE, TENSOR_FILE):
        actual = hashlib.sha256(contents[name]).hexdigest()
        if expected.get(name) != actual:
            raise _damaged(
                directory / name,
                f"SHA-256 {actual[:16]}... does not match the recorded {str(expected.get(name))[:16]}... "
                "(the file was modified, truncated or corrupted on disk)",
            )
    try:
        tensors = load_tensors(contents[TENSOR_FILE])
    except Exception as exc:  # safetensors raises its own SafetensorError for every malformed header
        raise _damaged(directory / TENSOR_FILE, f"not a safetensors file ({type(exc).__name__}: {exc})") from None
    try:
        tree = json.loads(contents[STATE_FILE])
        state = unpack(tree, tensors)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError) as exc:
        raise _damaged(directory / STATE_FILE, f"not a checkpoint state ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise _damaged(directory / STATE_FILE, f"holds a {type(state).__name__}, not a checkpoint state object")
    return state
