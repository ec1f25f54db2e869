"""``morbench build-assets summarize``, stage 3 (measurements): prior samples on the test papers scored by the
oracle and the judge, reference texts, and the throughput of the prior and of the scorers."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.buildkit import (
    agreement,
    distribution_summary,
    pairwise_correlations,
    reason_classifier,
    reason_counts,
)
from morbench.envs.summarize.env import REBUILD_COMMAND, SummaryJudge, SummaryOracle
from morbench.envs.summarize.text import split_sentences
from morbench.seeding import preference_seed

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from morbench.core import Context, ScoreResult
    from morbench.envs.summarize.build import BuildConfig
    from morbench.envs.summarize.env import SummarizeEnv

__all__ = ["evaluate_prior", "oracle_throughput", "reference_texts", "sample_figures", "sampling_throughput"]

# invalid reasons of the Summarize oracle, grouped for the report
REASON_CLASS = reason_classifier(
    {p: p for p in ("overlong", "empty", "the summary contains U+FFFD", "special token", "no document")},
    other=lambda reason: reason.split(":")[0],
)


def evaluate_prior(config: BuildConfig) -> dict[str, Any]:
    """Prior samples on the test papers, scored by the oracle and the judge, plus throughput figures."""
    from morbench.envs.summarize.env import OBJECTIVE_NAMES
    from morbench.envs.summarize.policy import ensure_prior
    from morbench.models import load_causal_lm
    from morbench.sampling import sample_sequences

    env = _test_env(config)
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

    contexts = [c for c in _contexts(env) for _ in range(config.samples_per_document)]
    sequences, logprobs = [], []
    batches = range(0, len(contexts), config.batch_size)
    for start_index in _progress(batches, "prior samples", config):
        chunk: list[Context | None] = list(contexts[start_index : start_index + config.batch_size])
        # the protocol's per-index seed rule, indexed by the batch's first sample (the committed figures used it)
        seed = preference_seed(config.seed, start_index)
        samples = sample_sequences(model, env, chunk, seed, 1.0, 1.0, batch_size=config.batch_size)
        assert samples.logprobs is not None, "sample_sequences returns the samples' log-probabilities"
        sequences.extend(samples.sequences)
        logprobs.extend(samples.logprobs.tolist())
    oracle, judge = env.score(sequences, contexts), env.judge_score(sequences, contexts)
    section["prior"] = sample_figures(oracle, judge, OBJECTIVE_NAMES)
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


def sampling_throughput(model: PreTrainedModel, env: SummarizeEnv, config: BuildConfig) -> dict[str, Any]:
    """Generated tokens per second of the KV-cache sampler for batches of 8 and 16 test prompts."""
    import torch

    from morbench.sampling import prompt_tensors, sample

    out: dict[str, Any] = {
        "prompt_width": env.max_prompt_length,
        "max_new_tokens": env.max_length,
        "threads": torch.get_num_threads(),
    }
    for batch in (8, 16):
        prompt_ids, prompt_mask = prompt_tensors(env, list(_contexts(env)[:batch]))
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


def sample_figures(oracle: ScoreResult, judge: ScoreResult, names: Sequence[str]) -> dict[str, Any]:
    valid = oracle.valid
    figures: dict[str, Any] = {
        "valid_fraction": float(valid.mean()),
        "invalid_reasons": reason_counts(oracle.reasons, REASON_CLASS),
        "mean_rewards": dict(zip(names, oracle.rewards.mean(axis=0).tolist(), strict=True)),
        "mean_judge_rewards": dict(zip(names, judge.rewards.mean(axis=0).tolist(), strict=True)),
    }
    if valid.sum() >= 3:
        r, j = oracle.rewards[valid].astype(np.float64), judge.rewards[valid].astype(np.float64)
        figures["mean_rewards_valid"] = dict(zip(names, r.mean(axis=0).tolist(), strict=True))
        figures["std_rewards_valid"] = dict(zip(names, r.std(axis=0).tolist(), strict=True))
        figures["mean_judge_rewards_valid"] = dict(zip(names, j.mean(axis=0).tolist(), strict=True))
        figures["objective_correlations_valid"] = pairwise_correlations(dict(zip(names, r.T, strict=True)), "-")
        figures["oracle_judge_agreement_valid"] = agreement(r, j, names)
        best = r.min(axis=1).max()
        figures["best_worst_objective_valid"] = float(best)
        figures["properties_valid"] = {
            name: distribution_summary(values[valid])
            for name, values in oracle.properties.items()
            if np.isfinite(values[valid]).all()
        }
    return figures


def reference_texts(config: BuildConfig, names: Sequence[str]) -> dict[str, Any]:
    """Oracle and judge means of texts that are not policy samples: the gold summaries, the abstracts' first
    sentences (a 'lead' summary) and the whole abstracts (pure copying). They are scored with ``max_length=512``
    so that the overlong rule does not hide their rewards; ``overlong_at_max_length`` says how many would be
    invalid at the task's ``max_length``."""

    env = _test_env(config, max_length=512)
    contexts = _contexts(env)
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


def oracle_throughput(
    env: SummarizeEnv, sequences: list[str], contexts: list[Context], config: BuildConfig
) -> dict[str, Any]:
    """Summaries per second scored from a cold cache (embedder already loaded), oracle and judge."""

    fresh = _test_env(config)
    by_key = {c.key: c for c in _contexts(fresh)}
    contexts = [by_key[c.key] for c in contexts]
    out = {}
    for name, scorer in (("oracle", fresh.oracle), ("judge", fresh.judge)):
        assert isinstance(scorer, (SummaryOracle, SummaryJudge))
        scorer.reference_embeddings([c.data for c in by_key.values()])  # per-document work, done before timing
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


def _test_env(config: BuildConfig, max_length: int | None = None) -> SummarizeEnv:
    """The Summarize env on the test papers with the build's assets, cache and lengths."""
    from morbench.envs.summarize.env import SummarizeEnv

    return SummarizeEnv(
        split="test",
        max_length=max_length or config.max_length,
        max_prompt_length=config.max_prompt_length,
        assets_dir=config.assets_dir,
        cache_dir=config.cache_dir,
    )


def _contexts(env: SummarizeEnv) -> list[Context]:
    """The env's papers (a Summarize env always has them)."""
    assert env.contexts is not None
    return env.contexts


def _progress(iterable: Iterable[int], desc: str, config: BuildConfig) -> Iterable[int]:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not config.progress)
