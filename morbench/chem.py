"""Shared chemistry helpers for SMILES tasks: atom-level tokenization, fingerprints, diversity."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import rdFingerprintGenerator
from transformers import PreTrainedTokenizerFast

from morbench.tokenization import build_word_level_tokenizer

# RDKit's parse errors become `reason` strings instead of stderr noise (DisableLog is missing from rdkit-stubs)
RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]

# bracket atoms, two-letter organic-subset elements, aromatic atoms, bonds, branches, ring closures (%nn or a digit)
SMILES_PATTERN = r"\[[^\]]+\]|Br|Cl|%\d{2}|[BCNOPSFIbcnops]|[=#\-\+\\/:~@?>\*\$\.\(\)]|\d"
_SMILES_RE = re.compile(SMILES_PATTERN)

__all__ = [
    "SMILES_PATTERN",
    "build_smiles_tokenizer",
    "ecfp4",
    "internal_diversity",
    "tokenize_smiles",
]


def tokenize_smiles(smiles: str) -> list[str]:
    """Split a SMILES string into atom-level tokens; raises ValueError if characters are left over."""
    tokens = _SMILES_RE.findall(smiles)
    if "".join(tokens) != smiles:
        raise ValueError(f"SMILES {smiles!r} has characters outside the SMILES token pattern")
    return tokens


def build_smiles_tokenizer(corpus: Iterable[str], min_count: int = 1) -> PreTrainedTokenizerFast:
    """An atom-level SMILES tokenizer whose vocabulary is every token seen at least ``min_count`` times."""
    counts: Counter[str] = Counter()
    for smiles in corpus:
        counts.update(tokenize_smiles(smiles))
    tokens = sorted(t for t, c in counts.items() if c >= min_count)
    return build_word_level_tokenizer(tokens, SMILES_PATTERN)


_ECFP4 = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


def ecfp4(smiles: Sequence[str]) -> list:
    """ECFP4 (Morgan radius 2, 2048 bits) bit vectors; unparsable SMILES are skipped."""
    fingerprints = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is not None:
            fingerprints.append(_ECFP4.GetFingerprint(mol))
    return fingerprints


def internal_diversity(smiles: Sequence[str]) -> float:
    """1 - mean pairwise Tanimoto similarity of ECFP4 fingerprints of the unique molecules (self-pairs excluded).

    NaN when fewer than two unique valid molecules are given.
    """
    fingerprints = ecfp4(sorted(set(smiles)))
    n = len(fingerprints)
    if n < 2:
        return float("nan")
    total = 0.0
    for i in range(n - 1):
        total += float(np.sum(DataStructs.BulkTanimotoSimilarity(fingerprints[i], fingerprints[i + 1 :])))
    pairs = n * (n - 1) / 2
    return 1.0 - total / pairs
