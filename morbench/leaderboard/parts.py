"""Leaderboard entries from runs whose weights are not kept: one-seed parts, verified when made, merged later.

A paper-scale study runs for days in sessions whose checkouts keep only what is committed: a run's weights are gone
by the time its last seed finishes, so a five-seed entry can be neither made from run folders nor verified from
their models at the end. Instead, each run's protocol evaluation becomes a **part** (a one-seed submission, schema
version 2, with the run's baseline provenance and the sha256 of its saved models) as soon as the run finishes, and
the part is verified right away from the run's own models (``morbench leaderboard verify --artifacts``): the
ledger records, per seed, the digest of the entry it re-produced (:func:`~morbench.leaderboard.verify.seed_digest`).
Parts are small (about 0.2 MB for QM9's 10 x 1,024 samples) and committed. Once every seed of a row has a part,
:func:`merge_parts` joins them into one submission; verifying it (``how="parts"``) checks each seed entry against
the digests the ledger recorded, so the merged entry is ranked without a second re-production, and any change to a
seed's samples, claims, config, budget or env makes it fall back to re-producing (and fail).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from morbench.errors import SubmissionError
from morbench.leaderboard.schema import content_sha256, dumps_submission, parse_submission
from morbench.leaderboard.verify import VerifyOutcome, entry_context, passing_record, read_ledger, verify_file
from morbench.runs import EVALUATION_FILE, RUN_FILE, atomic_write_bytes

__all__ = ["bank_part", "merge_parts", "part_is_verified"]


def part_is_verified(path: str | Path, ledger: str | Path) -> bool:
    """Whether the part at ``path`` exists and the ledger has a passing record of its exact bytes."""
    path = Path(path)
    return path.is_file() and passing_record(read_ledger(ledger), content_sha256(path.read_bytes())) is not None


def bank_part(
    run_dir: str | Path, path: str | Path, name: str, description: str, ledger: str | Path
) -> VerifyOutcome | None:
    """Write the finished run's protocol evaluation as a one-seed part and verify it from the run's models.

    The part goes to ``path``, its verdict to ``ledger``; None when there is nothing to do (already verified, or
    the run is not here).

    Raises :class:`~morbench.errors.SubmissionError` when the part does not verify (its samples were not
    re-produced from the run's models): a part that cannot be trusted is not kept.
    """
    from morbench.leaderboard.submit import make_submission

    run_dir, path = Path(run_dir), Path(path)
    if part_is_verified(path, ledger):
        return None
    if not ((run_dir / RUN_FILE).is_file() and (run_dir / EVALUATION_FILE).is_file()):
        return None  # not finished, or finished in another checkout (its weights, and so its samples, are gone)
    data = dumps_submission(make_submission([run_dir], name, description))
    atomic_write_bytes(path, data)
    outcome = verify_file(path, artifacts=run_dir, ledger=ledger)
    if not outcome.ok:
        path.unlink()
        raise SubmissionError(f"{path}: the part of {run_dir} did not verify: {outcome.record.get('message')}")
    return outcome


def merge_parts(paths: Sequence[str | Path], name: str, description: str) -> dict[str, Any]:
    """One submission named ``name`` holding the seeds of the parts at ``paths``.

    The parts must share env, method, config, protocol, budget and provenance and hold distinct seeds. Each seed
    entry and its artifacts are copied unchanged, so they keep the digests the ledger recorded for their parts.
    """
    if not paths:
        raise SubmissionError("no parts to merge")
    parts = []
    for path in paths:
        path = Path(path)
        parts.append((path, parse_submission(path.read_bytes(), str(path), gzipped=path.name.endswith(".gz"))))
    first_path, first = parts[0]
    seeds: dict[int, Path] = {}
    entries: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    for path, part in parts:
        if entry_context(part) != entry_context(first):
            raise SubmissionError(
                f"{path} and {first_path} differ in env, method, config, protocol or provenance: not one entry"
            )
        for entry in part["seeds"]:
            if entry["seed"] in seeds:
                raise SubmissionError(f"{path} and {seeds[entry['seed']]} both hold seed {entry['seed']}")
            seeds[entry["seed"]] = path
            entries.append(entry)
        artifacts += (part.get("provenance") or {}).get("artifacts") or []
    commits = {part["morbench"].get("commit") for _, part in parts}
    versions = {part["morbench"].get("version") for _, part in parts}
    merged = {
        **{k: v for k, v in first.items() if k != "seeds"},
        "name": name,
        "description": description,
        "morbench": {
            "version": versions.pop() if len(versions) == 1 else first["morbench"].get("version"),
            "commit": commits.pop() if len(commits) == 1 else None,
        },
        "seeds": sorted(entries, key=lambda e: e["seed"]),
    }
    if (first.get("provenance") or {}).get("artifacts") is not None:
        merged["provenance"] = {**first["provenance"], "artifacts": sorted(artifacts, key=lambda a: a.get("seed", -1))}
    return merged
