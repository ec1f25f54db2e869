"""``morbench build-assets enhancer``: rebuild every Enhancer asset from the ``dnadiffusion`` and ``pyjaspar`` packages.

Stages (all by default, in this order; each adds its figures to ``assets/build_report.json``):

* ``data``: load and split the corpus; write ``reference.json`` (3-mer counts of the chr2 test sequences).
* ``motifs``: JASPAR 2024 PWMs of each cell type's factors with p < 1e-4 thresholds -> ``motifs.json``.
* ``oracle``: the CNN (training rewards) -> ``oracle.safetensors`` + ``oracle.json``.
* ``judge``: the k-mer MLP (held-out judge) -> ``judge.safetensors`` + ``judge.json``.
* ``tokenizer-study``: 4-mer vs single-nucleotide GPT-2 on a short, equal budget (justifies the 4-mer choice).
* ``prior``: the 4-mer GPT-2 prior -> ``prior/``.
* ``evaluate``: figures of the finished assets (prior likelihood, 10,000 prior samples, objective correlations,
  motif enrichment, throughput); then ``MANIFEST.sha256``.

Single-threaded torch (``torch.set_num_threads(1)``) and fixed seeds: on the same machine and library versions a
rebuild reproduces the weights; across machines float summation order may differ, so ``--check`` compares the
new figures with the committed report within tolerances instead of bit-exactly.

One module per stage: ``build_data`` (data, motifs), ``build_networks`` (oracle, judge), ``build_tokenizer_study``,
``build_prior`` and ``build_evaluate`` (evaluation, manifest, ``--check`` tolerances); this module holds the
configuration, the stage-by-stage report and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

from morbench.buildkit import (
    REPORT_NAME,
    command_line,
    compare_reports,
    comparison_failures,
    hardware_record,
    package_versions,
    read_report,
    write_report,
)
from morbench.envs.enhancer.build_data import stage_data, stage_motifs
from morbench.envs.enhancer.build_evaluate import CHECK_TOLERANCES, stage_evaluate, write_enhancer_manifest
from morbench.envs.enhancer.build_networks import stage_judge, stage_oracle
from morbench.envs.enhancer.build_prior import stage_prior
from morbench.envs.enhancer.build_tokenizer_study import stage_tokenizer_study
from morbench.envs.enhancer.env import ASSETS_DIR, RUNTIME_FILES

__all__ = ["BuildConfig", "main"]

STAGE_FUNCTIONS = {
    "data": stage_data,
    "motifs": stage_motifs,
    "oracle": stage_oracle,
    "judge": stage_judge,
    "tokenizer-study": stage_tokenizer_study,
    "prior": stage_prior,
    "evaluate": stage_evaluate,
}
STAGES = tuple(STAGE_FUNCTIONS)
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "pandas",
    "safetensors",
    "biopython",
    "pyjaspar",
    "dnadiffusion",
)


@dataclasses.dataclass
class BuildConfig:
    """Everything the builder's figures depend on (recorded in the report)."""

    seed: int = 0
    judge_seed: int = 1
    motif_p_value: float = 1e-4
    motif_pseudocount: float = 0.8  # per base, spread by background frequency
    prior_samples: int = 10_000
    sample_batch: int = 500
    study_steps: int = 48  # tokenizer study: optimizer steps of both tokenizations (equal sequences seen)
    study_wall_matched_steps: int = 336  # tokenizer study: 4-mer steps matching the nucleotide model's wall time
    study_samples: int = 1_000
    throughput_sequences: int = 4_096
    top_fraction: float = 0.1


def _log(message: str) -> None:
    print(f"[enhancer] {message}", flush=True)


def _hardware() -> dict[str, Any]:
    import torch

    return {**hardware_record(), "torch_threads": torch.get_num_threads()}


def _round(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    return value


class Report:
    """``build_report.json``, updated stage by stage so that stages can be rerun alone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = read_report(path)

    def set(self, section: str, values: dict[str, Any]) -> None:
        if self.path.is_file():  # re-read: another stage may have run meanwhile
            self.data = read_report(self.path)
        self.data[section] = _round(values)
        write_report(self.path, self.data)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="morbench build-assets enhancer", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run (default: all)"
    )
    parser.add_argument("--assets-dir", type=Path, default=ASSETS_DIR, help="where to write the assets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--check", type=Path, default=None, help="a committed build_report.json to compare the new figures with"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.check is not None and not args.check.is_file():
        parser.error(f"--check {args.check}: no such report (pass the committed assets/build_report.json)")

    import torch

    torch.set_num_threads(1)
    config = BuildConfig(seed=args.seed, judge_seed=args.seed + 1)
    assets = args.assets_dir
    assets.mkdir(parents=True, exist_ok=True)
    committed = read_report(args.check) if args.check else None
    from morbench.envs.enhancer.data import load_corpus

    report = Report(assets / REPORT_NAME)
    start = time.perf_counter()
    corpus = load_corpus()
    ordered = [stage for stage in STAGES if stage in args.stages]
    if "data" not in ordered:
        ordered.insert(0, "data")  # cheap, and every stage relies on the split it records
    for stage in ordered:
        _log(f"stage {stage}")
        stage_start, stage_cpu = time.perf_counter(), time.process_time()
        figures = STAGE_FUNCTIONS[stage](corpus, assets, config)
        figures["stage_wall_seconds"] = time.perf_counter() - stage_start
        figures["stage_cpu_seconds"] = time.process_time() - stage_cpu
        figures["hardware"] = _hardware()
        report.set(stage.replace("-", "_"), figures)
    report.set(
        "build",
        {
            "command": command_line("morbench build-assets enhancer", argv),
            "last_stages": ordered,
            "last_run_seconds": time.perf_counter() - start,
            "config": dataclasses.asdict(config),
            "hardware": _hardware(),
            "versions": {**package_versions(PACKAGES), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d"),
        },
    )
    if all((assets / name).is_file() for name in RUNTIME_FILES):
        write_enhancer_manifest(assets)
    if committed is not None:
        comparison = compare_reports(committed, report.data, CHECK_TOLERANCES)
        problems = comparison_failures(comparison)
        if comparison["compared"] == 0:
            problems = [f"no figure of {args.check} is in the new report: nothing was compared"]
        for problem in problems:
            _log(f"check failed: {problem}")
        if problems:
            return 1
        _log("check passed: every compared figure is within tolerance of the committed report")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
