"""Builds the assets of ``morbench/QM9-v1`` (``morbench build-assets qm9 --version 1``) into ``assets_v1/``.

QM9-v1 keeps QM9-v0's prior, tokenizer, domain, split and reward transforms (it reads ``prior/`` and
``train_smiles.txt.gz`` from v0's ``assets/``) and changes the training oracle and the judges, so that the
judges can catch a policy that exploits the training oracle's errors:

1. data: QM9-v0's data stage, then a seeded molecule-level split of the training split (and of the validation
   split) into two disjoint halves A and B: a ``numpy.random.default_rng(HALF_SEED)`` permutation of the sorted
   canonical SMILES of each split, the first half A; the report checks no canonical SMILES is in both;
2. oracles: v0's builder (``build_models.build_oracles``) with the v0 configurations, the fingerprint-MLP
   training oracle on half A and the graph-convolution judge (used for alpha and U0) on half B;
3. xtb: GFN2-xTB gaps (``envs/qm9/xtb.py``) of a seeded calibration sample of half B, a least-squares line to
   QM9's DFT gap (``xtb_gap_calibration.json``; a spread-matching line is reported for comparison), and the raw
   and calibrated xTB gaps on the test split;
   the test split also gives the correlation of the oracle's and each judge's errors, for v0 and v1;
4. probe: best-of-N reward hacking. ``--probe-samples`` prior samples scored by the training oracle; the top
   ``--probe-top-fraction`` of them (unique valid molecules) by each objective and by the uniform-preference
   mean are judged; the judge gap (mean oracle reward - mean judge reward) of each selection is reported with
   a 95% Student-t interval next to the gap of a random reference sample of the prior, for v1 and for v0;
5. ``build_report.json`` and ``MANIFEST.sha256``.

The full build takes about 30 minutes on one core. Seeded, one torch thread, one OpenMP thread for xTB.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.buildkit import BuildRun, agreement, command_line, correlation_matrices, first_rows, pearson
from morbench.envs.qm9.build import PACKAGES, BuildConfig
from morbench.envs.qm9.build_data import Dataset, load_qm9_table, prepare_dataset, reward_transforms
from morbench.envs.qm9.build_models import build_oracles
from morbench.envs.qm9.env import ASSETS_DIR, REBUILD_COMMAND_V1, V1_ASSETS_DIR, load_transform
from morbench.envs.qm9.predictors import PROPERTY_NAMES, PropertyPredictor
from morbench.envs.qm9.rewards import DEFAULT_GAP_TARGET_EV, DEFAULT_GAP_WIDTH_EV, OBJECTIVE_NAMES

if TYPE_CHECKING:
    from morbench.core import Oracle

HALF_SEED = 20_261_202
HALF_PARTS = {"oracle": ("train_a", "valid_a"), "judge": ("train_b", "valid_b")}
PACKAGES_V1 = (*PACKAGES, "tblite")

REPRODUCTION_TOLERANCES_V1 = {
    ("oracle", "test", "alpha_bohr3", "mae"): 0.05,
    ("oracle", "test", "gap_ev", "mae"): 0.01,
    ("oracle", "test", "u0_hartree", "mae"): 0.001,
    ("judge", "test", "alpha_bohr3", "mae"): 0.05,
    ("judge", "test", "u0_hartree", "mae"): 0.001,
    ("xtb", "test", "calibrated_mae_ev"): 0.01,
    ("xtb", "test", "pearson"): 0.01,
}

__all__ = ["HALF_PARTS", "HALF_SEED", "BuildConfigV1", "judge_gap", "main", "split_halves"]


@dataclasses.dataclass
class BuildConfigV1:
    """What ``morbench build-assets qm9 --version 1`` builds and how (the predictors' configs are v0's)."""

    assets_dir: Path = V1_ASSETS_DIR
    shared_dir: Path = ASSETS_DIR  # QM9-v0's assets: the prior the probe samples from
    models: BuildConfig = dataclasses.field(default_factory=BuildConfig)
    half_seed: int = HALF_SEED
    calibration_molecules: int = 2_000  # xTB calibration sample, drawn from half B of the training split
    test_molecules: int | None = None  # xTB on this many test molecules (None: the whole test split)
    probe_samples: int = 20_000
    probe_top_fraction: float = 0.01
    probe_reference: int = 2_000  # unique valid prior samples judged as the prior's own reference
    sample_seed: int = 0
    skip_oracles: bool = False
    limit: int | None = None
    threads: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        self.assets_dir, self.shared_dir = Path(self.assets_dir), Path(self.shared_dir)
        if not 0 < self.probe_top_fraction < 1:
            raise ValueError(f"probe_top_fraction={self.probe_top_fraction} must be in (0, 1), e.g. 0.01")
        if self.calibration_molecules < 10:
            raise ValueError(f"calibration_molecules={self.calibration_molecules}: use >= 10")


def parse_args(argv: Sequence[str] | None) -> BuildConfigV1:
    parser = argparse.ArgumentParser(
        prog=REBUILD_COMMAND_V1, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assets-dir", type=Path, default=V1_ASSETS_DIR, help="where to write QM9-v1's assets")
    parser.add_argument("--shared-dir", type=Path, default=ASSETS_DIR, help="QM9-v0's assets (the prior)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the figures reproducible)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--skip-oracles", action="store_true", help="keep the existing oracle and judge")
    parser.add_argument("--oracle-epochs", type=int, default=None, help="override the oracle's max epochs (30)")
    parser.add_argument("--judge-epochs", type=int, default=None, help="override the judge's max epochs (25)")
    parser.add_argument("--calibration-molecules", type=int, default=2_000)
    parser.add_argument("--test-molecules", type=int, default=None, help="xTB on only this many test molecules")
    parser.add_argument("--probe-samples", type=int, default=20_000)
    parser.add_argument("--probe-top-fraction", type=float, default=0.01)
    parser.add_argument("--probe-reference", type=int, default=2_000)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N QM9 rows (smoke tests only)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    config = BuildConfigV1(
        assets_dir=args.assets_dir,
        shared_dir=args.shared_dir,
        calibration_molecules=args.calibration_molecules,
        test_molecules=args.test_molecules,
        probe_samples=args.probe_samples,
        probe_top_fraction=args.probe_top_fraction,
        probe_reference=args.probe_reference,
        skip_oracles=args.skip_oracles,
        limit=args.limit,
        threads=args.threads,
        progress=not args.no_progress,
    )
    config.models.assets_dir, config.models.progress = config.assets_dir, config.progress
    if args.oracle_epochs is not None:
        config.models.oracle.epochs = args.oracle_epochs
    if args.judge_epochs is not None:
        config.models.judge.epochs = args.judge_epochs
    return config


# -- stage 1: the halves ----------------------------------------------------------------------------------------
def split_halves(data: Dataset, seed: int = HALF_SEED) -> tuple[Dataset, dict[str, Any]]:
    """Relabel ``train`` as ``train_a``/``train_b`` and ``valid`` as ``valid_a``/``valid_b`` (test unchanged).

    Each split's molecules (one row per canonical SMILES, sorted) are permuted by one seeded generator and
    cut in two; half A gets the first ``n // 2``. Returns the relabelled dataset and a report of the split.
    """
    rng = np.random.default_rng(seed)
    split = data.split.astype("<U8")
    for name in ("train", "valid"):
        index = np.flatnonzero(data.split == name)
        order = rng.permutation(len(index))
        split[index[order[: len(index) // 2]]] = f"{name}_a"
        split[index[order[len(index) // 2 :]]] = f"{name}_b"
    halves = Dataset(data.smiles, data.properties, split, data.report)
    members = {part: set(halves.part(part)[0]) for part in ("train_a", "train_b", "valid_a", "valid_b", "test")}
    half_a, half_b = members["train_a"] | members["valid_a"], members["train_b"] | members["valid_b"]
    report = {
        "rule": (
            f"numpy.random.default_rng({seed}).permutation of the sorted canonical SMILES of the train split, then "
            "of the valid split: the first n // 2 of each are half A (oracle), the rest half B (judge)"
        ),
        "seed": seed,
        "sizes": {part: len(smiles) for part, smiles in members.items()},
        "canonical_smiles_in_both_halves": len(half_a & half_b),
        "canonical_smiles_of_a_half_in_test": len((half_a | half_b) & members["test"]),
        "sha256": {
            part: hashlib.sha256("\n".join(halves.part(part)[0]).encode()).hexdigest()
            for part in ("train_a", "train_b")
        },
    }
    if report["canonical_smiles_in_both_halves"] or report["canonical_smiles_of_a_half_in_test"]:
        raise SystemExit(f"the halves overlap: {report}")
    return halves, report


# -- stage 3: xTB calibration and test-split errors ---------------------------------------------------------------
def xtb_stage(config: BuildConfigV1, halves: Dataset) -> dict[str, Any]:
    from morbench.envs.qm9.molecules import parse_qm9_molecule
    from morbench.envs.qm9.xtb import EMBED_SEED, MMFF_MAX_ITERATIONS, XTB_METHOD, GapCalibration, xtb_gaps

    rng = np.random.default_rng(config.half_seed + 1)
    train_b, train_b_props = halves.part("train_b")
    pick = np.sort(rng.choice(len(train_b), size=min(config.calibration_molecules, len(train_b)), replace=False))
    start = time.perf_counter()
    cal_raw, cal_failures = xtb_gaps([train_b[i] for i in pick])
    cal_seconds = time.perf_counter() - start
    ok = ~np.isnan(cal_raw)
    calibration = GapCalibration.fit(cal_raw[ok], train_b_props[pick[ok], 1])
    (config.assets_dir / "xtb_gap_calibration.json").write_text(
        json.dumps(
            {
                "description": (
                    "dft_gap_ev = slope * xtb_gap_ev + intercept: least squares on a calibration sample of half B "
                    "of the training split"
                ),
                **calibration.to_dict(),
                "method": XTB_METHOD,
                "embed_seed": EMBED_SEED,
                "mmff_max_iterations": MMFF_MAX_ITERATIONS,
            },
            indent=2,
        )
        + "\n"
    )

    test, test_props = halves.part("test")
    test_pick = np.arange(len(test))
    if config.test_molecules is not None and config.test_molecules < len(test):
        test_pick = np.sort(rng.choice(len(test), size=config.test_molecules, replace=False))
    start = time.perf_counter()
    test_raw, test_failures = xtb_gaps([test[i] for i in test_pick])
    test_seconds = time.perf_counter() - start
    ok_test = ~np.isnan(test_raw)
    truth = test_props[test_pick[ok_test], 1]
    raw, calibrated = test_raw[ok_test], calibration(test_raw[ok_test])
    spread = GapCalibration.fit_matching_spread(cal_raw[ok], train_b_props[pick[ok], 1])
    band = load_transform(config.shared_dir).with_gap_band  # the gap objective's reward, at the default band

    def gap_reward(gaps: np.ndarray) -> float:
        properties = np.zeros((len(gaps), 3))
        properties[:, 1] = gaps
        return float(band(DEFAULT_GAP_TARGET_EV, DEFAULT_GAP_WIDTH_EV)(properties)[:, 1].mean())

    section: dict[str, Any] = {
        "method": XTB_METHOD,
        "conformer": f"RDKit AddHs + ETKDGv3 (randomSeed {EMBED_SEED}) + MMFF94 (max {MMFF_MAX_ITERATIONS} iterations)",
        "calibration": {
            "sample": f"{len(pick)} molecules of half B of the training split (seed {config.half_seed + 1})",
            **calibration.to_dict(),
            "pearson": pearson(cal_raw[ok], train_b_props[pick[ok], 1]),
            "mean_gap_reward": {
                "dft": gap_reward(train_b_props[pick[ok], 1]),
                "calibrated_xtb": gap_reward(calibration(cal_raw[ok])),
                "spread_matching_xtb": gap_reward(spread(cal_raw[ok])),
            },
            "failures": len(cal_failures),
            "failure_reasons": sorted(set(cal_failures.values()))[:10],
            "seconds_per_molecule": cal_seconds / len(pick),
        },
        "test": {
            "molecules": len(test_pick),
            "failures": len(test_failures),
            "failure_reasons": sorted(set(test_failures.values()))[:10],
            "pearson": pearson(raw, truth),
            "raw_mae_ev": float(np.mean(np.abs(raw - truth))),
            "raw_mean_error_ev": float(np.mean(raw - truth)),
            "calibrated_mae_ev": float(np.mean(np.abs(calibrated - truth))),
            "calibrated_rmse_ev": float(np.sqrt(np.mean((calibrated - truth) ** 2))),
            "calibrated_mean_error_ev": float(np.mean(calibrated - truth)),
            "seconds_per_molecule": test_seconds / len(test_pick),
            "mean_gap_reward": {
                "dft": gap_reward(truth),
                "calibrated_xtb": gap_reward(calibrated),
                "spread_matching_xtb": gap_reward(spread(raw)),
            },
            "spread_matching_fit": {
                **spread.to_dict(),
                "calibrated_mae_ev": float(np.mean(np.abs(spread(raw) - truth))),
            },
        },
    }

    # the correlation of the oracle's and the judge's errors on the test split (the defect QM9-v1 removes)
    mols = [parse_qm9_molecule(test[i]) for i in test_pick[ok_test]]
    truth_all = test_props[test_pick[ok_test]]
    errors: dict[str, dict[str, float]] = {}
    for version, directory in (("v0", config.shared_dir), ("v1", config.assets_dir)):
        oracle = PropertyPredictor.load(directory, "oracle_mlp").predict(mols) - truth_all
        judge = PropertyPredictor.load(directory, "judge_gnn").predict(mols) - truth_all
        errors[version] = {name: pearson(oracle[:, k], judge[:, k]) for k, name in enumerate(PROPERTY_NAMES)}
        if version == "v1":
            errors["v1"]["gap_ev_learned_judge"] = errors["v1"]["gap_ev"]
            errors["v1"]["gap_ev"] = pearson(oracle[:, 1], calibrated - truth)
    section["error_correlation_oracle_vs_judge_on_test"] = {
        "what": "Pearson r of (oracle - DFT) and (judge - DFT) on the test molecules xTB scored; v1's gap judge is "
        "calibrated xTB (gap_ev_learned_judge: v1's GNN, trained on half B, for comparison)",
        **errors,
    }
    return section


# -- stage 4: the best-of-N reward-hacking probe ---------------------------------------------------------------
def judge_gap(oracle: np.ndarray, judge: np.ndarray) -> dict[str, Any]:
    """Mean of ``oracle - judge`` (paired, one row per molecule) with its 95% Student-t interval."""
    from morbench.metrics import student_t_quantile

    difference = np.asarray(oracle, np.float64) - np.asarray(judge, np.float64)
    n = len(difference)
    mean = float(difference.mean())
    se = float(difference.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    half = student_t_quantile(0.975, n - 1) * se if n > 1 else float("nan")
    return {"mean": mean, "ci95": [mean - half, mean + half], "se": se, "n": n}


def _difference(probe: dict[str, Any], prior: dict[str, Any]) -> dict[str, Any]:
    """Probe gap minus the prior's gap, with a Welch-style 95% normal interval."""
    mean = probe["mean"] - prior["mean"]
    half = 1.96 * math.sqrt(probe["se"] ** 2 + prior["se"] ** 2)
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def probe_selections(rewards: np.ndarray, top: int) -> dict[str, np.ndarray]:
    """Rows of the ``top`` best molecules by each objective's reward and by the uniform-preference mean."""
    scores = {name: rewards[:, k] for k, name in enumerate(OBJECTIVE_NAMES)}
    scores["uniform"] = rewards.mean(axis=1)
    # stable sort on the negated score: ties keep the (sorted canonical SMILES) order, so the choice is reproducible
    return {name: np.sort(np.argsort(-score, kind="stable")[:top]) for name, score in scores.items()}


