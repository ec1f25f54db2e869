"""Crash-safe checkpoints: nested training state -> one safetensors file + one JSON file, swapped in atomically.

Tensors (weights, optimizer moments, RNG states) go to ``tensors.safetensors``; everything else (counters, the
oracle cache, the learning curve, Python ints/floats/strings) to ``state.json``. A checkpoint is written into
``checkpoint.tmp/`` and renamed over ``checkpoint/`` only when complete, so a ``kill -9`` at any moment leaves
either the previous or the new checkpoint, never a half-written one. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from morbench.errors import InvalidRunError

__all__ = ["load_checkpoint", "pack", "save_checkpoint", "unpack"]

STATE_FILE, TENSOR_FILE = "state.json", "tensors.safetensors"


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


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> None:
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = pack(state, tensors)
    save_file(tensors, tmp / TENSOR_FILE)
    with open(tmp / STATE_FILE, "w") as handle:
        json.dump(tree, handle)
        handle.flush()
        os.fsync(handle.fileno())
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The latest complete checkpoint, or None. Falls back to ``.old`` if a crash hit between the renames."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / STATE_FILE).is_file() and (candidate / TENSOR_FILE).is_file():
            try:
                tree = json.loads((candidate / STATE_FILE).read_text())
                return unpack(tree, load_file(candidate / TENSOR_FILE))
            except (OSError, json.JSONDecodeError, KeyError) as exc:
                raise InvalidRunError(f"checkpoint {candidate} is unreadable ({exc}); delete it to restart") from None
    return None
