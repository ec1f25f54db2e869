"""Crash-safe, checksummed checkpoints: nested training state -> one safetensors file + one JSON file.

Tensors (weights, optimizer moments, RNG states) go to ``tensors.safetensors``; everything else (counters, the
oracle cache, the learning curve, Python ints/floats/strings) to ``state.json``; ``checksums.json`` holds the
SHA-256 of both. A checkpoint is written into ``checkpoint.tmp/`` and renamed over ``checkpoint/`` only when
complete, so a ``kill -9`` at any moment leaves either the previous or the new checkpoint, never a half-written
one. Loading verifies both checksums before anything is parsed: a flipped bit, a truncated file or a hand edit
raises :class:`~morbench.errors.CheckpointError` naming the file, and nothing is restored. No pickle anywhere.

Data that only grows (the oracle's cache) is not re-serialised by every checkpoint: an :class:`AppendLog` appends
the records added since the last checkpoint to a JSON-lines file, the checkpoint pins the file's valid prefix
(entries, bytes, SHA-256) in ``state.json`` and holds a hard link to it (``save_checkpoint(..., links=...)``), so a
checkpoint costs the new records, not the whole history, and stays self-contained.
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

__all__ = [
    "CHECKPOINT_FORMAT",
    "AppendLog",
    "checkpoint_source",
    "load_checkpoint",
    "pack",
    "save_checkpoint",
    "unpack",
]

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


def save_checkpoint(directory: str | Path, state: dict[str, Any], links: tuple[Path, ...] = ()) -> None:
    """Write ``state`` as the checkpoint ``directory`` (atomically replacing the previous one), with a hard link
    (or, where the file system has none, a copy) to each file of ``links`` under its own name."""
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
    for path in links:
        try:
            os.link(path, tmp / path.name)
        except OSError:
            shutil.copyfile(path, tmp / path.name)
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
    source = checkpoint_source(directory)
    return None if source is None else _load_verified(source)


def checkpoint_source(directory: str | Path) -> Path | None:
    """The directory :func:`load_checkpoint` reads: ``directory``, its ``.old`` fallback, or None (no checkpoint)."""
    directory = Path(directory)
    old = directory.with_name(directory.name + ".old")
    if directory.exists() or directory.is_symlink():
        return directory
    if old.exists():
        return old
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


class AppendLog:
    """A JSON-lines file that only grows; :meth:`pin` names its valid prefix (entries, bytes, SHA-256).

    The first :meth:`append` of a log that was not restored starts the file afresh (a stale file from a run
    started over is overwritten); :meth:`restore` reads a pinned prefix back from a checkpoint's link, verifies it
    and continues the live file from exactly there.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries = 0
        self.bytes = 0
        self._hash = hashlib.sha256()
        self._open = False  # whether self.path holds this log's prefix

    def append(self, records: list[Any]) -> None:
        """Append ``records`` (one JSON line each) and sync the file to disk."""
        data = b"".join(json.dumps(record, allow_nan=True).encode() + b"\n" for record in records)
        if data or not self._open:
            with open(self.path, "ab" if self._open else "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        self._open = True
        self._hash.update(data)
        self.bytes += len(data)
        self.entries += len(records)

    def pin(self) -> dict[str, Any]:
        """What a checkpoint records of this log: its file name and the valid prefix."""
        return {"file": self.path.name, "entries": self.entries, "bytes": self.bytes, "sha256": self._hash.hexdigest()}

    def restore(self, checkpoint: Path, pin: Any) -> list[Any]:
        """The records of the prefix ``pin`` names, read from the link in ``checkpoint`` and verified; the live file
        becomes exactly that prefix. Raises :class:`CheckpointError` naming the file when anything differs."""
        if not isinstance(pin, dict) or pin.get("file") != self.path.name:
            raise _damaged(checkpoint / STATE_FILE, f"does not pin the log {self.path.name} (it pins {pin!r})")
        source = checkpoint / self.path.name
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise _damaged(source, f"unreadable ({exc.strerror or exc})") from None
        size = pin.get("bytes")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(data):
            raise _damaged(source, f"holds {len(data)} bytes, fewer than the {size!r} the checkpoint pins")
        prefix = data[:size]
        if hashlib.sha256(prefix).hexdigest() != pin.get("sha256"):
            raise _damaged(source, "SHA-256 of its pinned prefix does not match the checkpoint (modified or corrupted)")
        try:
            records = [json.loads(line) for line in prefix.splitlines()]
        except ValueError as exc:
            raise _damaged(source, f"not JSON lines ({exc})") from None
        if len(records) != pin.get("entries"):
            raise _damaged(source, f"holds {len(records)} records in its pinned prefix, not {pin.get('entries')!r}")
        tmp = self.path.with_name(self.path.name + ".tmp")
        _write(tmp, prefix)
        os.replace(tmp, self.path)  # a new file: the checkpoint's link keeps its own copy of the prefix
        self._hash = hashlib.sha256(prefix)
        self.bytes, self.entries, self._open = size, len(records), True
        return records
