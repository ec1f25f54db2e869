"""Builds every asset of ``morbench/QM9-v0`` from the ``qm9pack`` data package.

``morbench build-assets qm9`` runs, in order (seeded, one CPU thread):

1. data: canonicalize QM9's SMILES with RDKit, merge duplicates, split 80/10/10 by sha256 of the canonical SMILES,
   write ``train_smiles.txt.gz``, ``reward_transforms.json`` (CDF knots) and ``task.json`` (max_length);
2. prior: SMILES tokenizer + GPT-2 pretrained on the training split -> ``prior/`` (skip with ``--skip-prior``);
3. oracles: fingerprint-MLP training oracle and graph-convolution judge -> ``oracle_mlp.*``, ``judge_gnn.*``
   (skip with ``--skip-oracles``);
4. evaluation: 10,000 prior samples -> validity, uniqueness, novelty, objective correlations, oracle/judge
   agreement and throughput;
5. ``build_report.json`` (every figure; sections of skipped stages are kept from the previous report) and
   ``MANIFEST.sha256``.

``morbench build-assets qm9 --version 1`` builds QM9-v1's assets instead (``build_v1``).

The full build takes about 40 minutes on one core; ``--skip-prior`` / ``--skip-oracles`` split it in two.
Stages 1-4 live in ``build_data``, ``build_models`` and ``build_evaluate``; shared machinery in ``morbench.buildkit``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from morbench.buildkit import BuildRun, builder_parser, command_line
from morbench.envs.qm9.build_data import Dataset, load_qm9_table, prepare_dataset, reward_transforms, write_gzip_lines
from morbench.envs.qm9.build_evaluate import evaluate_prior
from morbench.envs.qm9.build_models import build_oracles, build_prior
from morbench.envs.qm9.env import ASSETS_DIR, REBUILD_COMMAND
from morbench.envs.qm9.molecules import MAX_HEAVY_ATOMS
from morbench.envs.qm9.predictors import PROPERTY_NAMES, TrainingConfig
from morbench.pretrain import PretrainConfig

PACKAGES = ("qm9pack", "torch", "transformers", "tokenizers", "safetensors", "rdkit", "numpy", "pandas", "morbench")

# the figures a rebuild must reproduce, with absolute tolerances (bit-exact only on the same CPU and torch build)
REPRODUCTION_TOLERANCES = {
    ("prior", "test_nll"): 0.02,
    ("evaluation", "prior", "validity"): 0.01,
    ("evaluation", "prior", "uniqueness"): 0.01,
    ("evaluation", "prior", "novelty"): 0.02,
    ("oracle", "test", "alpha_bohr3", "mae"): 0.05,
    ("oracle", "test", "gap_ev", "mae"): 0.01,
    ("oracle", "test", "u0_hartree", "mae"): 0.001,
    ("judge", "test", "alpha_bohr3", "mae"): 0.05,
    ("judge", "test", "gap_ev", "mae"): 0.01,
    ("judge", "test", "u0_hartree", "mae"): 0.001,
}

__all__ = ["BuildConfig", "Dataset", "main", "prepare_dataset"]

__all__ = ["BuildConfig", "Dataset", "main", "prepare_dataset"]


@dataclasses.dataclass
class BuildConfig:
    """What ``morbench build-assets qm9`` builds and how."""

    assets_dir: Path = ASSETS_DIR
    prior: PretrainConfig = dataclasses.field(
        default_factory=lambda: PretrainConfig(
            n_layer=4, n_embd=192, n_head=4, epochs=3, batch_size=128, learning_rate=1e-3, warmup_steps=200, seed=0
        )
    )
    oracle: TrainingConfig = dataclasses.field(
        default_factory=lambda: TrainingConfig(
            kind="fingerprint_mlp", network={"hidden": 384, "layers": 2, "dropout": 0.1}, epochs=30, patience=6, seed=0
        )
    )
    judge: TrainingConfig = dataclasses.field(
        default_factory=lambda: TrainingConfig(
            kind="graph_conv", network={"hidden": 96, "layers": 4}, epochs=25, patience=6, seed=1
        )
    )
    max_length_slack: int = 8  # max_length = longest tokenized training SMILES + 1 (EOS) + slack
    prior_samples: int = 10_000
    sample_seed: int = 0
    diversity_samples: int = 2_000  # internal diversity on this many unique valid samples (it is quadratic)
    skip_prior: bool = False
    skip_oracles: bool = False
    limit: int | None = None  # use only the first N QM9 rows (smoke tests; never for shipped assets)
    threads: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        self.assets_dir = Path(self.assets_dir)
        if self.prior_samples < 100:
            raise ValueError(f"prior_samples={self.prior_samples} is too few to measure validity; use >= 100")
        if self.limit is not None and self.limit < 100:
            raise ValueError(f"limit={self.limit} leaves too few molecules to split; use >= 100 or no limit")


def parse_args(argv: Sequence[str] | None) -> BuildConfig:
    parser = builder_parser(REBUILD_COMMAND, __doc__, ASSETS_DIR)
    parser.add_argument("--skip-prior", action="store_true", help="keep the existing prior (retrain only the oracles)")
    parser.add_argument("--skip-oracles", action="store_true", help="keep the existing oracle and judge")
    parser.add_argument("--prior-epochs", type=int, default=None, help="override the prior's epochs (default 3)")
    parser.add_argument("--oracle-epochs", type=int, default=None, help="override the oracle's and judge's max epochs")
    parser.add_argument("--prior-samples", type=int, default=10_000, help="samples drawn to evaluate the prior")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N QM9 rows (smoke tests only)")
    parser.add_argument(
        "--version",
        type=int,
        choices=(0, 1),
        default=0,
        help="1: build QM9-v1's assets instead (see --version 1 --help)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    fields = ("assets_dir", "prior_samples", "skip_prior", "skip_oracles", "limit", "threads")
    config = BuildConfig(**{name: getattr(args, name) for name in fields}, progress=not args.no_progress)
    if args.prior_epochs is not None:
        config.prior.epochs = args.prior_epochs
    if args.oracle_epochs is not None:
        config.oracle.epochs = config.judge.epochs = args.oracle_epochs
    return config


def task_version(argv: Sequence[str] | None) -> tuple[int, list[str]]:
    """The ``--version`` of the task to build (0 unless given) and the other arguments."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--version", type=int, choices=(0, 1), default=0)
    known, rest = parser.parse_known_args(list(argv) if argv is not None else sys.argv[1:])
    return known.version, rest


