"""Per-molecule RDKit work of the CNS oracle: parse, canonicalize, QED, SA and BBB-model features.

This module imports only RDKit and NumPy (never torch), so oracle worker processes start fast. Everything a worker
runs is a module-level function or a small picklable object defined here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import QED, rdFingerprintGenerator, rdMolDescriptors

rdBase.DisableLog("rdApp.*")  # RDLogger.DisableLog is this function

__all__ = [
    "DESCRIPTORS",
    "FINGERPRINTS",
    "FeatureSpec",
    "MoleculeRecord",
    "SimulatedHang",
    "canonicalize_smiles",
    "featurize_mol",
    "process_smiles",
    "sa_score",
]


class MoleculeRecord(NamedTuple):
    """What a worker returns for one input string.

    ``canonical`` is None when the string is not an acceptable molecule (``error`` says why: the sequence is
    invalid). When ``canonical`` is set but ``error`` is not, scoring the molecule failed (an oracle failure).
    """

    canonical: str | None
    error: str | None = None
    qed: float = math.nan
    sa: float = math.nan  # raw SA score, 1 (easy) .. 10 (hard)
    fingerprint: bytes = b""  # np.packbits of the fingerprint bits
    descriptors: tuple[float, ...] = ()


def canonicalize_smiles(smiles: str) -> tuple[str | None, str | None, Chem.Mol | None]:
    """``(canonical, None, mol)`` for an acceptable single molecule, else ``(None, reason, None)``."""
    if not smiles:
        return None, "empty sequence", None
    if "." in smiles:
        return None, f"SMILES {smiles!r} has several fragments", None
    if "*" in smiles:
        return None, f"SMILES {smiles!r} has wildcard atoms '*'", None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None, f"RDKit cannot parse SMILES {smiles!r}", None
    if mol.GetNumAtoms() == 0:
        return None, "molecule has no atoms", None
    canonical = Chem.MolToSmiles(mol)
    if "." in canonical:  # e.g. a disconnected salt written without a dot is impossible, but be safe
        return None, f"SMILES {smiles!r} has several fragments", None
    return canonical, None, mol


# -- descriptors and fingerprints, by name (the model configs list the names they were trained on) ------------
DESCRIPTORS: dict[str, Callable[[Chem.Mol], float]] = {
    "tpsa": rdMolDescriptors.CalcTPSA,
    "mol_weight": rdMolDescriptors.CalcExactMolWt,
    "hbd": rdMolDescriptors.CalcNumHBD,
    "hba": rdMolDescriptors.CalcNumHBA,
    # Crippen.MolLogP and MolMR, Lipinski.NOCount and NHOHCount are these calls (RDKit defines them at import time,
    # so its type stubs lack them)
    "logp": lambda mol: rdMolDescriptors.CalcCrippenDescriptors(mol)[0],
    "molar_refractivity": lambda mol: rdMolDescriptors.CalcCrippenDescriptors(mol)[1],
    "rotatable_bonds": rdMolDescriptors.CalcNumRotatableBonds,
    "fraction_csp3": rdMolDescriptors.CalcFractionCSP3,
    "rings": rdMolDescriptors.CalcNumRings,
    "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings,
    "aliphatic_rings": rdMolDescriptors.CalcNumAliphaticRings,
    "heavy_atoms": lambda mol: mol.GetNumHeavyAtoms(),
    "heteroatoms": rdMolDescriptors.CalcNumHeteroatoms,
    "nitrogen_oxygen": rdMolDescriptors.CalcNumLipinskiHBA,
    "nh_oh": rdMolDescriptors.CalcNumLipinskiHBD,
    "formal_charge": Chem.GetFormalCharge,
    "amide_bonds": rdMolDescriptors.CalcNumAmideBonds,
    "stereocenters": lambda mol: len(Chem.FindMolChiralCenters(mol, includeUnassigned=True)),
    "labute_asa": rdMolDescriptors.CalcLabuteASA,
    "kappa2": rdMolDescriptors.CalcKappa2,
    "chi1v": rdMolDescriptors.CalcChi1v,
}

_MORGAN_R2 = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
_ATOM_PAIR = rdFingerprintGenerator.GetAtomPairGenerator(fpSize=1024)


def _bits(fingerprint: Any) -> np.ndarray:
    array = np.zeros(fingerprint.GetNumBits(), dtype=np.uint8)
    on = list(fingerprint.GetOnBits())
    array[on] = 1
    return array


FINGERPRINTS: dict[str, tuple[int, Callable[[Chem.Mol], np.ndarray]]] = {
    "ecfp4_2048": (2048, lambda mol: _bits(_MORGAN_R2.GetFingerprint(mol))),
    "maccs_167": (167, lambda mol: _bits(rdMolDescriptors.GetMACCSKeysFingerprint(mol))),  # = MACCSkeys.GenMACCSKeys
    "atompair_1024": (1024, lambda mol: _bits(_ATOM_PAIR.GetFingerprint(mol))),
    "none": (0, lambda mol: np.zeros(0, dtype=np.uint8)),
}


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The inputs of a BBB model: fingerprint names (concatenated) and descriptor names."""

    fingerprints: tuple[str, ...]
    descriptors: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [n for n in self.fingerprints if n not in FINGERPRINTS]
        unknown += [n for n in self.descriptors if n not in DESCRIPTORS]
        if unknown:
            raise ValueError(
                f"unknown feature names {unknown}; known fingerprints {sorted(FINGERPRINTS)}, "
                f"descriptors {sorted(DESCRIPTORS)}"
            )

    @property
    def fingerprint_bits(self) -> int:
        return sum(FINGERPRINTS[name][0] for name in self.fingerprints)


