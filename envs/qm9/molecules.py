"""QM9's chemical domain (which molecules the oracles may score), the data split, and both predictors' features.

QM9 holds every closed-shell, net-neutral molecule of GDB-17 with at most 9 heavy atoms drawn from C, N, O and F.
The oracles were trained on exactly that domain, so :func:`parse_qm9_molecule` rejects anything outside it
(with a reason) instead of letting a regressor extrapolate.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator, rdMolDescriptors

from morbench.core import InvalidSequence

rdBase.DisableLog("rdApp.*")  # RDLogger.DisableLog is this function

ELEMENTS = ("C", "N", "O", "F")  # heavy elements of QM9 (hydrogen is implicit)
ALLOWED_ELEMENTS = frozenset({"H", *ELEMENTS})
MAX_HEAVY_ATOMS = 9
SPLIT_FRACTIONS = {"train": 8, "valid": 1, "test": 1}  # tenths, assigned by sha256 of the canonical SMILES

__all__ = [
    "ALLOWED_ELEMENTS",
    "DESCRIPTOR_NAMES",
    "ELEMENTS",
    "FINGERPRINT_BITS",
    "MAX_HEAVY_ATOMS",
    "DenseGraphs",
    "canonical_qm9_smiles",
    "composition",
    "dense_graphs",
    "fingerprint_features",
    "parse_qm9_molecule",
    "split_of",
]


# -- domain -------------------------------------------------------------------------------------------------
def parse_qm9_molecule(smiles: str) -> Chem.Mol:
    """Parse ``smiles`` into an RDKit molecule inside QM9's domain, or raise :class:`InvalidSequence` saying why.

    Rejected: empty strings, unparsable SMILES, several fragments, elements other than H/C/N/O/F, isotope
    labels, no heavy atom, more than 9 heavy atoms, radicals (open shells) and a non-zero net charge.
    Zwitterions (net charge 0, e.g. ``[NH3+]CC(=O)[O-]``) are in QM9 and are accepted.
    """
    if not smiles:
        raise InvalidSequence("empty sequence")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InvalidSequence(f"RDKit cannot parse SMILES {smiles!r}")
    if len(Chem.GetMolFrags(mol)) > 1:
        raise InvalidSequence(f"SMILES {smiles!r} has several fragments; QM9 molecules are single fragments")
    # one pass over the atoms (RDKit's atom iterator dominates the cost of scoring a batch); checked in the order below
    symbols, isotope, radical = set(), False, False
    for atom in mol.GetAtoms():
        symbols.add(atom.GetSymbol())
        isotope = isotope or atom.GetIsotope() != 0
        radical = radical or atom.GetNumRadicalElectrons() != 0
    outside = sorted(symbols - ALLOWED_ELEMENTS)
    if outside:
        raise InvalidSequence(f"elements {outside} are outside QM9's element set H, C, N, O, F")
    if isotope:
        raise InvalidSequence("isotope labels are outside QM9 (natural-abundance molecules only)")
    heavy = mol.GetNumHeavyAtoms()
    if heavy == 0:
        raise InvalidSequence("molecule has no heavy atom; QM9 molecules have 1 to 9")
    if heavy > MAX_HEAVY_ATOMS:
        raise InvalidSequence(
            f"molecule has {heavy} heavy atoms; QM9 (and so the property oracle) covers at most {MAX_HEAVY_ATOMS}"
        )
    if radical:
        raise InvalidSequence("molecule is a radical (open shell); QM9 molecules are closed-shell")
    charge = Chem.GetFormalCharge(mol)
    if charge != 0:
        raise InvalidSequence(f"molecule has net charge {charge:+d}; QM9 molecules are neutral")
    return mol


def canonical_qm9_smiles(smiles: str) -> str:
    """RDKit canonical SMILES without stereo marks (QM9 has none; both predictors see only the 2D graph)."""
    return Chem.MolToSmiles(parse_qm9_molecule(smiles), isomericSmiles=False)


def split_of(canonical: str) -> str:
    """``train``/``valid``/``test`` from the first 8 bytes of sha256(canonical SMILES) modulo 10 (80/10/10)."""
    bucket = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big") % 10
    if bucket < SPLIT_FRACTIONS["train"]:
        return "train"
    return "valid" if bucket < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["valid"] else "test"


# -- composition (the linear baseline of both predictors) ---------------------------------------------------
COMPOSITION_NAMES = ("C", "N", "O", "F", "H")


_ELEMENT_INDEX = {symbol: k for k, symbol in enumerate(ELEMENTS)}


def composition(mols: list[Chem.Mol]) -> np.ndarray:
    """``(n, 5)`` float64 counts of C, N, O, F and (implicit + explicit) H atoms."""
    return np.array([_composition(mol) for mol in mols], dtype=np.float64).reshape(len(mols), len(COMPOSITION_NAMES))


def _composition(mol: Chem.Mol) -> list[int]:
    counts = [0] * len(COMPOSITION_NAMES)
    for atom in mol.GetAtoms():
        counts[_ELEMENT_INDEX[atom.GetSymbol()]] += 1
        counts[-1] += atom.GetTotalNumHs()
    return counts


# -- features of the training oracle: Morgan counts + descriptors -------------------------------------------
FINGERPRINT_BITS = 1024
_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=FINGERPRINT_BITS)
DESCRIPTOR_NAMES = (
    *(f"count_{symbol}" for symbol in COMPOSITION_NAMES),
    "heavy_atoms",
    "positive_atoms",
    "negative_atoms",
    "rings",
    "aromatic_rings",
    "ring_size_3",
    "ring_size_4",
    "ring_size_5",
    "ring_size_6",
    "ring_size_7_plus",
    "single_bonds",
    "double_bonds",
    "triple_bonds",
    "aromatic_bonds",
    "sp_atoms",
    "sp2_atoms",
    "sp3_atoms",
    "ring_atoms",
    "rotatable_bonds",
    "bridgehead_atoms",
    "spiro_atoms",
    "fraction_csp3",
)
_BOND_TYPES = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)
_HYBRIDIZATIONS = (Chem.HybridizationType.SP, Chem.HybridizationType.SP2, Chem.HybridizationType.SP3)


_HYBRIDIZATION_INDEX = {kind: k for k, kind in enumerate(_HYBRIDIZATIONS)}
_BOND_INDEX = {kind: k for k, kind in enumerate(_BOND_TYPES)}


def _descriptors(mol: Chem.Mol) -> list[float]:
    """The values of :data:`DESCRIPTOR_NAMES`, in order; every atom and bond is visited once."""
    elements = [0] * len(COMPOSITION_NAMES)  # C, N, O, F, H
    positive = negative = in_ring = 0
    hybridizations = [0] * (len(_HYBRIDIZATIONS) + 1)  # SP, SP2, SP3, other
    for atom in mol.GetAtoms():
        elements[_ELEMENT_INDEX[atom.GetSymbol()]] += 1
        elements[-1] += atom.GetTotalNumHs()
        charge = atom.GetFormalCharge()
        positive += charge > 0
        negative += charge < 0
        hybridizations[_HYBRIDIZATION_INDEX.get(atom.GetHybridization(), -1)] += 1
        in_ring += atom.IsInRing()
    bonds = [0] * (len(_BOND_TYPES) + 1)  # single, double, triple, aromatic, other
    for bond in mol.GetBonds():
        bonds[_BOND_INDEX.get(bond.GetBondType(), -1)] += 1
    ring_sizes = [len(ring) for ring in mol.GetRingInfo().AtomRings()]
    return [
        *map(float, elements),
        float(mol.GetNumAtoms()),
        float(positive),
        float(negative),
        float(len(ring_sizes)),
        float(rdMolDescriptors.CalcNumAromaticRings(mol)),
        *(float(ring_sizes.count(size)) for size in (3, 4, 5, 6)),
        float(sum(size >= 7 for size in ring_sizes)),
        *map(float, bonds[:-1]),
        *map(float, hybridizations[:-1]),
        float(in_ring),
        float(rdMolDescriptors.CalcNumRotatableBonds(mol)),
        float(rdMolDescriptors.CalcNumBridgeheadAtoms(mol)),
        float(rdMolDescriptors.CalcNumSpiroAtoms(mol)),
        float(rdMolDescriptors.CalcFractionCSP3(mol)),
    ]


def fingerprint_features(mols: list[Chem.Mol]) -> np.ndarray:
    """``(n, 1024 + len(DESCRIPTOR_NAMES))`` float32: log1p Morgan radius-2 counts, then raw descriptors."""
    out = np.zeros((len(mols), FINGERPRINT_BITS + len(DESCRIPTOR_NAMES)), dtype=np.float32)
    for i, mol in enumerate(mols):
        out[i, :FINGERPRINT_BITS] = np.log1p(_MORGAN.GetCountFingerprintAsNumPy(mol))
        out[i, FINGERPRINT_BITS:] = _descriptors(mol)
    return out


# -- features of the held-out judge: dense heavy-atom graphs (at most 9 atoms) ------------------------------
ATOM_FEATURE_NAMES = (
    *(f"element_{symbol}" for symbol in ELEMENTS),
    *(f"degree_{d}" for d in range(5)),
    *(f"hydrogens_{h}" for h in range(5)),
    "charge_negative",
    "charge_positive",
    "aromatic",
    "hybridization_sp",
    "hybridization_sp2",
    "hybridization_sp3",
    "in_ring",
    *(f"in_ring_of_{size}" for size in (3, 4, 5, 6)),
)


@dataclasses.dataclass
class DenseGraphs:
    """A batch of heavy-atom graphs padded to ``MAX_HEAVY_ATOMS`` nodes.

    ``atoms`` is ``(n, 9, len(ATOM_FEATURE_NAMES))``, ``bonds`` is ``(n, 4, 9, 9)`` (one adjacency matrix per
    single/double/triple/aromatic bond type) and ``mask`` is ``(n, 9)`` (True for real atoms).
    """

    atoms: np.ndarray
    bonds: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.mask)

    def subset(self, index: np.ndarray) -> DenseGraphs:
        return DenseGraphs(self.atoms[index], self.bonds[index], self.mask[index])


def dense_graphs(mols: list[Chem.Mol]) -> DenseGraphs:
    """Featurize molecules (each with at most 9 heavy atoms) as :class:`DenseGraphs`."""
    n, m = len(mols), MAX_HEAVY_ATOMS
    atoms = np.zeros((n, m, len(ATOM_FEATURE_NAMES)), dtype=np.float32)
    bonds = np.zeros((n, len(_BOND_TYPES), m, m), dtype=np.float32)
    mask = np.zeros((n, m), dtype=bool)
    element_index = {symbol: k for k, symbol in enumerate(ELEMENTS)}
    bond_index = {kind: k for k, kind in enumerate(_BOND_TYPES)}
    hybrid_index = {kind: k for k, kind in enumerate(_HYBRIDIZATIONS)}
    for i, mol in enumerate(mols):
        if mol.GetNumAtoms() > m:
            raise ValueError(f"molecule {Chem.MolToSmiles(mol)} has more than {m} heavy atoms")
        ring_info = mol.GetRingInfo()
        for atom in mol.GetAtoms():
            j = atom.GetIdx()
            row = atoms[i, j]
            row[element_index[atom.GetSymbol()]] = 1
            row[4 + min(atom.GetDegree(), 4)] = 1
            row[9 + min(atom.GetTotalNumHs(), 4)] = 1
            charge = atom.GetFormalCharge()
            row[14] = charge < 0
            row[15] = charge > 0
            row[16] = atom.GetIsAromatic()
            hybrid = hybrid_index.get(atom.GetHybridization())
            if hybrid is not None:
                row[17 + hybrid] = 1
            row[20] = atom.IsInRing()
            for k, size in enumerate((3, 4, 5, 6)):
                row[21 + k] = ring_info.IsAtomInRingOfSize(j, size)
            mask[i, j] = True
        for bond in mol.GetBonds():
            a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            k = bond_index.get(bond.GetBondType(), 0)
            bonds[i, k, a, b] = bonds[i, k, b, a] = 1
    return DenseGraphs(atoms, bonds, mask)
