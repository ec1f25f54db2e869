"""``python -m morbench.envs.cns.build_v1``: build and measure the CNS-v1 assets (``assets_v1/``).

Stages (seeded, one torch thread):

1. the BBB oracle and judge on **disjoint halves** of B3DB's training scaffolds (CNS-v0 trained both on the
   same molecules): the oracle (ECFP4 + descriptors -> MLP) on the scaffolds whose hash is even, the judge
   (MACCS + atom pairs + other descriptors -> logistic regression) on the odd ones; both keep v0's validation
   and test scaffolds, so the AUROCs and the oracle-judge error correlation compare directly with v0's pair;
2. the prior: a wider GPT-2 trained by :mod:`morbench.envs.cns.prior_v1` (``SHIPPED``; ``--prior DIR`` copies the
   result of that long, resumable stage; without it the stage runs here);
3. 10,000 samples of the v1 prior and of the v0 prior, and 10,000 ZINC test-split molecules, scored on every
   candidate objective: the correlation matrices the objective sets were chosen from;
4. the policy-free conflict check: per-preference best-of-n against uniform-preference best-of-n on the same
   samples, for v0's objective set, CNS-v1's and CNS-MPO-v1's;
5. ``build_report.json`` and ``MANIFEST.sha256``.

CNS-v0's assets (``assets/``) are read, never written.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morbench import buildkit
from morbench.assets import write_manifest
from morbench.buildkit import REPORT_NAME, Timings, hardware_record, package_versions, write_report
from morbench.envs.cns.bbb import feature_matrix, load_bbb_model, save_bbb_model
from morbench.envs.cns.build_models import JUDGE_SPEC, ORACLE_SPEC
from morbench.envs.cns.data import hash_bucket, read_smiles_gz
from morbench.envs.cns.env import ASSETS_DIR, JUDGE_MODEL, ORACLE_MODEL, TEST_SMILES, TRAIN_SMILES, V1_ASSETS_DIR
from morbench.envs.cns.featurize import process_smiles
from morbench.envs.cns.objectives_v1 import OBJECTIVES_V1, REFERENCE_DRUGS
from morbench.envs.cns.oracle_v1 import CNSOracleV1
from morbench.envs.cns.train_bbb import TrainConfig, _scaffold, load_b3db, scaffold_split, train_bbb_model
from morbench.metrics import hypervolume
from morbench.models import load_causal_lm
from morbench.preferences import simplex_lattice

__all__ = ["OBJECTIVE_SETS", "BuildConfig", "build", "conflict_check", "main"]

PACKAGES = ("morbench", "torch", "transformers", "rdkit", "numpy", "qc-b3db", "moocore")
ALL_OBJECTIVES = tuple(OBJECTIVES_V1)
# objective set -> (objectives, preference-lattice divisions) of the conflict check
OBJECTIVE_SETS: dict[str, tuple[tuple[str, ...], int]] = {
    "CNS-v0 set (qed, sa, bbb)": (("qed", "sa", "bbb"), 3),
    "CNS-v1": (("bbb", "solubility", "imatinib_likeness"), 3),
    "CNS-MPO-v1": (("qed", "sa", "bbb", "solubility", "imatinib_likeness"), 2),
}


@dataclasses.dataclass
class BuildConfig:
    out_dir: Path = V1_ASSETS_DIR
    prior: Path | None = None  # a finished prior_v1 output to copy (None: run that stage here)
    samples: int = 10_000
    sample_batch: int = 500
    sample_seed: int = 0
    zinc_molecules: int = 10_000
    best_of: tuple[int, ...] = (16, 64, 256)
    workers: int | None = None
    oracle_training: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(ORACLE_SPEC, hidden=(256, 64), dropout=0.3, learning_rate=3e-4, seed=0)
    )
    judge_training: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            JUDGE_SPEC, hidden=(), dropout=0.0, learning_rate=3e-3, weight_decay=0.1, seed=1
        )
    )


# -- stage 1: BBB models on disjoint halves --------------------------------------------------------------------
def _error_correlation(oracle: Any, judge: Any, smiles: list[str], labels: np.ndarray) -> dict[str, float]:
    p_oracle = oracle.probability(
        *feature_matrix([process_smiles(s, oracle.config.spec) for s in smiles], oracle.config.spec)
    )
    p_judge = judge.probability(
        *feature_matrix([process_smiles(s, judge.config.spec) for s in smiles], judge.config.spec)
    )
    y = labels.astype(np.float64)
    return {
        "error_pearson": buildkit.pearson(p_oracle - y, p_judge - y),
        "prediction_pearson": buildkit.pearson(p_oracle, p_judge),
        "oracle_test_auroc_here": float(_auroc(y, p_oracle)),
        "judge_test_auroc_here": float(_auroc(y, p_judge)),
    }


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from morbench.metrics import auroc

    return auroc(labels, scores)


def build_bbb_models(config: BuildConfig) -> dict[str, Any]:
    data = load_b3db()
    train, valid, test = scaffold_split(data.smiles, seed=0)
    half = np.array([hash_bucket(_scaffold(data.smiles[i])) % 2 for i in train])
    halves = {ORACLE_MODEL: train[half == 0], JUDGE_MODEL: train[half == 1]}
    figures: dict[str, Any] = {
        "split": "v0's balanced Bemis-Murcko scaffold split (seed 0); its training scaffolds halved by "
        "sha256(scaffold SMILES)[:8] mod 2: even -> oracle, odd -> judge",
        "oracle_train_molecules": len(halves[ORACLE_MODEL]),
        "judge_train_molecules": len(halves[JUDGE_MODEL]),
        "shared_training_molecules": len(set(halves[ORACLE_MODEL]) & set(halves[JUDGE_MODEL])),
        "valid_molecules": len(valid),
        "test_molecules": len(test),
    }
    for name, training in ((ORACLE_MODEL, config.oracle_training), (JUDGE_MODEL, config.judge_training)):
        records = [process_smiles(s, training.spec) for s in data.smiles]
        model, model_figures = train_bbb_model(records, data.labels, (halves[name], valid, test), training, False, name)
        model_figures["features"] = {
            "fingerprints": training.spec.fingerprints,
            "descriptors": training.spec.descriptors,
        }
        model_figures["family"] = "MLP" if training.hidden else "logistic regression"
        save_bbb_model(model, config.out_dir, name, {"training": model_figures})
        figures[name] = model_figures
    test_smiles = [data.smiles[i] for i in test]
    figures["test_error_correlation"] = {
        "v1": _error_correlation(
            load_bbb_model(config.out_dir, ORACLE_MODEL),
            load_bbb_model(config.out_dir, JUDGE_MODEL),
            test_smiles,
            data.labels[test],
        ),
        "v0": _error_correlation(
            load_bbb_model(ASSETS_DIR, ORACLE_MODEL),
            load_bbb_model(ASSETS_DIR, JUDGE_MODEL),
            test_smiles,
            data.labels[test],
        ),
    }
    return figures


# -- stage 2: the prior ------------------------------------------------------------------------------------------
def install_prior(config: BuildConfig) -> dict[str, Any]:
    import json

    target = config.out_dir / "prior"
    if target.exists():
        shutil.rmtree(target)
    if config.prior is not None:
        shutil.copytree(config.prior, target)
    else:
        from morbench.envs.cns.data import load_zinc_splits
        from morbench.envs.cns.prior_v1 import SHIPPED, continue_prior

        splits = load_zinc_splits(progress=False)
        continue_prior(splits.train, splits.valid, SHIPPED, target, config.out_dir.parent / ".prior_v1_checkpoint")
    load_causal_lm(target)  # verifies the manifest
    return json.loads((target / "pretrain.json").read_text())


# -- stage 3: samples and candidate objectives --------------------------------------------------------------------
def sample_strings(prior_dir: Path, config: BuildConfig) -> tuple[list[str], int, float]:
    from transformers import PreTrainedTokenizerFast

    model = load_causal_lm(prior_dir)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(prior_dir, local_files_only=True)
    samples = buildkit.sample_prior(
        model,
        count=config.samples,
        batch_size=config.sample_batch,
        max_new_tokens=100,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        seed=config.sample_seed,
        forbid_token_ids=[tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id],
    )
    return samples.texts(tokenizer), samples.ended.count(False), samples.wall_seconds


def score_set(
    oracle: CNSOracleV1, judge: CNSOracleV1, strings: list[str], train: set[str] | None
) -> tuple[dict[str, Any], np.ndarray]:
    """Figures of one set of strings, and the rewards (all candidate objectives) of every string (0 if invalid)."""
    result = oracle(strings)
    judged = judge(strings)
    valid = result.valid
    unique, rows = buildkit.first_rows([key if ok else None for key, ok in zip(result.keys, valid, strict=True)])
    rewards = result.rewards[rows]
    columns = {name: rewards[:, k] for k, name in enumerate(oracle.objective_names)}
    columns["tpsa"] = result.properties["tpsa"][rows]
    figures: dict[str, Any] = {
        "strings": len(strings),
        "validity": float(valid.mean()),
        "unique_valid": len(unique),
        "uniqueness": len(unique) / max(1, int(valid.sum())),
        "objective_mean": {n: float(v.mean()) for n, v in columns.items()},
        "objective_std": {n: float(v.std()) for n, v in columns.items()},
        "raw_property_mean": {n: float(np.nanmean(result.properties[n][rows])) for n in result.properties},
        "correlations": buildkit.correlation_matrices(columns),
        "oracle_vs_judge_bbb": buildkit.agreement(rewards[:, [2]], judged.rewards[rows][:, [2]], ["bbb"])["bbb"],
    }
    if train is not None:
        figures["novelty"] = sum(s not in train for s in unique) / max(1, len(unique))
        figures["invalid_reasons"] = buildkit.reason_counts(result.reasons, _reason_class())
    return figures, np.where(valid[:, None], result.rewards, 0.0)


def _reason_class() -> Any:
    from morbench.envs.cns.build_evaluate import REASON_CLASS

    return REASON_CLASS


SCREENED_DRUGS = {  # further reference drugs measured as candidates (not chosen: see the env card)
    "fexofenadine": "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN1CCC(CC1)C(O)(c1ccccc1)c1ccccc1",
    "ciprofloxacin": "OC(=O)c1cn(C2CC2)c2cc(N3CCNCC3)c(F)cc2c1=O",
}


def candidate_screen(strings: list[str]) -> dict[str, Any]:
    """Every candidate objective on the unique valid molecules of ``strings``, with CNS-v0's own BBB oracle.

    Raw RDKit values (TPSA, weight, HBD, HBA, Crippen logP, aromatic rings, ESOL log S, ECFP4 Tanimoto to each
    reference drug) next to v0's ``qed``, ``sa`` and ``bbb``: the correlation matrices the v1 sets were chosen from.
    """
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator, rdMolDescriptors

    from morbench.envs.cns.env import sa_objective
    from morbench.envs.cns.objectives_v1 import average_mol_weight, esol_log_solubility

    model = load_bbb_model(ASSETS_DIR, ORACLE_MODEL)
    morgan = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    references = {**REFERENCE_DRUGS, **SCREENED_DRUGS}
    reference_fps = {name: morgan.GetFingerprint(Chem.MolFromSmiles(smiles)) for name, smiles in references.items()}
    seen: set[str] = set()
    records, rows = [], []
    for string in strings:
        record = process_smiles(string, model.config.spec)
        if record.canonical is None or record.error is not None or record.canonical in seen:
            continue
        seen.add(record.canonical)
        mol = Chem.MolFromSmiles(record.canonical)
        fp = morgan.GetFingerprint(mol)
        row = {
            "qed": record.qed,
            "sa": float(sa_objective(record.sa)),
            "tpsa": rdMolDescriptors.CalcTPSA(mol),
            "mol_weight": average_mol_weight(mol),
            "hbd": rdMolDescriptors.CalcNumHBD(mol),
            "hba": rdMolDescriptors.CalcNumHBA(mol),
            "logp": rdMolDescriptors.CalcCrippenDescriptors(mol)[0],
            "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings(mol),
            "esol_log_s": esol_log_solubility(mol),
        }
        for name, reference in reference_fps.items():
            row[f"sim_{name}"] = DataStructs.TanimotoSimilarity(fp, reference)
        records.append(record)
        rows.append(row)
    columns = {name: np.array([row[name] for row in rows], dtype=np.float64) for name in rows[0]}
    columns["bbb"] = model.probability(*feature_matrix(records, model.config.spec))
    return {
        "molecules": len(rows),
        "bbb_model": "CNS-v0's oracle (assets/bbb_oracle)",
        "reference_drugs": references,
        "mean": {name: float(values.mean()) for name, values in columns.items()},
        "correlations": buildkit.correlation_matrices(columns),
    }


# -- stage 4: the conflict check --------------------------------------------------------------------------------
def conflict_check(rewards: np.ndarray, weights: np.ndarray, n: int) -> dict[str, Any]:
    """Per-preference best-of-``n`` against uniform-preference best-of-``n`` on the same samples.

    ``rewards`` (samples x K, invalid samples 0) is cut into disjoint repetitions of ``len(weights) * n``
    samples; in each, preference ``g`` gets its own batch of ``n``. The preference-specific selection keeps the
    sample of batch ``g`` with the highest ``w_g . r``; the uniform selection keeps the one with the highest
    uniform utility (one policy, the same sample budget). Both sets of ``len(weights)`` picks are scored by
    hypervolume (reference 0), served utility ``mean_g w_g . r(pick_g)`` and expected utility
    ``mean_g max over the set of w_g . r``; ``dominated_preferences`` is the fraction of preferences whose
    preference-specific pick has a strictly higher ``w_g``-utility than every uniform pick;
    ``specific_not_dominated_by_uniform`` and ``uniform_dominated_by_specific`` are the fractions of picks that
    no pick of the other set dominates / that some pick of the other set dominates.
    """
    grid, k = len(weights), weights.shape[1]
    uniform = np.full(k, 1.0 / k)
    repetitions = len(rewards) // (grid * n)
    if repetitions < 1:
        raise ValueError(f"{len(rewards)} samples cannot give {grid} preferences {n} samples each")
    rows: dict[str, list[float]] = {
        key: []
        for key in (
            "hv_specific",
            "hv_uniform",
            "served_specific",
            "served_uniform",
            "expected_specific",
            "expected_uniform",
            "dominated_preferences",
            "specific_not_dominated_by_uniform",
            "uniform_dominated_by_specific",
        )
    }
    for rep in range(repetitions):
        block = rewards[rep * grid * n : (rep + 1) * grid * n].reshape(grid, n, k)
        specific = np.stack([block[g][np.argmax(block[g] @ weights[g])] for g in range(grid)])
        uniform_picks = np.stack([block[g][np.argmax(block[g] @ uniform)] for g in range(grid)])
        rows["hv_specific"].append(hypervolume(specific, np.zeros(k)))
        rows["hv_uniform"].append(hypervolume(uniform_picks, np.zeros(k)))
        rows["served_specific"].append(float(np.mean(np.sum(weights * specific, axis=1))))
        rows["served_uniform"].append(float(np.mean(np.sum(weights * uniform_picks, axis=1))))
        rows["expected_specific"].append(float(np.mean(np.max(weights @ specific.T, axis=1))))
        best_uniform = np.max(weights @ uniform_picks.T, axis=1)
        rows["expected_uniform"].append(float(np.mean(best_uniform)))
        own = np.sum(weights * specific, axis=1)
        rows["dominated_preferences"].append(float(np.mean(own > best_uniform + 1e-12)))
        rows["specific_not_dominated_by_uniform"].append(
            float(np.mean([not _dominated(p, uniform_picks) for p in specific]))
        )
        rows["uniform_dominated_by_specific"].append(float(np.mean([_dominated(p, specific) for p in uniform_picks])))
    out: dict[str, Any] = {"n_per_preference": n, "preferences": grid, "repetitions": repetitions}
    for key, values in rows.items():
        out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    out["hv_ratio_specific_over_uniform"] = out["hv_specific"]["mean"] / max(out["hv_uniform"]["mean"], 1e-300)
    return out


def _dominated(point: np.ndarray, others: np.ndarray) -> bool:
    """Whether some row of ``others`` is >= ``point`` everywhere and > somewhere (maximisation)."""
    return bool(np.any(np.all(others >= point, axis=1) & np.any(others > point, axis=1)))


def conflict_checks(rewards: np.ndarray, names: Sequence[str], best_of: Sequence[int]) -> dict[str, Any]:
    out = {}
    for label, (objectives, divisions) in OBJECTIVE_SETS.items():
        columns = [list(names).index(name) for name in objectives]
        weights = simplex_lattice(len(objectives), divisions)
        out[label] = {
            "objectives": list(objectives),
            "lattice_divisions": divisions,
            "results": [
                conflict_check(rewards[:, columns], weights, n) for n in best_of if len(rewards) >= len(weights) * n
            ],
        }
    return out


# -- the build --------------------------------------------------------------------------------------------------
def build(config: BuildConfig) -> dict[str, Any]:
    torch.set_num_threads(1)
    wall = time.perf_counter()
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    timings = Timings()
    report: dict[str, Any] = {
        "command": "python -m morbench.envs.cns.build_v1" + (f" --prior {config.prior}" if config.prior else ""),
        "hardware": hardware_record(),
        "versions": {"python": platform.python_version(), **package_versions(PACKAGES)},
        "torch_threads": torch.get_num_threads(),
        "timings_seconds": timings.seconds,
        "reference_drugs": REFERENCE_DRUGS,
    }
    with timings("bbb_models"):
        report["bbb"] = build_bbb_models(config)
    with timings("prior"):
        report["prior"] = install_prior(config)
    oracle = CNSOracleV1(load_bbb_model(out, ORACLE_MODEL), ALL_OBJECTIVES, workers=config.workers)
    judge = oracle.with_model(load_bbb_model(out, JUDGE_MODEL))
    train = set(read_smiles_gz(ASSETS_DIR / TRAIN_SMILES))
    try:
        with timings("v1_prior_samples"):
            strings, truncated, seconds = sample_strings(out / "prior", config)
            figures, rewards = score_set(oracle, judge, strings, train)
            report["prior_samples"] = {
                **figures,
                "truncated_at_max_length": truncated,
                "sampling_seconds": seconds,
                "seed": config.sample_seed,
                "temperature": 1.0,
            }
        with timings("conflict_check"):
            report["conflict_check"] = conflict_checks(rewards, ALL_OBJECTIVES, config.best_of)
        with timings("v0_prior_samples"):
            strings, _, _ = sample_strings(ASSETS_DIR / "prior", config)
            report["v0_prior_samples"], _ = score_set(oracle, judge, strings, train)
        with timings("candidate_screen"):
            report["candidate_screen_v0_prior"] = candidate_screen(strings)
        with timings("zinc_test"):
            zinc = read_smiles_gz(ASSETS_DIR / TEST_SMILES)[: config.zinc_molecules]
            report["zinc_test"], _ = score_set(oracle, judge, zinc, None)
    finally:
        oracle.close()
        judge.close()
    timings.seconds["total_wall"] = time.perf_counter() - wall
    report["hardware"]["load_average_at_end"] = buildkit.load_average()
    write_report(out / REPORT_NAME, report)
    write_manifest(out)
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m morbench.envs.cns.build_v1", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=V1_ASSETS_DIR)
    parser.add_argument(
        "--prior", type=Path, default=None, help="a finished `python -m morbench.envs.cns.prior_v1` output"
    )
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    return build(BuildConfig(out_dir=args.out, prior=args.prior, samples=args.samples, workers=args.workers))


if __name__ == "__main__":
    main()
