"""The exact (non-learned) objectives of CNS-v1 and CNS-MPO-v1: per-molecule RDKit properties and their maps to [0, 1].

Every property here is a closed-form RDKit computation (no model, no fitted parameter), so the training oracle and
the judge share it, and the tests compare each one with RDKit called directly. Like
:mod:`morbench.envs.cns.featurize`, this module imports only RDKit and NumPy, so the oracle's worker processes
start fast; :class:`V1Molecule` is the picklable per-molecule function those workers run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import Descriptors, rdFingerprintGenerator, rdMolDescriptors

from morbench.envs.cns.featurize import FeatureSpec, MoleculeRecord, process_smiles

rdBase.DisableLog("rdApp.*")

__all__ = [
    "ESOL_COEFFICIENTS",
    "OBJECTIVES_V1",
    "PROPERTIES",
    "REFERENCE_DRUGS",
    "V1Molecule",
    "average_mol_weight",
    "esol_log_solubility",
    "reference_similarity",
    "similarity_objective",
    "solubility_objective",
]

# Delaney (2004), J. Chem. Inf. Comput. Sci. 44:1000, the published ESOL equation:
# log S (mol/L) = 0.16 - 0.63 clogP - 0.0062 MW + 0.066 RB - 0.74 AP
ESOL_COEFFICIENTS = {
    "intercept": 0.16,
    "logp": -0.63,
    "mw": -0.0062,
    "rotatable_bonds": 0.066,
    "aromatic_proportion": -0.74,
}

# Reference non-CNS drugs for the GuacaMol-style similarity objective (Tanimoto on 2048-bit ECFP4 = Morgan radius 2)
REFERENCE_DRUGS = {
    # imatinib (Gleevec): a large, polar type-II kinase inhibitor, P-gp substrate with poor brain penetration
    "imatinib": "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
}

_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
_REFERENCE_FPS: dict[str, Any] = {}


def average_mol_weight(mol: Chem.Mol) -> float:
    """The average molecular weight (``Descriptors.MolWt``, defined by RDKit at import time, so untyped)."""
    return float(Descriptors.MolWt(mol))  # type: ignore[attr-defined]


def esol_log_solubility(mol: Chem.Mol) -> float:
    """Delaney's ESOL estimate of log10 aqueous solubility (mol/L) with RDKit inputs.

    clogP is Crippen's logP (``Crippen.MolLogP``, i.e. ``CalcCrippenDescriptors(mol)[0]``), MW the average molecular weight (``Descriptors.MolWt``), RB the
    rotatable bonds (``rdMolDescriptors.CalcNumRotatableBonds``) and AP the aromatic proportion (aromatic heavy
    atoms / heavy atoms). The coefficients are Delaney's published ones, not refitted.
    """
    heavy = mol.GetNumHeavyAtoms()
    aromatic = sum(1 for atom in mol.GetAtoms() if atom.GetIsAromatic() and atom.GetAtomicNum() > 1)
    c = ESOL_COEFFICIENTS
    return float(
        c["intercept"]
        + c["logp"] * rdMolDescriptors.CalcCrippenDescriptors(mol)[0]
        + c["mw"] * average_mol_weight(mol)
        + c["rotatable_bonds"] * rdMolDescriptors.CalcNumRotatableBonds(mol)
        + c["aromatic_proportion"] * (aromatic / heavy if heavy else 0.0)
    )


def reference_similarity(mol: Chem.Mol, reference: str) -> float:
    """Tanimoto similarity of 2048-bit ECFP4 (Morgan radius 2) fingerprints to a drug of :data:`REFERENCE_DRUGS`."""
    if reference not in _REFERENCE_FPS:
        _REFERENCE_FPS[reference] = _MORGAN.GetFingerprint(Chem.MolFromSmiles(REFERENCE_DRUGS[reference]))
    return float(DataStructs.TanimotoSimilarity(_MORGAN.GetFingerprint(mol), _REFERENCE_FPS[reference]))


# raw per-molecule properties a V1 oracle can ask the workers for, by name
PROPERTIES: dict[str, Callable[[Chem.Mol], float]] = {
    "esol_log_s": esol_log_solubility,
    "sim_imatinib": lambda mol: reference_similarity(mol, "imatinib"),
    "tpsa": rdMolDescriptors.CalcTPSA,
}


@dataclasses.dataclass(frozen=True)
class V1Molecule:
    """The per-molecule work of a V1 oracle (picklable, run in the pool's workers).

    Returns :func:`~morbench.envs.cns.featurize.process_smiles`'s record (canonical SMILES, QED, SA, the BBB model's
    fingerprint and descriptors) with the raw values of ``properties`` appended to its ``descriptors``; the
    oracle splits them off again. The properties are computed on the molecule re-parsed from its canonical
    SMILES, so they depend only on the cache key.
    """

    properties: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [name for name in self.properties if name not in PROPERTIES]
        if unknown:
            raise ValueError(f"unknown properties {unknown}; known: {sorted(PROPERTIES)}")

    def __call__(self, smiles: str, spec: FeatureSpec) -> MoleculeRecord:
        record = process_smiles(smiles, spec)
        if record.canonical is None or record.error is not None:
            return record
        try:
            mol = Chem.MolFromSmiles(record.canonical)
            values = tuple(float(PROPERTIES[name](mol)) for name in self.properties)
        except Exception as exc:
            return MoleculeRecord(
                record.canonical, f"RDKit failed while scoring {record.canonical!r}: {type(exc).__name__}: {exc}"
            )
        return record._replace(descriptors=record.descriptors + values)


SOLUBILITY_RANGE = (-6.0, 0.0)  # ESOL log S mapped linearly to [0, 1]: 1 umol/L -> 0, 1 mol/L and above -> 1
SIMILARITY_FULL = 0.5  # ECFP4 Tanimoto at which imatinib_likeness reaches 1 (an analogue-series level)


def solubility_objective(log_s: np.ndarray | float) -> np.ndarray:
    """``(log S + 6) / 6`` clipped to [0, 1]: 0 at 1 umol/L or less, 1 at 1 mol/L or more (ESOL log S)."""
    low, high = SOLUBILITY_RANGE
    return np.clip((np.asarray(log_s, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def similarity_objective(tanimoto: np.ndarray | float) -> np.ndarray:
    """``min(1, Tanimoto / 0.5)``: GuacaMol-style clipped similarity to the reference drug."""
    return np.clip(np.asarray(tanimoto, dtype=np.float64) / SIMILARITY_FULL, 0.0, 1.0)


# objective name -> (raw property it needs from the worker, or None for QED/SA/BBB, which every record holds)
OBJECTIVES_V1: dict[str, str | None] = {
    "qed": None,
    "sa": None,
    "bbb": None,
    "solubility": "esol_log_s",
    "imatinib_likeness": "sim_imatinib",
}
