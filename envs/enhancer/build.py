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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from morbench.assets import write_manifest
from morbench.envs.enhancer.env import ASSETS_DIR, CELL_TYPES, JUDGE_NAME, ORACLE_NAME, RUNTIME_FILES
from morbench.envs.enhancer.sequences import SEQUENCE_LENGTH, build_dna_tokenizer, sequence_problem

__all__ = ["BuildConfig", "main"]

STAGES = ("data", "motifs", "oracle", "judge", "tokenizer-study", "prior", "evaluate")

# one JASPAR 2024 CORE vertebrate profile per factor; the cell type whose motif group it joins
MOTIF_PROFILES = (
    ("HepG2", "MA0114.5", "HNF4A"),
    ("HepG2", "MA0046.3", "HNF1A"),
    ("HepG2", "MA0047.4", "FOXA2"),
    ("HepG2", "MA0102.5", "CEBPA"),
    ("K562", "MA0035.5", "GATA1"),
    ("K562", "MA0091.2", "TAL1::TCF3"),
    ("K562", "MA0493.3", "KLF1"),
    ("K562", "MA0841.2", "NFE2"),
    ("GM12878", "MA0080.7", "SPI1"),
    ("GM12878", "MA1419.2", "IRF4"),
    ("GM12878", "MA0684.3", "RUNX3"),
    ("GM12878", "MA0154.5", "EBF1"),
)

# tolerances of --check (absolute differences to the committed report)
CHECK_TOLERANCES = {
    ("oracle", "test_auroc"): 0.02,
    ("judge", "test_auroc"): 0.02,
    ("prior", "test_nll_bits_per_bp"): 0.02,
    ("evaluate", "prior_samples", "validity"): 0.02,
    ("evaluate", "prior_samples", "kmer3_pearson"): 0.02,
}


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


# -- helpers ---------------------------------------------------------------------------------------------------
def _log(message: str) -> None:
    print(f"[enhancer] {message}", flush=True)