# -- SA score (Ertl & Schuffenhauer 2009, RDKit Contrib); its fragment table loads once per process ------------
_sascorer: ModuleType | None = None


def _load_sascorer() -> ModuleType:
    global _sascorer
    if _sascorer is None:
        from rdkit.Contrib.SA_Score import sascorer

        sascorer.readFragmentScores()
        _sascorer = sascorer
    return _sascorer


def sa_score(mol: Chem.Mol) -> float:
    """The raw synthetic accessibility score, 1 (easy) .. 10 (hard)."""
    return float(_load_sascorer().calculateScore(mol))


def featurize_mol(canonical: str, mol: Chem.Mol, spec: FeatureSpec) -> MoleculeRecord:
    """QED, SA and the BBB-model features of one parsed molecule."""
    bits = [FINGERPRINTS[name][1](mol) for name in spec.fingerprints]
    fingerprint = np.packbits(np.concatenate(bits)).tobytes() if bits else b""
    descriptors = tuple(float(DESCRIPTORS[name](mol)) for name in spec.descriptors)
    return MoleculeRecord(canonical, None, float(QED.qed(mol)), sa_score(mol), fingerprint, descriptors)


def process_smiles(smiles: str, spec: FeatureSpec) -> MoleculeRecord:
    """Everything the oracle needs from one string; never raises (RDKit errors become ``error``).

    The features are computed from the molecule re-parsed from its canonical SMILES, so they depend only on the
    cache key, whatever spelling of the molecule came in.
    """
    try:
        canonical, reason, _ = canonicalize_smiles(smiles)
    except Exception as exc:  # RDKit raised instead of returning None
        return MoleculeRecord(None, f"RDKit failed on SMILES {smiles!r}: {type(exc).__name__}: {exc}")
    if canonical is None:
        return MoleculeRecord(None, reason)
    try:
        mol = Chem.MolFromSmiles(canonical)
        if mol is None:
            return MoleculeRecord(canonical, f"RDKit cannot re-parse its own canonical SMILES {canonical!r}")
        return featurize_mol(canonical, mol, spec)
    except Exception as exc:
        return MoleculeRecord(canonical, f"RDKit failed while scoring {canonical!r}: {type(exc).__name__}: {exc}")


@dataclasses.dataclass(frozen=True)
class SimulatedHang:
    """Test hook: a drop-in for :func:`process_smiles` that never returns on the strings in ``hang_on``.

    Pass it as ``molecule_function`` to the oracle to check that a hanging molecule is cut off by the timeout.
    """

    hang_on: frozenset[str]
    seconds: float = 3600.0

    def __call__(self, smiles: str, spec: FeatureSpec) -> MoleculeRecord:
        if smiles in self.hang_on:
            time.sleep(self.seconds)
        return process_smiles(smiles, spec)
