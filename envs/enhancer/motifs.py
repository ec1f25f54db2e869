"""JASPAR motif check of the Enhancer task: PWM hit counts (both strands) and cell-type motif enrichment.

The PWMs ship in ``assets/motifs.json`` (written by the builder from ``pyjaspar``), so scanning needs only NumPy.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from morbench.envs.enhancer.sequences import encode

__all__ = ["Motif", "MotifSet", "motif_enrichment"]


@dataclasses.dataclass(frozen=True)
class Motif:
    """One JASPAR profile as a log-odds matrix ``(width, 4)`` (ACGT columns, log2 units) and a hit threshold."""

    matrix_id: str
    name: str
    cell_type: str
    log_odds: np.ndarray
    threshold: float

    @property
    def width(self) -> int:
        return int(self.log_odds.shape[0])

    def scores(self, codes: np.ndarray) -> np.ndarray:
        """Best-strand log-odds score at every start, ``(N, L - width + 1, 2)`` (forward, reverse strand)."""
        n, length = codes.shape
        if length < self.width:
            return np.full((n, 0, 2), -np.inf)
        # a fifth column scores letters outside ACGT (and padding) so low that no window containing one can hit
        table = np.concatenate([self.log_odds, np.full((self.width, 1), -1e9)], axis=1)
        reverse = np.concatenate([self.log_odds[::-1, ::-1], np.full((self.width, 1), -1e9)], axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(np.where(codes < 0, 4, codes), self.width, axis=1)
        rows = np.arange(self.width)
        forward_scores = table[rows, windows].sum(axis=2)
        reverse_scores = reverse[rows, windows].sum(axis=2)
        return np.stack([forward_scores, reverse_scores], axis=2)

    def count_hits(self, codes: np.ndarray) -> np.ndarray:
        """Hits per sequence, ``(N,)`` int64: windows scoring at least ``threshold``, each strand counted."""
        return (self.scores(codes) >= self.threshold).sum(axis=(1, 2))


@dataclasses.dataclass(frozen=True)
class MotifSet:
    """The motifs of every cell type, plus the background hit rate of each cell type's motif group.

    ``background_rate[cell]`` is the mean number of hits of that cell type's motifs per natural test sequence
    (all cell types pooled), the denominator of :func:`motif_enrichment`.
    """

    motifs: tuple[Motif, ...]
    background_rate: dict[str, float]
    release: str = "JASPAR2024"

    @property
    def cell_types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.cell_type for m in self.motifs))

    @classmethod
    def from_json(cls, path: str | Path) -> MotifSet:
        data = json.loads(Path(path).read_text())
        motifs = tuple(
            Motif(
                matrix_id=m["matrix_id"],
                name=m["name"],
                cell_type=m["cell_type"],
                log_odds=np.asarray(m["log_odds"], dtype=np.float64),
                threshold=float(m["threshold"]),
            )
            for m in data["motifs"]
        )
        for motif in motifs:
            if motif.log_odds.ndim != 2 or motif.log_odds.shape[1] != 4:
                raise ValueError(f"motif {motif.matrix_id} in {path} must have a (width, 4) log-odds matrix")
        return cls(motifs, {k: float(v) for k, v in data.get("background_rate", {}).items()}, data["release"])

    def hits(self, sequences: Sequence[str]) -> np.ndarray:
        """Hit counts ``(N, M)`` for every sequence and motif (both strands)."""
        codes = encode(sequences).astype(np.int64)
        if not len(self.motifs):
            return np.zeros((len(sequences), 0), dtype=np.int64)
        return np.stack([motif.count_hits(codes) for motif in self.motifs], axis=1)

    def cell_type_hits(self, sequences: Sequence[str]) -> dict[str, np.ndarray]:
        """Per cell type, the total hits of its motifs in each sequence, ``{cell: (N,)}``."""
        hits = self.hits(sequences)
        return {
            cell: hits[:, [j for j, m in enumerate(self.motifs) if m.cell_type == cell]].sum(axis=1)
            for cell in self.cell_types
        }


def motif_enrichment(hits: np.ndarray, scores: np.ndarray, background_rate: float, top_fraction: float = 0.1) -> float:
    """Mean motif hits in the top ``top_fraction`` of sequences by ``scores``, divided by ``background_rate``.

    1.0 means the top-scoring designs carry a cell type's motifs as often as natural sequences do; above 1, they
    are enriched. Ties at the cut are broken by order. NaN for an empty set or a non-positive background.
    """
    hits = np.asarray(hits, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if hits.shape != scores.shape:
        raise ValueError(f"hits {hits.shape} and scores {scores.shape} must have the same shape")
    if hits.size == 0 or not background_rate > 0:
        return float("nan")
    top = max(1, round(top_fraction * hits.size))
    order = np.argsort(-scores, kind="stable")[:top]
    return float(hits[order].mean() / background_rate)