def run_probe(
    keys: list[str], oracle: Oracle, judge: Oracle, top: int, reference: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Judge gaps of the best-of-N selections and of the reference sample, for one oracle/judge pair."""
    oracle_rewards = oracle(keys).rewards.astype(np.float64)
    selections = probe_selections(oracle_rewards, top)
    needed = sorted(set(reference.tolist()).union(*(rows.tolist() for rows in selections.values())))
    judged = judge([keys[i] for i in needed])
    judge_rewards = np.full_like(oracle_rewards, np.nan)
    judge_rewards[needed] = judged.rewards  # a judge failure scores the floor, as the scorer sees it
    failed = np.zeros(len(keys), dtype=bool)
    failed[needed] = ~judged.valid

    def summary(rows: np.ndarray) -> dict[str, Any]:
        o, j = oracle_rewards[rows], judge_rewards[rows]
        gaps = {name: judge_gap(o[:, k], j[:, k]) for k, name in enumerate(OBJECTIVE_NAMES)}
        gaps["uniform_mean"] = judge_gap(o.mean(1), j.mean(1))
        judged_rows = ~failed[rows]
        return {
            "molecules": len(rows),
            "judge_failures": int(failed[rows].sum()),
            "judge_gap_without_failures": {
                name: judge_gap(o[judged_rows, k], j[judged_rows, k]) for k, name in enumerate(OBJECTIVE_NAMES)
            },
            "oracle_mean_reward": dict(zip(OBJECTIVE_NAMES, o.mean(0).tolist(), strict=True)),
            "judge_mean_reward": dict(zip(OBJECTIVE_NAMES, j.mean(0).tolist(), strict=True)),
            "judge_gap": gaps,
        }

    prior = summary(reference)
    out: dict[str, Any] = {"prior_reference": prior, "selections": {}}
    for name, rows in selections.items():
        section = summary(rows)
        target = "uniform_mean" if name == "uniform" else name
        section["selected_by"] = "uniform-preference mean reward" if name == "uniform" else f"{name} reward"
        section["gap_on_selected_objective"] = section["judge_gap"][target]
        section["gap_vs_prior_on_selected_objective"] = _difference(
            section["judge_gap"][target], prior["judge_gap"][target]
        )
        out["selections"][name] = section
    agreement_rows = reference[~failed[reference]]
    out["judge_vs_oracle_on_prior_reference"] = agreement(
        oracle_rewards[agreement_rows], judge_rewards[agreement_rows], OBJECTIVE_NAMES
    )
    return out, {"oracle_rewards": oracle_rewards}


def probe_stage(config: BuildConfigV1) -> dict[str, Any]:
    from morbench.buildkit import sample_prior
    from morbench.envs.qm9.env import REBUILD_COMMAND as V0_COMMAND
    from morbench.envs.qm9.env import QM9Env, QM9PropertyOracle, load_judge_v1
    from morbench.models import load_causal_lm

    v0 = QM9Env(assets_dir=config.shared_dir)
    model = load_causal_lm(config.shared_dir / "prior", rebuild_command=V0_COMMAND)
    samples = sample_prior(
        model,
        count=config.probe_samples,
        batch_size=500,
        max_new_tokens=v0.max_length,
        bos_token_id=v0.bos_token_id,
        eos_token_id=v0.eos_token_id,
        pad_token_id=v0.pad_token_id,
        seed=config.sample_seed,
        progress=config.progress,
    )
    scored = v0.score_token_ids(samples.rows)  # v0's and v1's oracles share the domain: the same valid rows
    keys, _ = first_rows(scored.keys)
    top = math.ceil(config.probe_top_fraction * config.probe_samples)
    rng = np.random.default_rng(config.sample_seed + 1)
    reference = np.sort(rng.choice(len(keys), size=min(config.probe_reference, len(keys)), replace=False))

    transform = load_transform(config.shared_dir)
    v1_oracle = QM9PropertyOracle(PropertyPredictor.load(config.assets_dir, "oracle_mlp"), transform)
    v1_judge = load_judge_v1(config.assets_dir, transform)
    start = time.perf_counter()
    v1, extra = run_probe(keys, v1_oracle, v1_judge, top, reference)
    v1_seconds = time.perf_counter() - start
    assert isinstance(v0.oracle, QM9PropertyOracle) and v0.judge is not None
    v0_result, _ = run_probe(keys, QM9PropertyOracle(v0.oracle.predictor, transform), v0.judge, top, reference)
    correlations = correlation_matrices(dict(zip(OBJECTIVE_NAMES, extra["oracle_rewards"].T, strict=True)))
    return {
        "samples": config.probe_samples,
        "sampling": {"temperature": 1.0, "top_p": 1.0, "seed": config.sample_seed, "prior": "QM9-v0's prior"},
        "validity": float(scored.valid.mean()),
        "unique_valid": len(keys),
        "top_fraction": config.probe_top_fraction,
        "selected_per_objective": top,
        "reference": f"{len(reference)} unique valid prior samples (seed {config.sample_seed + 1})",
        "method": (
            "best-of-N over the training oracle: the top ceil(top_fraction * samples) unique valid molecules by one "
            "objective's oracle reward (or by the uniform-preference mean); judge gap = mean oracle reward - mean "
            "judge reward on them, 95% Student-t interval of the paired differences; the prior's gap on a random "
            "reference sample; gap_vs_prior: their difference (95% normal interval); a judge failure counts as "
            "the floor reward 0"
        ),
        "v1": v1,
        "v0": v0_result,
        "v1_oracle_reward_correlations_on_unique_valid": correlations["pearson"],
        "seconds_v1_probe": v1_seconds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    run = BuildRun(
        config.assets_dir,
        packages=PACKAGES_V1,
        command=command_line(REBUILD_COMMAND_V1, argv),
        threads=config.threads,
    )
    assets = run.assets_dir
    report: dict[str, Any] = {"environment": run.environment}
    with run.stage("data"):
        data = prepare_dataset(load_qm9_table(config.limit))
        halves, halves_report = split_halves(data, config.half_seed)
        (assets / "reward_transforms.json").write_text(json.dumps(reward_transforms(data)) + "\n")
        (assets / "task.json").write_text((config.shared_dir / "task.json").read_text())
    report["data"] = {**data.report, "halves": halves_report}
    print(f"data: halves {halves_report['sizes']}")
    if config.skip_oracles:
        if run.previous.get("data", {}).get("halves", {}).get("sha256") != halves_report["sha256"]:
            raise SystemExit("--skip-oracles: the existing oracle and judge were trained on other halves; rebuild them")
        report.update({key: run.previous[key] for key in ("oracle", "judge")})
    else:
        with run.stage("oracles"):
            built = build_oracles(config.models, halves, HALF_PARTS)
        for role in ("oracle", "judge"):
            report[role] = {**run.stamp(built[role], "oracles"), "trained_on": HALF_PARTS[role]}
    with run.stage("xtb"):
        section = xtb_stage(config, halves)
    report["xtb"] = run.stamp(section, "xtb")
    print(f"xtb: test r {section['test']['pearson']:.3f}, calibrated MAE {section['test']['calibrated_mae_ev']:.3f} eV")
    with run.stage("probe"):
        probe = probe_stage(config)
    report["probe"] = run.stamp(probe, "probe")
    for version in ("v1", "v0"):
        for name, selection in probe[version]["selections"].items():
            gap = selection["gap_on_selected_objective"]
            print(
                f"probe {version} top by {name}: gap {gap['mean']:+.3f} [{gap['ci95'][0]:+.3f}, {gap['ci95'][1]:+.3f}]"
            )
    report["stage_seconds_this_run"] = run.timings.seconds
    run.finish(report, REPRODUCTION_TOLERANCES_V1)
    print(f"wrote {run.report_path} and {assets / 'MANIFEST.sha256'}")
    return 0
