"""``morbench build-assets enhancer``, stage ``prior``: the 4-mer GPT-2 prior, and the likelihood and sample
figures that measure a DNA prior (shared with the tokenizer study and the evaluation)."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.buildkit import sample_prior
from morbench.envs.enhancer.sequences import SEQUENCE_LENGTH, build_dna_tokenizer, sequence_problem

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from morbench.envs.enhancer.build import BuildConfig
    from morbench.envs.enhancer.data import Corpus

__all__ = ["bits_per_bp", "encode_for_prior", "prior_quality", "stage_prior"]


def encode_for_prior(tokenizer: PreTrainedTokenizerBase, sequences: list[str]) -> list[np.ndarray]:
    from morbench.pretrain import encode_corpus

    encoded, dropped = encode_corpus(tokenizer, sequences, max_tokens=SEQUENCE_LENGTH + 2)
    if dropped:
        raise ValueError(f"{len(dropped)} corpus sequences could not be tokenized (first: {sequences[dropped[0]]!r})")
    return encoded


def bits_per_bp(mean_token_nll: float, tokens_with_eos: int) -> float:
    """Per-token NLL (nats, EOS included) of equal-length sequences to bits per base pair."""
    return mean_token_nll * tokens_with_eos / SEQUENCE_LENGTH / math.log(2)


def prior_quality(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    kind: str,
    corpus: Corpus,
    samples: int,
    batch: int,
    seed: int,
) -> tuple[dict[str, Any], list[str]]:
    """Test NLL of a DNA prior and figures of ``samples`` samples (validity, uniqueness, novelty, 3-mer
    spectrum against the natural test sequences); also returns the valid samples."""
    from morbench.envs.enhancer.metrics import kmer_counts, kmer_spectrum_correlation
    from morbench.envs.enhancer.sequences import tokens_per_sequence
    from morbench.pretrain import sequence_nll

    content = tokens_per_sequence(kind)
    test = encode_for_prior(tokenizer, corpus.test.sequences)
    start = time.process_time()
    nll = sequence_nll(model, test, tokenizer.pad_token_id)
    nll_seconds = time.process_time() - start
    # CPU (process) time rather than wall time: the build machine is shared, and with one torch thread CPU time
    # is what a dedicated core would take
    sampled = sample_prior(
        model,
        count=samples,
        batch_size=batch,
        max_new_tokens=content + 1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        seed=seed,
        forbid_token_ids=[tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id],
    )
    sequences, seconds = sampled.texts(tokenizer), sampled.cpu_seconds
    valid = [s for s in sequences if sequence_problem(s) is None]
    reference = kmer_counts(corpus.test.sequences, k=3)
    return {
        "test_nll_nats_per_token": nll,
        "test_nll_bits_per_bp": bits_per_bp(nll, content + 1),
        "test_likelihood_cpu_seconds": nll_seconds,
        "samples": samples,
        "validity": len(valid) / samples,
        "uniqueness": len(set(valid)) / max(len(valid), 1),
        "novelty_vs_train": 1.0 - len(set(valid) & set(corpus.train.sequences)) / max(len(set(valid)), 1),
        "kmer3_pearson": kmer_spectrum_correlation(valid, reference),
        "sampling_cpu_seconds": seconds,
        "sampling_bp_per_cpu_second": samples * SEQUENCE_LENGTH / seconds,
        "sampling_batch": batch,
    }, valid


def stage_prior(corpus: Corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    from morbench.models import CONDITIONING_SLACK, save_causal_lm
    from morbench.pretrain import PretrainConfig, pretrain_gpt2

    tokenizer = build_dna_tokenizer("kmer4")
    train = encode_for_prior(tokenizer, corpus.train.sequences)
    valid = encode_for_prior(tokenizer, corpus.valid.sequences)
    test = encode_for_prior(tokenizer, corpus.test.sequences)
    pretrain = PretrainConfig(n_layer=4, n_embd=192, n_head=4, epochs=4, batch_size=128, seed=config.seed)
    cpu_start = time.process_time()
    # [BOS] + 51 tokens, plus the positions Rewards-in-Context's reward tokens take
    n_positions = len(train[0]) + CONDITIONING_SLACK
    result = pretrain_gpt2(tokenizer, train, valid, n_positions=n_positions, config=pretrain)
    train_cpu = time.process_time() - cpu_start
    save_causal_lm(result.model, assets / "prior", tokenizer)
    from morbench.pretrain import sequence_nll

    test_nll = sequence_nll(result.model, test, tokenizer.pad_token_id)
    tokens = len(train[0]) - 1
    return {
        "architecture": "GPT-2 (transformers GPT2LMHeadModel), tied embeddings",
        "config": dataclasses.asdict(pretrain),
        "n_positions": n_positions,
        "vocabulary": len(tokenizer),
        "parameters": result.num_parameters,
        "format": "[BOS] 50 x 4-mer [EOS]",
        "train_sequences": len(train),
        "steps": result.steps,
        "train_wall_seconds": result.seconds,
        "train_cpu_seconds": train_cpu,
        "final_epoch_train_nll_nats_per_token": result.train_loss,
        "valid_nll_nats_per_token": result.valid_nll,
        "test_nll_nats_per_token": test_nll,
        "valid_nll_bits_per_bp": bits_per_bp(result.valid_nll, tokens),
        "test_nll_bits_per_bp": bits_per_bp(test_nll, tokens),
    }
