"""``morbench build-assets enhancer``, stage ``evaluate``: figures of the finished assets (prior likelihood and
10,000 prior samples, objective correlations, oracle/judge agreement, motif enrichment, throughput), the
manifest, and the ``--check`` comparison with a committed report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.assets import write_manifest
from morbench.buildkit import pairwise_correlations, pearson, spearman
from morbench.envs.enhancer.build_prior import prior_quality
from morbench.envs.enhancer.env import CELL_TYPES
from morbench.envs.enhancer.sequences import SEQUENCE_LENGTH
from morbench.seeding import derive_seed

if TYPE_CHECKING:
    from morbench.envs.enhancer.build import BuildConfig
    from morbench.envs.enhancer.data import Corpus

__all__ = ["CHECK_TOLERANCES", "stage_evaluate", "write_enhancer_manifest"]

# tolerances of --check (absolute differences to the committed report)
CHECK_TOLERANCES = {
    ("oracle", "test_auroc"): 0.02,
    ("judge", "test_auroc"): 0.02,
    ("prior", "test_nll_bits_per_bp"): 0.02,
    ("evaluate", "prior_samples", "validity"): 0.02,
    ("evaluate", "prior_samples", "kmer3_pearson"): 0.02,
}


def write_enhancer_manifest(assets: Path) -> None:
    """The assets' manifest: every file except the prior's (``prior/`` has its own manifest). Manifests are
    exact (``verify_manifest`` rejects unlisted files), so the build report is listed too."""
    files = [
        path.relative_to(assets).as_posix()
        for path in assets.rglob("*")
        if path.is_file() and path.name != "MANIFEST.sha256" and path.relative_to(assets).parts[0] != "prior"
    ]
    write_manifest(assets, files)


def stage_evaluate(corpus: Corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    from morbench.envs.enhancer.env import EnhancerEnv
    from morbench.metrics import auroc

    write_enhancer_manifest(assets)
    env = EnhancerEnv(assets_dir=assets, top_fraction=config.top_fraction)
    model = env.prior
    quality, valid = prior_quality(
        model, env.tokenizer, "kmer4", corpus, config.prior_samples, config.sample_batch, config.seed
    )
    oracle_scores = env.score(valid).rewards.astype(np.float64)
    judge_scores = env.judge_score(valid).rewards.astype(np.float64)
    test_oracle = env.score(corpus.test.sequences).rewards.astype(np.float64)
    test_judge = env.judge_score(corpus.test.sequences).rewards.astype(np.float64)
    agreement = {
        cell: {
            "prior_samples_pearson": pearson(oracle_scores[:, j], judge_scores[:, j]),
            "prior_samples_spearman": spearman(oracle_scores[:, j], judge_scores[:, j]),
            "test_pearson": pearson(test_oracle[:, j], test_judge[:, j]),
            "judge_test_auroc": auroc(corpus.test.labels[:, j], test_judge[:, j]),
            "oracle_test_auroc": auroc(corpus.test.labels[:, j], test_oracle[:, j]),
        }
        for j, cell in enumerate(CELL_TYPES)
    }

    # throughput on sequences the caches have not seen (one torch thread)
    rng = np.random.default_rng(derive_seed(config.seed, "throughput"))
    fresh = ["".join(rng.choice(list("ACGT"), SEQUENCE_LENGTH)) for _ in range(config.throughput_sequences)]
    throughput = {}
    for name, scorer in (("oracle", env.oracle), ("judge", env.judge)):
        assert scorer is not None, "the Enhancer env ships both an oracle and a judge"
        scorer.clear_cache()
        start = time.process_time()
        scorer(fresh)
        throughput[f"{name}_sequences_per_cpu_second"] = len(fresh) / (time.process_time() - start)
    start = time.process_time()
    metrics_1024 = env.domain_metrics(valid[:1024])
    throughput["domain_metrics_1024_cpu_seconds"] = time.process_time() - start
    env_nl = EnhancerEnv(assets_dir=assets, prior_likelihood_metric=False)
    start = time.process_time()
    env_nl.domain_metrics(valid[:1024])
    throughput["domain_metrics_1024_without_prior_cpu_seconds"] = time.process_time() - start

    test_metrics = env_nl.domain_metrics(corpus.test.sequences)
    per_cell_test = {
        cell: {
            k: v
            for k, v in env_nl.domain_metrics(
                [s for s, y in zip(corpus.test.sequences, corpus.test.labels[:, j], strict=True) if y]
            ).items()
            if k.startswith("motif_") or k in ("gc_content", "kmer3_pearson")
        }
        for j, cell in enumerate(CELL_TYPES)
    }
    return {
        "prior_samples": quality,
        "prior_sample_objectives": {
            "mean": dict(zip(CELL_TYPES, oracle_scores.mean(axis=0).tolist(), strict=True)),
            "std": dict(zip(CELL_TYPES, oracle_scores.std(axis=0).tolist(), strict=True)),
            "fraction_above_0.5": dict(zip(CELL_TYPES, (oracle_scores > 0.5).mean(axis=0).tolist(), strict=True)),
            "max": dict(zip(CELL_TYPES, oracle_scores.max(axis=0).tolist(), strict=True)),
            "judge_mean": dict(zip(CELL_TYPES, judge_scores.mean(axis=0).tolist(), strict=True)),
        },
        "objective_correlations_prior_samples": _correlations_by_pair(oracle_scores),
        "objective_correlations_test_sequences": _correlations_by_pair(test_oracle),
        "test_sequence_objectives_mean": dict(zip(CELL_TYPES, test_oracle.mean(axis=0).tolist(), strict=True)),
        "oracle_vs_judge": agreement,
        "domain_metrics_prior_first_1024": metrics_1024,
        "domain_metrics_test_sequences": test_metrics,
        "domain_metrics_test_by_true_cell_type": per_cell_test,
        "throughput": throughput,
    }


def _correlations_by_pair(scores: np.ndarray) -> dict[str, dict[str, float]]:
    """Pearson and Spearman correlation of each pair of cell types' scores: ``{"HepG2~K562": {...}}``."""
    correlations = pairwise_correlations(dict(zip(CELL_TYPES, scores.T, strict=True)))
    return {pair: {method: correlations[method][pair] for method in correlations} for pair in correlations["pearson"]}
