"""``morbench build-assets enhancer``, stages ``data`` and ``motifs``: the corpus split and its natural-sequence
statistics (``reference.json``), and the JASPAR 2024 motifs of each cell type with p < 1e-4 thresholds
(``motifs.json``), checked on the natural test sequences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.buildkit import package_versions
from morbench.envs.enhancer.env import CELL_TYPES
from morbench.envs.enhancer.sequences import SEQUENCE_LENGTH

if TYPE_CHECKING:
    from morbench.envs.enhancer.build import BuildConfig
    from morbench.envs.enhancer.data import Corpus

__all__ = ["MOTIF_PROFILES", "stage_data", "stage_motifs"]

# one JASPAR 2024 CORE vertebrate profile per factor; the cell type whose motif group it joins
MOTIF_PROFILES = (
    ("HepG2", "MA0114.5", "HNF4A"),
    ("HepG2", "MA0046.3", "HNF1A"),
    ("HepG2", "MA0047.4", "FOXA2"),
    ("HepG2", "MA0102.5", "CEBPA"),
    ("K562", "MA0035.5", "GATA1"),
    ("K562", "MA0091.2", "TAL1::TCF3"),
    ("K562", "MA0493.3", "KLF1"),
    ("K562", "MA0841.2", "NFE2"),
    ("GM12878", "MA0080.7", "SPI1"),
    ("GM12878", "MA1419.2", "IRF4"),
    ("GM12878", "MA0684.3", "RUNX3"),
    ("GM12878", "MA0154.5", "EBF1"),
)


def stage_data(corpus: Corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    from morbench.envs.enhancer.metrics import kmer_counts, kmer_spectrum_correlation

    counts = kmer_counts(corpus.test.sequences, k=3)
    composition = kmer_counts(corpus.train.sequences, k=1)
    reference = {
        "description": "natural-sequence statistics of the DNA-Diffusion DHS corpus (chr2 test split)",
        "kmer_order": "lexicographic ACGT",
        "test_kmer3_counts": counts.tolist(),
        "test_sequences": len(corpus.test),
        "train_base_frequencies": (composition / composition.sum()).round(6).tolist(),
    }
    (assets / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    rng = np.random.default_rng(config.seed)
    random_dna = ["".join(rng.choice(list("ACGT"), SEQUENCE_LENGTH)) for _ in range(config.prior_samples)]
    splits = {name: getattr(corpus, name) for name in ("train", "valid", "test")}
    return {
        "source": str(corpus.path.name),
        "package": f"dnadiffusion {package_versions(['dnadiffusion'])['dnadiffusion']}",
        "rows": corpus.rows,
        "sequence_length_bp": SEQUENCE_LENGTH,
        "split_rule": "validation = chr1, test = chr2, train = all other chromosomes",
        "split_sizes": {name: len(split) for name, split in splits.items()},
        "sequences_per_cell_type": {
            name: {tag.split("_")[0]: int((split.tags == tag).sum()) for tag in sorted(set(split.tags))}
            for name, split in splits.items()
        },
        "train_base_frequencies_ACGT": reference["train_base_frequencies"],
        "kmer3_pearson_train_vs_test": kmer_spectrum_correlation(corpus.train.sequences, counts),
        "kmer3_pearson_valid_vs_test": kmer_spectrum_correlation(corpus.valid.sequences, counts),
        "kmer3_pearson_uniform_random_vs_test": kmer_spectrum_correlation(random_dna, counts),
    }


def stage_motifs(corpus: Corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    from pyjaspar import jaspardb

    from morbench.envs.enhancer.metrics import kmer_counts
    from morbench.envs.enhancer.motifs import MotifSet

    composition = kmer_counts(corpus.train.sequences, k=1).astype(np.float64)
    freq = composition / composition.sum()
    # strand-symmetric background (A=T, C=G) so that both strands are scored alike
    at, cg = (freq[0] + freq[3]) / 2, (freq[1] + freq[2]) / 2
    background = {"A": at, "C": cg, "G": cg, "T": at}
    database = jaspardb(release="JASPAR2024")
    entries = []
    for cell, matrix_id, expected_name in MOTIF_PROFILES:
        motif = database.fetch_motif_by_id(matrix_id)
        if motif.name.upper() != expected_name.upper():
            raise ValueError(f"JASPAR {matrix_id} is {motif.name!r}, expected {expected_name!r}")
        pseudocounts = {base: config.motif_pseudocount * background[base] * 4 for base in "ACGT"}
        pwm = motif.counts.normalize(pseudocounts=pseudocounts)
        pssm = pwm.log_odds(background)
        distribution = pssm.distribution(background=background, precision=10**3)
        threshold = float(distribution.threshold_fpr(config.motif_p_value))
        log_odds = np.array([[pssm[base][i] for base in "ACGT"] for i in range(motif.length)], dtype=np.float64)
        entries.append(
            {
                "matrix_id": matrix_id,
                "name": motif.name,
                "cell_type": cell,
                "width": int(motif.length),
                "counts": [[float(motif.counts[base][i]) for base in "ACGT"] for i in range(motif.length)],
                "log_odds": log_odds.round(5).tolist(),
                "threshold": round(threshold, 5),
                "max_score": round(float(log_odds.max(axis=1).sum()), 5),
            }
        )
    document = {
        "release": "JASPAR2024",
        "license": "JASPAR data: CC BY 4.0 (https://jaspar.elixir.no)",
        "source": f"pyjaspar {package_versions(['pyjaspar'])['pyjaspar']}, jaspardb(release='JASPAR2024')",
        "columns": "ACGT",
        "units": "log2 odds against the strand-symmetric base composition of the training sequences",
        "background": [at, cg, cg, at],
        "pseudocount_per_position": config.motif_pseudocount * 4,
        "p_value": config.motif_p_value,
        "motifs": entries,
        "background_rate": {},
    }
    path = assets / "motifs.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    # background rate: mean hits per natural test sequence, all cell types pooled
    motif_set = MotifSet.from_json(path)
    test_hits = motif_set.cell_type_hits(corpus.test.sequences)
    document["background_rate"] = {cell: float(test_hits[cell].mean()) for cell in motif_set.cell_types}
    path.write_text(json.dumps(document, indent=1) + "\n")

    per_motif = motif_set.hits(corpus.test.sequences)
    by_cell = {}
    for cell in CELL_TYPES:
        in_cell = corpus.test.labels[:, CELL_TYPES.index(cell)].astype(bool)
        by_cell[cell] = {
            "mean_hits_in_own_cell_type_test": float(test_hits[cell][in_cell].mean()),
            "mean_hits_in_all_test": float(test_hits[cell].mean()),
            "enrichment_in_own_cell_type": float(test_hits[cell][in_cell].mean() / test_hits[cell].mean()),
            "per_motif_enrichment_in_own_cell_type": {
                m.name: float(per_motif[in_cell, j].mean() / max(per_motif[:, j].mean(), 1e-12))
                for j, m in enumerate(motif_set.motifs)
                if m.cell_type == cell
            },
        }
    return {
        "profiles": [f"{cell}: {name} {matrix_id}" for cell, matrix_id, name in MOTIF_PROFILES],
        "p_value": config.motif_p_value,
        "background_ACGT": [at, cg, cg, at],
        "thresholds": {e["name"]: e["threshold"] for e in entries},
        "background_rate_test": document["background_rate"],
        "natural_test_check": by_cell,
    }