def main(argv: Sequence[str] | None = None) -> int:
    from morbench.assets import write_manifest

    version, rest = task_version(argv)
    if version == 1:  # QM9-v1: its own builder, into assets/v1/
        from morbench.envs.qm9.build_v1 import main as main_v1

        return main_v1(rest)
    config = parse_args(argv)
    run = BuildRun(
        config.assets_dir, packages=PACKAGES, command=command_line(REBUILD_COMMAND, argv), threads=config.threads
    )
    assets = run.assets_dir
    report: dict[str, Any] = {"environment": run.environment}

    with run.stage("data"):
        data = prepare_dataset(load_qm9_table(config.limit))
        train, _ = data.part("train")
        write_gzip_lines(assets / "train_smiles.txt.gz", train)
        (assets / "reward_transforms.json").write_text(json.dumps(reward_transforms(data)) + "\n")
        report["data"] = data.report
    print(f"data: {data.report['molecules']} molecules, split {data.report['split_sizes']}")
    _build_models(config, data, run, report)
    prior_section = report.get("prior") or {}
    _write_task_record(assets, prior_section.get("max_length"))

    ready = (assets / "prior" / "model.safetensors").is_file() and (assets / "oracle_mlp.safetensors").is_file()
    if ready and "max_length" in prior_section:
        write_manifest(assets)  # evaluation loads the env, which verifies the manifest
        with run.stage("evaluation"):
            evaluation = evaluate_prior(config, set(train))
        report["evaluation"] = run.stamp(evaluation, "evaluation")
    else:
        print("evaluation skipped: the prior or the oracles are missing (build them, then rerun)", file=sys.stderr)
    report["stage_seconds_this_run"] = run.timings.seconds
    run.finish(report, REPRODUCTION_TOLERANCES)
    print(f"wrote {run.report_path} and {assets / 'MANIFEST.sha256'}")
    return 0


def _build_models(config: BuildConfig, data: Dataset, run: BuildRun, report: dict[str, Any]) -> None:
    """Train the prior and the oracles, or keep the previous report's sections of those skipped."""
    previous_train = run.previous.get("data", {}).get("train_sha256")
    stale = previous_train is not None and previous_train != data.report["train_sha256"]
    for stage, skip, build in (
        ("prior", config.skip_prior, build_prior),
        ("oracles", config.skip_oracles, build_oracles),
    ):
        sections = ("prior",) if stage == "prior" else ("oracle", "judge")
        if skip:
            if stale:
                raise SystemExit(
                    f"--skip-{stage}: the existing {stage} were built from another training split; rebuild them"
                )
            report.update({key: run.previous[key] for key in sections if key in run.previous})
            continue
        with run.stage(stage):
            built = build(config, data)
        built = {"prior": built} if stage == "prior" else built
        for key in sections:
            report[key] = run.stamp(built[key], stage)


def _write_task_record(assets: Path, max_length: int | None) -> None:
    record = {
        "max_length": max_length,
        "max_heavy_atoms": MAX_HEAVY_ATOMS,
        "elements": ["H", "C", "N", "O", "F"],
        "property_names": list(PROPERTY_NAMES),
    }
    (assets / "task.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
