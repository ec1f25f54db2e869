"""The DNA-Diffusion DHS corpus (builder only): 47,872 hg38 200-bp sequences labelled by cell type.

Read from the ``dnadiffusion`` package's data folder without importing the package. Splits are by chromosome:
validation = chr1, test = chr2, train = every other chromosome (as the package's data README documents; the
file's own ``data_label`` column has the two swapped, so it is not used).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from morbench.envs.enhancer.sequences import SEQUENCE_LENGTH, encode

if TYPE_CHECKING:
    import pandas

__all__ = ["CELL_TYPES", "CORPUS_FILE", "Corpus", "Split", "corpus_path", "load_corpus"]

CORPUS_FILE = "data/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt"
# objective order; hESC sequences (TAG hESCT0) are negatives for every head
CELL_TYPES = ("HepG2", "K562", "GM12878")
TAGS = {"HepG2": "HepG2_ENCLB029COU", "K562": "K562_ENCLB843GMH", "GM12878": "GM12878_ENCLB441ZZZ"}
OTHER_TAG = "hESCT0_ENCLB449ZZZ"
VALID_CHROMOSOME = "chr1"
TEST_CHROMOSOME = "chr2"


@dataclasses.dataclass
class Split:
    sequences: list[str]
    tags: np.ndarray  # (N,) the TAG column
    labels: np.ndarray  # (N, 3) one-vs-rest 0/1 in CELL_TYPES order
    codes: np.ndarray  # (N, 200) int8

    def __len__(self) -> int:
        return len(self.sequences)


@dataclasses.dataclass
class Corpus:
    train: Split
    valid: Split
    test: Split
    path: Path
    rows: int


def corpus_path() -> Path:
    """Where the corpus file lies inside the installed ``dnadiffusion`` package."""
    spec = importlib.util.find_spec("dnadiffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the Enhancer asset builder reads its corpus from the `dnadiffusion` package; "
            "install it with `pip install --no-deps dnadiffusion`"
        )
    path = Path(spec.submodule_search_locations[0]) / CORPUS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed dnadiffusion package")
    return path


def _split(frame: pandas.DataFrame) -> Split:
    sequences = frame["sequence"].str.upper().tolist()
    tags = frame["TAG"].to_numpy(dtype=object)
    labels = np.stack([(tags == TAGS[cell]).astype(np.int8) for cell in CELL_TYPES], axis=1)
    return Split(sequences, tags, labels, encode(sequences, SEQUENCE_LENGTH))


def load_corpus() -> Corpus:
    """Load, check and split the corpus (every row is a 200-bp ACGT sequence with a known TAG)."""
    import pandas as pd

    path = corpus_path()
    frame = pd.read_csv(path, sep="\t", usecols=["sequence", "TAG", "chr"])
    known = {*TAGS.values(), OTHER_TAG}
    unknown = set(frame["TAG"]) - known
    if unknown:
        raise ValueError(f"{path} has unexpected TAG values {sorted(unknown)}")
    if not frame["sequence"].str.fullmatch(f"[ACGTacgt]{{{SEQUENCE_LENGTH}}}").all():
        raise ValueError(f"{path} has sequences that are not {SEQUENCE_LENGTH}-bp ACGT strings")
    valid = frame["chr"] == VALID_CHROMOSOME
    test = frame["chr"] == TEST_CHROMOSOME
    return Corpus(
        train=_split(frame[~valid & ~test]),
        valid=_split(frame[valid]),
        test=_split(frame[test]),
        path=path,
        rows=len(frame),
    )
