"""``morbench build-assets qm9``, stage 4: 10,000 prior samples scored by the oracle and the judge (validity,
uniqueness, novelty, objective correlations under the shipped and alternative objective directions,
oracle/judge agreement) and the oracles' throughput."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.buildkit import (
    agreement,
    correlation_matrices,
    first_rows,
    pairwise_correlations,
    pearson,
    reason_classifier,
    reason_counts,
    sample_prior,
)
from morbench.envs.qm9.env import REBUILD_COMMAND
from morbench.envs.qm9.molecules import MAX_HEAVY_ATOMS
from morbench.envs.qm9.predictors import PROPERTY_NAMES

if TYPE_CHECKING:
    from morbench.envs.qm9.build import BuildConfig
    from morbench.envs.qm9.env import QM9Env
    from morbench.envs.qm9.rewards import RewardTransform

__all__ = ["direction_alternatives", "evaluate_prior", "measure_throughput"]

# invalid reasons of the QM9 oracle, grouped for the report (the specific SMILES dropped)
REASON_CLASS = reason_classifier(
    {p: p for p in ("RDKit cannot parse", "special token", "empty sequence", "elements", "molecule has net charge")},
    contains={"heavy atoms": f"more than {MAX_HEAVY_ATOMS} heavy atoms", "fragments": "several fragments"},
)


def evaluate_prior(config: BuildConfig, train_smiles: set[str]) -> dict[str, Any]:
    from morbench.chem import internal_diversity
    from morbench.envs.qm9.env import QM9Env, QM9PropertyOracle
    from morbench.models import load_causal_lm

    env = QM9Env(assets_dir=config.assets_dir)
    model = load_causal_lm(config.assets_dir / "prior", rebuild_command=REBUILD_COMMAND)
    samples = sample_prior(
        model,
        count=config.prior_samples,
        batch_size=500,
        max_new_tokens=env.max_length,
        bos_token_id=env.bos_token_id,
        eos_token_id=env.eos_token_id,
        pad_token_id=env.pad_token_id,
        seed=config.sample_seed,
    )
    rows = samples.rows
    sequences, special_reasons = env.decode_token_ids(rows)

    oracle_start = time.perf_counter()
    result = env.score_token_ids(rows)
    oracle_seconds = time.perf_counter() - oracle_start
    judge_start = time.perf_counter()
    judged = env.judge_score([s if r is None else "" for s, r in zip(sequences, special_reasons, strict=True)])
    judge_seconds = time.perf_counter() - judge_start

    valid = result.valid
    unique, index = first_rows(result.keys)
    novel = [k for k in unique if k not in train_smiles]
    reasons = reason_counts((r or "invalid" for r, v in zip(result.reasons, valid, strict=True) if not v), REASON_CLASS)
    rewards = result.rewards[index].astype(np.float64)
    judge_rewards = judged.rewards[index].astype(np.float64)
    oracle_props = np.stack([result.properties[name][index] for name in PROPERTY_NAMES], axis=1)
    judge_props = np.stack([judged.properties[name][index] for name in PROPERTY_NAMES], axis=1)
    heavy = Counter(_heavy_atoms(k) for k in unique)
    rng = np.random.default_rng(config.sample_seed)
    diversity_set = [unique[i] for i in rng.permutation(len(unique))[: config.diversity_samples]]

    names = env.objective_names
    assert isinstance(env.oracle, QM9PropertyOracle)
    transform = env.oracle.transform
    reward_correlations = correlation_matrices(dict(zip(names, rewards.T, strict=True)))
    property_correlations = correlation_matrices(dict(zip(PROPERTY_NAMES, oracle_props.T, strict=True)))
    throughput = measure_throughput(env, unique)
    return {
        "samples": len(rows),
        "sampling": {"temperature": 1.0, "top_p": 1.0, "seed": config.sample_seed, "seconds": samples.wall_seconds},
        "prior": {
            "ended_with_eos": samples.ended.count(True) / len(rows),
            "validity": float(valid.mean()),
            "uniqueness": len(unique) / max(int(valid.sum()), 1),
            "novelty": len(novel) / max(len(unique), 1),
            "unique_valid": len(unique),
            "internal_diversity": internal_diversity(diversity_set),
            "internal_diversity_molecules": len(diversity_set),
            "invalid_reasons": reasons,
            "heavy_atoms_of_unique_valid": {str(k): heavy[k] for k in sorted(heavy)},
            "mean_length_tokens": float(np.mean([len(r) for r in rows])),
        },
        "objectives_on_unique_valid_samples": {
            "gap_band_ev": {"target": transform.gap_target_ev, "width": transform.gap_width_ev},
            "oracle_mean_reward": dict(zip(names, rewards.mean(axis=0).tolist(), strict=True)),
            "judge_mean_reward": dict(zip(names, judge_rewards.mean(axis=0).tolist(), strict=True)),
            "pearson": reward_correlations["pearson"],
            "spearman": reward_correlations["spearman"],
            "property_pearson": property_correlations["pearson"],
            "property_spearman": property_correlations["spearman"],
            "oracle_property_mean": dict(zip(PROPERTY_NAMES, oracle_props.mean(axis=0).tolist(), strict=True)),
        },
        "direction_alternatives": direction_alternatives(oracle_props, transform),
        "judge_vs_oracle_on_prior_samples": {
            "properties": agreement(oracle_props, judge_props, PROPERTY_NAMES),
            "rewards": agreement(rewards, judge_rewards, names),
            "reward_pearson_of_sum": pearson(rewards.sum(1), judge_rewards.sum(1)),
        },
        "timing": {
            "oracle_seconds_all_samples": oracle_seconds,
            "judge_seconds_all_samples": judge_seconds,
            **throughput,
        },
    }


def direction_alternatives(properties: np.ndarray, transform: RewardTransform) -> list[dict[str, Any]]:
    """How much the objectives conflict under other choices of U0 direction and gap target (same samples).

    For each choice: pairwise Pearson/Spearman correlations of the rewards, and the best compromise among the
    samples (the largest minimum reward over the three objectives; near 1 means one molecule tops all three).
    """
    rows = []
    for u0_direction in ("minimise", "maximise"):
        for target in (5.0, 6.8, 8.5):
            rewards = transform.with_gap_band(target, transform.gap_width_ev)(properties)
            if u0_direction == "maximise":
                rewards[:, 2] = 1.0 - rewards[:, 2]
            correlations = pairwise_correlations(dict(zip(("alpha", "gap", "u0"), rewards.T, strict=True)), "-")
            rows.append(
                {
                    "u0": u0_direction,
                    "gap_target_ev": target,
                    **correlations,
                    "best_compromise_min_reward": float(rewards.min(axis=1).max()),
                    "mean_reward": rewards.mean(axis=0).tolist(),
                }
            )
    return rows


def measure_throughput(env: QM9Env, unique: list[str], repeats: int = 3) -> dict[str, float]:
    """Molecules/s of fresh (uncached) scoring: canonicalization + featurization + one forward per batch."""
    from morbench.envs.qm9.env import QM9PropertyOracle

    out = {}
    for role, oracle in (("oracle", env.oracle), ("judge", env.judge)):
        assert isinstance(oracle, QM9PropertyOracle)
        best = np.inf
        for _ in range(repeats):
            fresh = QM9PropertyOracle(oracle.predictor, oracle.transform)
            start = time.perf_counter()
            fresh(unique)
            best = min(best, time.perf_counter() - start)
        out[f"{role}_molecules_per_second"] = len(unique) / best
    out["throughput_molecules"] = len(unique)
    return out


def _heavy_atoms(smiles: str) -> int:
    from rdkit import Chem

    return Chem.MolFromSmiles(smiles).GetNumHeavyAtoms()