def _versions() -> dict[str, str]:
    out = {}
    for package in ("torch", "transformers", "tokenizers", "numpy", "pandas", "safetensors", "biopython", "pyjaspar"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    out["dnadiffusion"] = metadata.version("dnadiffusion") if _installed("dnadiffusion") else "not installed"
    out["python"] = platform.python_version()
    return out


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def _hardware() -> dict[str, Any]:
    import os

    import torch

    return {
        "processor": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return _pearson(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))


def _correlations(values: np.ndarray, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    out = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            key = f"{names[i]}~{names[j]}"
            out[key] = {
                "pearson": round(_pearson(values[:, i], values[:, j]), 4),
                "spearman": round(_spearman(values[:, i], values[:, j]), 4),
            }
    return out


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
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def set(self, section: str, values: dict[str, Any]) -> None:
        if self.path.is_file():  # re-read: another stage may have run meanwhile
            self.data = json.loads(self.path.read_text())
        self.data[section] = _round(values)
        self.path.write_text(json.dumps(self.data, indent=2, sort_keys=False) + "\n")


# -- stages ----------------------------------------------------------------------------------------------------
def stage_data(corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    from morbench.envs.enhancer.metrics import kmer_counts, kmer_spectrum_correlation

    counts = kmer_counts(corpus.test.sequences, k=3)
    composition = kmer_counts(corpus.train.sequences, k=1)
    reference = {
        "description": "natural-sequence statistics of the DNA-Diffusion DHS corpus (chr2 test split)",
        "kmer_order": "lexicographic ACGT",
        "test_kmer3_counts": counts.tolist(),
        "test_sequences": len(corpus.test),
        "train_base_frequencies": (composition / composition.sum()).round(6).tolist(),
    }
    (assets / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    rng = np.random.default_rng(config.seed)
    random_dna = ["".join(rng.choice(list("ACGT"), SEQUENCE_LENGTH)) for _ in range(config.prior_samples)]
    splits = {name: getattr(corpus, name) for name in ("train", "valid", "test")}
    return {
        "source": str(corpus.path.name),
        "package": f"dnadiffusion {_versions()['dnadiffusion']}",
        "rows": corpus.rows,
        "sequence_length_bp": SEQUENCE_LENGTH,
        "split_rule": "validation = chr1, test = chr2, train = all other chromosomes",
        "split_sizes": {name: len(split) for name, split in splits.items()},
        "sequences_per_cell_type": {
            name: {tag.split("_")[0]: int((split.tags == tag).sum()) for tag in sorted(set(split.tags))}
            for name, split in splits.items()
        },
        "train_base_frequencies_ACGT": reference["train_base_frequencies"],
        "kmer3_pearson_train_vs_test": kmer_spectrum_correlation(corpus.train.sequences, counts),
        "kmer3_pearson_valid_vs_test": kmer_spectrum_correlation(corpus.valid.sequences, counts),
        "kmer3_pearson_uniform_random_vs_test": kmer_spectrum_correlation(random_dna, counts),
    }


def stage_motifs(corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    from pyjaspar import jaspardb

    from morbench.envs.enhancer.metrics import kmer_counts
    from morbench.envs.enhancer.motifs import MotifSet

    composition = kmer_counts(corpus.train.sequences, k=1).astype(np.float64)
    freq = composition / composition.sum()
    # strand-symmetric background (A=T, C=G) so that both strands are scored alike
    at, cg = (freq[0] + freq[3]) / 2, (freq[1] + freq[2]) / 2
    background = {"A": at, "C": cg, "G": cg, "T": at}
    database = jaspardb(release="JASPAR2024")
    entries = []
    for cell, matrix_id, expected_name in MOTIF_PROFILES:
        motif = database.fetch_motif_by_id(matrix_id)
        if motif.name.upper() != expected_name.upper():
            raise ValueError(f"JASPAR {matrix_id} is {motif.name!r}, expected {expected_name!r}")
        pseudocounts = {base: config.motif_pseudocount * background[base] * 4 for base in "ACGT"}
        pwm = motif.counts.normalize(pseudocounts=pseudocounts)
        pssm = pwm.log_odds(background)
        distribution = pssm.distribution(background=background, precision=10**3)
        threshold = float(distribution.threshold_fpr(config.motif_p_value))
        log_odds = np.array([[pssm[base][i] for base in "ACGT"] for i in range(motif.length)], dtype=np.float64)
        entries.append(
            {
                "matrix_id": matrix_id,
                "name": motif.name,
                "cell_type": cell,
                "width": int(motif.length),
                "counts": [[float(motif.counts[base][i]) for base in "ACGT"] for i in range(motif.length)],
                "log_odds": log_odds.round(5).tolist(),
                "threshold": round(threshold, 5),
                "max_score": round(float(log_odds.max(axis=1).sum()), 5),
            }
        )
    document = {
        "release": "JASPAR2024",
        "license": "JASPAR data: CC BY 4.0 (https://jaspar.elixir.no)",
        "source": f"pyjaspar {_versions()['pyjaspar']}, jaspardb(release='JASPAR2024')",
        "columns": "ACGT",
        "units": "log2 odds against the strand-symmetric base composition of the training sequences",
        "background": [at, cg, cg, at],
        "pseudocount_per_position": config.motif_pseudocount * 4,
        "p_value": config.motif_p_value,
        "motifs": entries,
        "background_rate": {},
    }
    path = assets / "motifs.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    # background rate: mean hits per natural test sequence, all cell types pooled
    motif_set = MotifSet.from_json(path)
    test_hits = motif_set.cell_type_hits(corpus.test.sequences)
    document["background_rate"] = {cell: float(test_hits[cell].mean()) for cell in motif_set.cell_types}
    path.write_text(json.dumps(document, indent=1) + "\n")

    per_motif = motif_set.hits(corpus.test.sequences)
    by_cell = {}
    for cell in CELL_TYPES:
        in_cell = corpus.test.labels[:, CELL_TYPES.index(cell)].astype(bool)
        by_cell[cell] = {
            "mean_hits_in_own_cell_type_test": float(test_hits[cell][in_cell].mean()),
            "mean_hits_in_all_test": float(test_hits[cell].mean()),
            "enrichment_in_own_cell_type": float(test_hits[cell][in_cell].mean() / test_hits[cell].mean()),
            "per_motif_enrichment_in_own_cell_type": {
                m.name: float(per_motif[in_cell, j].mean() / max(per_motif[:, j].mean(), 1e-12))
                for j, m in enumerate(motif_set.motifs)
                if m.cell_type == cell
            },
        }
    return {
        "profiles": [f"{cell}: {name} {matrix_id}" for cell, matrix_id, name in MOTIF_PROFILES],
        "p_value": config.motif_p_value,
        "background_ACGT": [at, cg, cg, at],
        "thresholds": {e["name"]: e["threshold"] for e in entries},
        "background_rate_test": document["background_rate"],
        "natural_test_check": by_cell,
    }


def _train_network(kind: str, corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm

    from morbench.envs.enhancer.networks import (
        ActivityCNN,
        CNNConfig,
        KmerMLP,
        KmerMLPConfig,
        TrainConfig,
        auroc,
        predict_logits,
        save_network,
        train_classifier,
    )

    if kind == ORACLE_NAME:
        torch.manual_seed(config.seed)
        network = ActivityCNN(CNNConfig())
        train_config = TrainConfig(max_epochs=25, patience=4, seed=config.seed)
    else:
        torch.manual_seed(config.judge_seed)
        network = KmerMLP(KmerMLPConfig())
        train_config = TrainConfig(max_epochs=25, patience=3, seed=config.judge_seed, learning_rate=1e-3)
    bar = tqdm(total=train_config.max_epochs, desc=f"train {kind}", unit="epoch")

    def progress(epoch: int, record: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", valid_auroc=f"{record['valid_mean_auroc']:.3f}")

    result = train_classifier(
        network,
        corpus.train.codes,
        corpus.train.labels,
        corpus.valid.codes,
        corpus.valid.labels,
        train_config,
        progress=progress,
    )
    bar.close()
    test_logits = predict_logits(network, corpus.test.codes)
    test_auroc = [auroc(corpus.test.labels[:, j], test_logits[:, j]) for j in range(len(CELL_TYPES))]
    figures = {
        "architecture": type(network).__name__,
        "config": dataclasses.asdict(network.config),
        "train_config": dataclasses.asdict(train_config),
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "valid_auroc": dict(zip(CELL_TYPES, result.valid_auroc, strict=True)),
        "test_auroc": dict(zip(CELL_TYPES, test_auroc, strict=True)),
        "test_mean_auroc": float(np.mean(test_auroc)),
        "train_wall_seconds": result.seconds,
        "history": result.history,
    }
    metadata_record = {
        "outputs": list(CELL_TYPES),
        "output_meaning": "logit of P(cell-type-specific DHS), one-vs-rest over HepG2, K562, GM12878, hESC",
        "input": f"{SEQUENCE_LENGTH}-bp ACGT sequence",
        "test_auroc": figures["test_auroc"],
        "built_by": "morbench build-assets enhancer",
    }
    save_network(network, assets, kind, metadata_record)
    return figures


def stage_oracle(corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    return _train_network(ORACLE_NAME, corpus, assets, config)


def stage_judge(corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    return _train_network(JUDGE_NAME, corpus, assets, config)


def _encode_for_prior(tokenizer, sequences: list[str]) -> list[np.ndarray]:
    from morbench.pretrain import encode_corpus

    encoded, dropped = encode_corpus(tokenizer, sequences, max_tokens=SEQUENCE_LENGTH + 2)
    if dropped:
        raise ValueError(f"{len(dropped)} corpus sequences could not be tokenized (first: {sequences[dropped[0]]!r})")
    return encoded


def _bits_per_bp(mean_token_nll: float, tokens_with_eos: int) -> float:
    """Per-token NLL (nats, EOS included) of equal-length sequences to bits per base pair."""
    return mean_token_nll * tokens_with_eos / SEQUENCE_LENGTH / math.log(2)


def _sample_prior(model, tokenizer, count: int, batch: int, seed: int, max_new_tokens: int) -> tuple[list[str], float]:
    """``count`` decoded samples (cut at the first EOS; no EOS keeps every token) and the sampling CPU seconds.

    CPU (process) time rather than wall time: the build machine is shared, and with one torch thread CPU time
    is what a dedicated core would take.
    """
    import torch

    from morbench.sampling import bos_prompts, sample

    generator = torch.Generator().manual_seed(seed)
    forbid = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]
    sequences: list[str] = []
    start = time.process_time()
    for begin in range(0, count, batch):
        size = min(batch, count - begin)
        generation = sample(
            model,
            *bos_prompts(size, tokenizer.bos_token_id),
            max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            generator=generator,
            forbid_token_ids=forbid,
        )
        rows = []
        for row in generation.rows():
            rows.append(row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row)
        sequences += tokenizer.batch_decode(rows, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return sequences, time.process_time() - start


def _prior_quality(model, tokenizer, kind: str, corpus, samples: int, batch: int, seed: int) -> dict[str, Any]:
    from morbench.envs.enhancer.metrics import kmer_counts, kmer_spectrum_correlation
    from morbench.envs.enhancer.sequences import tokens_per_sequence
    from morbench.pretrain import sequence_nll

    content = tokens_per_sequence(kind)
    test = _encode_for_prior(tokenizer, corpus.test.sequences)
    start = time.process_time()
    nll = sequence_nll(model, test, tokenizer.pad_token_id)
    nll_seconds = time.process_time() - start
    sequences, seconds = _sample_prior(model, tokenizer, samples, batch, seed, content + 1)
    valid = [s for s in sequences if sequence_problem(s) is None]
    reference = kmer_counts(corpus.test.sequences, k=3)
    return {
        "test_nll_nats_per_token": nll,
        "test_nll_bits_per_bp": _bits_per_bp(nll, content + 1),
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


def _markov_bits_per_bp(train: np.ndarray, test: np.ndarray, order: int) -> float:
    """Test NLL (bits/bp) of an order-``order`` Markov chain with add-one smoothing (shorter contexts at the start)."""
    tables = []
    for k in range(order + 1):
        windows = np.lib.stride_tricks.sliding_window_view(train.astype(np.int64), k + 1, axis=1)
        index = (windows * 4 ** np.arange(k, -1, -1)).sum(axis=2).ravel()
        counts = np.bincount(index, minlength=4 ** (k + 1)).reshape(-1, 4)
        tables.append((counts + 1) / (counts.sum(axis=1, keepdims=True) + 4))
    total = 0.0
    for position in range(test.shape[1]):
        k = min(position, order)
        context = (test[:, position - k : position].astype(np.int64) * 4 ** np.arange(k - 1, -1, -1)).sum(axis=1)
        total -= np.log2(tables[k][context, test[:, position].astype(np.int64)]).sum()
    return float(total / test.size)


def stage_tokenizer_study(corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    from morbench.pretrain import PretrainConfig, pretrain_gpt2

    runs = {}
    plans = (
        ("nucleotide", config.study_steps, "equal steps (sequences seen)"),
        ("kmer4", config.study_steps, "equal steps (sequences seen)"),
        ("kmer4", config.study_wall_matched_steps, "about the nucleotide run's wall time"),
    )
    for kind, steps, budget in plans:
        tokenizer = build_dna_tokenizer(kind)
        train = _encode_for_prior(tokenizer, corpus.train.sequences)
        valid = _encode_for_prior(tokenizer, corpus.valid.sequences[:1000])
        pretrain = PretrainConfig(
            n_layer=4,
            n_embd=128,
            n_head=4,
            epochs=math.ceil(steps * 128 / len(train)),
            batch_size=128,
            warmup_steps=max(1, steps // 10),
            seed=config.seed,
            max_steps=steps,
        )
        _log(f"tokenizer study: {kind}, {steps} steps ({budget})")
        cpu_start = time.process_time()
        result = pretrain_gpt2(tokenizer, train, valid, n_positions=len(train[0]), config=pretrain)
        train_cpu = time.process_time() - cpu_start
        quality, _ = _prior_quality(
            result.model, tokenizer, kind, corpus, config.study_samples, config.sample_batch, config.seed
        )
        runs[f"{kind}_{result.steps}_steps"] = {
            "tokenizer": kind,
            "vocabulary": len(tokenizer),
            "tokens_per_sequence_with_eos": len(train[0]) - 1,
            "budget": budget,
            "steps": result.steps,
            "sequences_seen": result.steps * pretrain.batch_size,
            "train_wall_seconds": result.seconds,
            "train_cpu_seconds": train_cpu,
            "cpu_seconds_per_step": train_cpu / result.steps,
            "parameters": result.num_parameters,
            **quality,
        }
    orders = {f"order_{k}": _markov_bits_per_bp(corpus.train.codes, corpus.test.codes, k) for k in (0, 3, 5)}
    return {
        "model": "GPT-2, 4 layers x 128, 4 heads, batch 128, AdamW lr 1e-3, cosine, 1 torch thread",
        "runs": runs,
        "markov_baseline_test_bits_per_bp": orders,
        "decision": (
            "4-mers: at equal sequences seen the two tokenizations reach similar test bits/bp, but the 4-mer model "
            "trains and samples several times faster per bp, so in the same CPU budget it sees many more "
            "sequences and reaches a lower test NLL; it is also the seed paper's tokenization"
        ),
    }


def stage_prior(corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    from morbench.models import CONDITIONING_SLACK, save_causal_lm
    from morbench.pretrain import PretrainConfig, pretrain_gpt2

    tokenizer = build_dna_tokenizer("kmer4")
    train = _encode_for_prior(tokenizer, corpus.train.sequences)
    valid = _encode_for_prior(tokenizer, corpus.valid.sequences)
    test = _encode_for_prior(tokenizer, corpus.test.sequences)
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
        "valid_nll_bits_per_bp": _bits_per_bp(result.valid_nll, tokens),
        "test_nll_bits_per_bp": _bits_per_bp(test_nll, tokens),
    }


def _write_manifest(assets: Path) -> None:
    """The assets' manifest: every file except the prior's (``prior/`` has its own manifest). Manifests are
    exact (``verify_manifest`` rejects unlisted files), so the build report is listed too."""
    files = [
        path.relative_to(assets).as_posix()
        for path in assets.rglob("*")
        if path.is_file() and path.name != "MANIFEST.sha256" and path.relative_to(assets).parts[0] != "prior"
    ]
    write_manifest(assets, files)


def stage_evaluate(corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    from morbench.envs.enhancer.env import EnhancerEnv
    from morbench.envs.enhancer.networks import auroc

    _write_manifest(assets)
    env = EnhancerEnv(assets_dir=assets, top_fraction=config.top_fraction)
    model = env.prior()
    quality, valid = _prior_quality(
        model, env.tokenizer, "kmer4", corpus, config.prior_samples, config.sample_batch, config.seed
    )
    oracle_scores = env.score(valid).rewards.astype(np.float64)
    judge_scores = env.judge_score(valid).rewards.astype(np.float64)
    test_oracle = env.score(corpus.test.sequences).rewards.astype(np.float64)
    test_judge = env.judge_score(corpus.test.sequences).rewards.astype(np.float64)
    agreement = {
        cell: {
            "prior_samples_pearson": _pearson(oracle_scores[:, j], judge_scores[:, j]),
            "prior_samples_spearman": _spearman(oracle_scores[:, j], judge_scores[:, j]),
            "test_pearson": _pearson(test_oracle[:, j], test_judge[:, j]),
            "judge_test_auroc": auroc(corpus.test.labels[:, j], test_judge[:, j]),
            "oracle_test_auroc": auroc(corpus.test.labels[:, j], test_oracle[:, j]),
        }
        for j, cell in enumerate(CELL_TYPES)
    }

    # throughput on sequences the caches have not seen (one torch thread)
    rng = np.random.default_rng(config.seed + 7)
    fresh = ["".join(rng.choice(list("ACGT"), SEQUENCE_LENGTH)) for _ in range(config.throughput_sequences)]
    throughput = {}
    for name, scorer in (("oracle", env.oracle), ("judge", env.judge)):
        scorer.clear_cache()
        start = time.process_time()
        scorer(fresh)
        throughput[f"{name}_sequences_per_cpu_second"] = len(fresh) / (time.process_time() - start)
    start = time.process_time()
    metrics_1024 = env.domain_metrics(valid[:1024])
    throughput["domain_metrics_1024_cpu_seconds"] = time.process_time() - start
    env_nl = EnhancerEnv(assets_dir=assets, prior_likelihood_metric=False)
    start = time.process_time()
    env_nl.domain_metrics(valid[:1024])
    throughput["domain_metrics_1024_without_prior_cpu_seconds"] = time.process_time() - start

    test_metrics = env_nl.domain_metrics(corpus.test.sequences)
    per_cell_test = {
        cell: {
            k: v
            for k, v in env_nl.domain_metrics(
                [s for s, y in zip(corpus.test.sequences, corpus.test.labels[:, j], strict=True) if y]
            ).items()
            if k.startswith("motif_") or k in ("gc_content", "kmer3_pearson")
        }
        for j, cell in enumerate(CELL_TYPES)
    }
    return {
        "prior_samples": quality,
        "prior_sample_objectives": {
            "mean": dict(zip(CELL_TYPES, oracle_scores.mean(axis=0).tolist(), strict=True)),
            "std": dict(zip(CELL_TYPES, oracle_scores.std(axis=0).tolist(), strict=True)),
            "fraction_above_0.5": dict(zip(CELL_TYPES, (oracle_scores > 0.5).mean(axis=0).tolist(), strict=True)),
            "max": dict(zip(CELL_TYPES, oracle_scores.max(axis=0).tolist(), strict=True)),
            "judge_mean": dict(zip(CELL_TYPES, judge_scores.mean(axis=0).tolist(), strict=True)),
        },
        "objective_correlations_prior_samples": _correlations(oracle_scores, CELL_TYPES),
        "objective_correlations_test_sequences": _correlations(test_oracle, CELL_TYPES),
        "test_sequence_objectives_mean": dict(zip(CELL_TYPES, test_oracle.mean(axis=0).tolist(), strict=True)),
        "oracle_vs_judge": agreement,
        "domain_metrics_prior_first_1024": metrics_1024,
        "domain_metrics_test_sequences": test_metrics,
        "domain_metrics_test_by_true_cell_type": per_cell_test,
        "throughput": throughput,
    }


STAGE_FUNCTIONS = {
    "data": stage_data,
    "motifs": stage_motifs,
    "oracle": stage_oracle,
    "judge": stage_judge,
    "tokenizer-study": stage_tokenizer_study,
    "prior": stage_prior,
    "evaluate": stage_evaluate,
}


def _lookup(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key, {}) if isinstance(data, dict) else {}
    return data


def check_report(new: dict[str, Any], committed: dict[str, Any]) -> list[str]:
    """Differences beyond ``CHECK_TOLERANCES`` between two reports (only figures present in both)."""
    problems = []
    for path, tolerance in CHECK_TOLERANCES.items():
        a, b = _lookup(new, path), _lookup(committed, path)
        if a in ({}, None) or b in ({}, None):
            continue
        pairs = [(k, a[k], b[k]) for k in a if k in b] if isinstance(a, dict) else [("", a, b)]
        for key, x, y in pairs:
            if abs(float(x) - float(y)) > tolerance:
                problems.append(f"{'/'.join(path)}{'/' + key if key else ''}: {x} vs committed {y} (tol {tolerance})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="morbench build-assets enhancer", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run (default: all)"
    )
    parser.add_argument("--assets-dir", type=Path, default=ASSETS_DIR, help="where to write the assets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--check", type=Path, default=None, help="a committed build_report.json to compare the new figures with"
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    config = BuildConfig(seed=args.seed, judge_seed=args.seed + 1)
    assets = args.assets_dir
    assets.mkdir(parents=True, exist_ok=True)
    committed = json.loads(args.check.read_text()) if args.check else None
    from morbench.envs.enhancer.data import load_corpus

    report = Report(assets / "build_report.json")
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
            "command": "morbench build-assets enhancer " + " ".join(argv or []),
            "last_stages": ordered,
            "last_run_seconds": time.perf_counter() - start,
            "config": dataclasses.asdict(config),
            "hardware": _hardware(),
            "versions": _versions(),
            "date": time.strftime("%Y-%m-%d"),
        },
    )
    if all((assets / name).is_file() for name in RUNTIME_FILES):
        _write_manifest(assets)
    if committed is not None:
        problems = check_report(report.data, committed)
        for problem in problems:
            _log(f"check failed: {problem}")
        if problems:
            return 1
        _log("check passed: every compared figure is within tolerance of the committed report")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
