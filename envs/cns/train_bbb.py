"""Training the BBB classifiers on B3DB's measured labels with a scaffold split (builder only)."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold
from tqdm.auto import tqdm

from morbench.envs.cns.bbb import BBBModel, BBBModelConfig, feature_matrix
from morbench.envs.cns.featurize import FeatureSpec, MoleculeRecord, canonicalize_smiles
from morbench.metrics import auroc

__all__ = ["B3DBData", "TrainConfig", "b3db_path", "load_b3db", "scaffold_split", "train_bbb_model"]


def b3db_path() -> Path:
    """``B3DB/B3DB_classification.tsv`` inside the installed ``qc-b3db`` package (7,807 molecules, CC0)."""
    spec = importlib.util.find_spec("B3DB")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the builder reads B3DB from the `qc-b3db` package; install it with `pip install qc-b3db`"
        )
    path = Path(spec.submodule_search_locations[0]) / "B3DB_classification.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed qc-b3db package")
    return path


@dataclasses.dataclass
class B3DBData:
    """Unique canonical B3DB molecules with their measured label (1 = BBB+)."""

    smiles: list[str]
    labels: np.ndarray
    raw_count: int
    rejected: int  # unparsable or several fragments
    duplicates: int  # same molecule listed again with the same label
    conflicts: int  # molecules listed with both labels (dropped)


def load_b3db(path: Path | None = None) -> B3DBData:
    table = pd.read_csv(path or b3db_path(), sep="\t")
    labels_by_smiles: dict[str, set[int]] = defaultdict(set)
    order: list[str] = []
    rejected = duplicates = 0
    for smiles, label in zip(table["SMILES"], table["BBB+/BBB-"], strict=True):
        canonical, _, _ = canonicalize_smiles(str(smiles))
        if canonical is None:
            rejected += 1
            continue
        if canonical in labels_by_smiles:
            duplicates += 1
        else:
            order.append(canonical)
        labels_by_smiles[canonical].add(1 if label == "BBB+" else 0)
    kept = [s for s in order if len(labels_by_smiles[s]) == 1]
    conflicts = len(order) - len(kept)
    labels = np.array([next(iter(labels_by_smiles[s])) for s in kept], dtype=np.int64)
    return B3DBData(kept, labels, len(table), rejected, duplicates - conflicts, conflicts)


def _scaffold(smiles: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    try:
        return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
    except Exception:  # a scaffold RDKit cannot write: keep the molecule in its own group
        return smiles


def scaffold_split(
    smiles: list[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced Bemis-Murcko scaffold split: whole scaffold groups go to train/valid/test.

    Groups larger than half the test size go first (so they land in train); the rest follow in a seeded random
    order, filling train, then valid, then test.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(smiles):
        groups[_scaffold(s)].append(i)
    n = len(smiles)
    rng = np.random.default_rng(seed)
    sets = sorted(groups.values(), key=lambda g: g[0])
    big = [g for g in sets if len(g) > fractions[2] * n / 2]
    small = [g for g in sets if len(g) <= fractions[2] * n / 2]
    ordered = [big[i] for i in rng.permutation(len(big))] + [small[i] for i in rng.permutation(len(small))]
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for group in ordered:
        if len(train) + len(group) <= fractions[0] * n:
            train += group
        elif len(valid) + len(group) <= fractions[1] * n:
            valid += group
        else:
            test += group
    return np.array(sorted(train)), np.array(sorted(valid)), np.array(sorted(test))


@dataclasses.dataclass
class TrainConfig:
    """How one BBB classifier is trained (AdamW, BCE, early stopping on validation AUROC)."""

    spec: FeatureSpec
    hidden: tuple[int, ...] = (256, 64)
    dropout: float = 0.2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    max_epochs: int = 80
    patience: int = 12
    seed: int = 0


def train_bbb_model(
    records: list[MoleculeRecord],
    labels: np.ndarray,
    split: tuple[np.ndarray, np.ndarray, np.ndarray],
    config: TrainConfig,
    progress: bool = True,
    name: str = "bbb",
) -> tuple[BBBModel, dict[str, Any]]:
    """Train on ``split[0]``, keep the epoch with the best AUROC on ``split[1]``, report AUROC on ``split[2]``."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    bits, descriptors = feature_matrix(records, config.spec)
    train, valid, test = split
    mean = descriptors[train].mean(axis=0)
    std = descriptors[train].std(axis=0)
    std[std < 1e-8] = 1.0
    model_config = BBBModelConfig(config.spec, config.hidden, config.dropout, tuple(mean), tuple(std))
    model = BBBModel(model_config)
    x_bits = torch.from_numpy(bits.astype(np.float32))
    x_desc = torch.from_numpy(descriptors.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def score(rows: np.ndarray) -> float:
        return auroc(labels[rows], model.probability(bits[rows], descriptors[rows]))

    best_auroc, best_state, best_epoch, stale = -1.0, None, 0, 0
    bar = tqdm(range(config.max_epochs), desc=f"train {name}", disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        order = train[rng.permutation(len(train))]
        for start_row in range(0, len(order), config.batch_size):
            rows = torch.from_numpy(order[start_row : start_row + config.batch_size])
            loss = loss_fn(model(x_bits[rows], x_desc[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        valid_auroc = score(valid)
        bar.set_postfix(valid_auroc=f"{valid_auroc:.3f}")
        if valid_auroc > best_auroc:
            best_auroc, best_state, best_epoch, stale = valid_auroc, copy.deepcopy(model.state_dict()), epoch + 1, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    bar.close()
    assert best_state is not None, "max_epochs >= 1 keeps at least one epoch's weights"
    model.load_state_dict(best_state)
    model.eval()
    figures = {
        "train_molecules": len(train),
        "valid_molecules": len(valid),
        "test_molecules": len(test),
        "test_positive_fraction": float(labels[test].mean()),
        "best_epoch": best_epoch,
        "train_auroc": score(train),
        "valid_auroc": best_auroc,
        "test_auroc": score(test),
        "test_accuracy_at_0.5": float(
            ((model.probability(bits[test], descriptors[test]) >= 0.5) == labels[test]).mean()
        ),
        "hidden": list(config.hidden),
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "seed": config.seed,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - start,
    }
    return model, figures
