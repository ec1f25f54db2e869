"""Shipped assets: sha256 manifests that loading verifies, with errors that name the file and the rebuild command."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from morbench.errors import AssetError, MorbenchError

MANIFEST_NAME = "MANIFEST.sha256"

__all__ = [
    "MANIFEST_NAME",
    "asset_loading",
    "cpu_model",
    "read_manifest",
    "reproduction_check",
    "require_file",
    "sha256_file",
    "verify_assets",
    "verify_manifest",
    "write_manifest",
]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | Path, files: list[str] | None = None) -> Path:
    """Write ``MANIFEST.sha256`` (``sha256sum`` format, so ``sha256sum -c`` works) for ``files`` or every file."""
    directory = Path(directory)
    if files is None:
        files = sorted(
            str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_NAME
        )
    lines = [f"{sha256_file(directory / name)}  {name}" for name in sorted(files)]
    manifest = directory / MANIFEST_NAME
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def read_manifest(directory: str | Path) -> dict[str, str]:
    directory = Path(directory)
    manifest = directory / MANIFEST_NAME
    if not manifest.is_file():
        raise AssetError(f"asset manifest {manifest} is missing")
    entries = {}
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise AssetError(f"{manifest}:{number} is not a 'sha256  path' line: {line!r}")
        entries[name] = digest
    return entries


def verify_manifest(directory: str | Path, rebuild_command: str) -> None:
    """Check that the directory holds exactly the files its manifest lists, each with the listed sha256.

    Every call re-hashes the files (a few MB take milliseconds), so an edit is caught whatever its size and
    modification time. A file the manifest does not list is rejected too (an extra tokenizer file, for example,
    would silently change how the assets load), unless it sits in a subdirectory with its own manifest, which
    is then verified the same way. Raises :class:`AssetError` naming the first bad file and ``rebuild_command``.
    """
    directory = Path(directory)
    try:
        entries = read_manifest(directory)
    except AssetError as exc:
        raise AssetError(f"{exc}; rebuild the assets with `{rebuild_command}`") from None
    for name, expected in entries.items():
        path = directory / name
        if not path.is_file():
            raise AssetError(f"asset file {path} is missing; rebuild the assets with `{rebuild_command}`")
        actual = sha256_file(path)
        if actual != expected:
            raise AssetError(
                f"asset file {path} is corrupt: sha256 {actual[:12]}... does not match the manifest's "
                f"{expected[:12]}...; rebuild the assets with `{rebuild_command}` (or restore the file from git)"
            )
    _check_no_unlisted_files(directory, set(entries), rebuild_command)


def _check_no_unlisted_files(directory: Path, listed: set[str], rebuild_command: str) -> None:
    nested: set[Path] = set()
    for path in sorted(directory.rglob("*")):
        if path.is_dir() or path.name == MANIFEST_NAME:
            continue
        name = path.relative_to(directory).as_posix()
        if name in listed:
            continue
        owner = next((p for p in path.parents if p != directory and (p / MANIFEST_NAME).is_file()), None)
        if owner is not None and directory in owner.parents:
            nested.add(owner)
            continue
        raise AssetError(
            f"asset directory {directory} holds {name}, which its manifest {directory / MANIFEST_NAME} does not "
            f"list; an unlisted file can change how the assets load, so remove it (or restore the directory "
            f"from git) or rebuild the assets with `{rebuild_command}`"
        )
    for subdirectory in sorted(nested):
        verify_manifest(subdirectory, rebuild_command)


def require_file(path: str | Path, rebuild_command: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"asset file {path} is missing; rebuild the assets with `{rebuild_command}`")
    return path


def verify_assets(directory: str | Path, rebuild_command: str, required: Sequence[str] = ()) -> Path:
    """Check an env's asset directory before anything is loaded from it, and return it as a ``Path``.

    The directory must exist, hold exactly the files its manifest lists with the listed sha256 (subdirectories
    with their own manifest, such as ``prior/``, are verified the same way: :func:`verify_manifest`), and hold
    every file of ``required`` (paths relative to it, e.g. ``"prior/model.safetensors"``). Raises
    :class:`AssetError` naming the first bad file and ``rebuild_command``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AssetError(f"asset directory {directory} is missing; rebuild the assets with `{rebuild_command}`")
    verify_manifest(directory, rebuild_command)
    for name in required:
        require_file(directory / name, rebuild_command)
    return directory


@contextlib.contextmanager
def asset_loading(what: str | Path, rebuild_command: str) -> Iterator[None]:
    """Turn a failure to load verified assets (a stale manifest, a bad build) into :class:`AssetError` naming
    ``what`` and ``rebuild_command``; a :class:`MorbenchError` raised inside passes through unchanged."""
    try:
        yield
    except MorbenchError:
        raise
    except Exception as exc:
        raise AssetError(
            f"could not load {what} ({type(exc).__name__}: {exc}); rebuild the assets with `{rebuild_command}`"
        ) from exc


def cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (None where that file does not exist), for build reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def reproduction_check(
    previous: dict[str, Any], current: dict[str, Any], tolerances: dict[tuple[str, ...], float]
) -> dict[str, Any]:
    """Compare the figures at ``tolerances``' key paths in two build reports (figures missing in either are
    skipped): one row per figure with both values, its tolerance and whether it is within it."""
    rows = []
    for path, tolerance in tolerances.items():
        old, new = _figure(previous, path), _figure(current, path)
        if old is None or new is None:
            continue
        row = {"figure": ".".join(path), "previous": old, "current": new, "tolerance": tolerance}
        rows.append({**row, "ok": abs(old - new) <= tolerance})
    return {"compared": len(rows), "all_within_tolerance": all(r["ok"] for r in rows), "figures": rows}


def _figure(report: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = report
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None
