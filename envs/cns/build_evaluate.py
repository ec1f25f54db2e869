"""``morbench build-assets cns``, the measurements: prior samples scored by the oracle and the judge
(validity, uniqueness, novelty, diversity, invalid reasons, objective correlations, oracle/judge agreement)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from morbench import buildkit
from morbench.chem import internal_diversity
from morbench.envs.cns.env import JUDGE_MODEL, ORACLE_MODEL, CNSOracle
from morbench.models import load_causal_lm

if TYPE_CHECKING:
    from morbench.envs.cns.build import BuildConfig

__all__ = ["prior_sample_strings", "score_samples"]

# invalid reasons of the CNS oracle, grouped for the report
REASON_CLASS = buildkit.reason_classifier(
    {
        "RDKit cannot parse": "unparsable",
        "empty sequence": "empty",
        "special token": "special token",
        "scoring SMILES": "timeout",
    },
    contains={"several fragments": "several fragments"},
    other=lambda reason: reason[:60],
)


def prior_sample_strings(config: BuildConfig) -> tuple[list[str], int]:
    """Decoded prior samples and how many were cut at ``max_length`` before their EOS."""
    from transformers import PreTrainedTokenizerFast

    prior_dir = config.out_dir / "prior"
    model = load_causal_lm(prior_dir, verify=True)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(prior_dir, local_files_only=True)
    samples = buildkit.sample_prior(
        model,
        count=config.samples,
        batch_size=config.sample_batch,
        max_new_tokens=config.prior.max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        seed=config.sample_seed,
        forbid_token_ids=[tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id],
        progress=config.progress,
    )
    return samples.texts(tokenizer), samples.ended.count(False)


def score_samples(config: BuildConfig, strings: list[str], train_set: set[str]) -> dict[str, Any]:
    from morbench.envs.cns.bbb import load_bbb_model

    oracle = CNSOracle(load_bbb_model(config.out_dir, ORACLE_MODEL), workers=config.workers)
    judge = CNSOracle(load_bbb_model(config.out_dir, JUDGE_MODEL), workers=config.workers)
    try:
        start = time.perf_counter()
        result = oracle(strings)
        oracle_seconds = time.perf_counter() - start
        start = time.perf_counter()
        judged = judge(strings)
        judge_seconds = time.perf_counter() - start
    finally:
        oracle.close()
        judge.close()
    valid = result.valid
    unique, rows = buildkit.first_rows([key if ok else None for key, ok in zip(result.keys, valid, strict=True)])
    rewards = result.rewards[rows]
    judge_bbb = judged.rewards[rows, 2]
    objectives = {n: rewards[:, k] for k, n in enumerate(oracle.objective_names)}
    return {
        "samples": len(strings),
        "temperature": 1.0,
        "seed": config.sample_seed,
        "validity": float(valid.mean()),
        "uniqueness": len(unique) / max(1, int(valid.sum())),
        "novelty": sum(s not in train_set for s in unique) / max(1, len(unique)),
        "internal_diversity_unique_valid": float(internal_diversity(unique)),
        "invalid_reasons": buildkit.reason_counts(result.reasons, REASON_CLASS),
        "unique_valid": len(unique),
        "objective_mean": {n: float(values.mean()) for n, values in objectives.items()},
        "objective_std": {n: float(values.std()) for n, values in objectives.items()},
        "objective_correlations": buildkit.pairwise_correlations(objectives),
        "oracle_vs_judge_bbb": {
            "pearson": buildkit.pearson(rewards[:, 2], judge_bbb),
            "spearman": buildkit.spearman(rewards[:, 2], judge_bbb),
            "agreement_at_0.5": float(((rewards[:, 2] >= 0.5) == (judge_bbb >= 0.5)).mean()),
            "judge_bbb_mean": float(judge_bbb.mean()),
        },
        "oracle_seconds": oracle_seconds,
        "judge_seconds": judge_seconds,
    }
