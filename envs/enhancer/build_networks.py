"""``morbench build-assets enhancer``, stages ``oracle`` and ``judge``: the activity CNN (training rewards)
and the k-mer MLP (held-out judge), trained on the same split with different seeds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.envs.enhancer.env import CELL_TYPES, JUDGE_NAME, ORACLE_NAME
from morbench.envs.enhancer.sequences import SEQUENCE_LENGTH

if TYPE_CHECKING:
    from morbench.envs.enhancer.build import BuildConfig
    from morbench.envs.enhancer.data import Corpus

__all__ = ["stage_judge", "stage_oracle"]


def _train_network(kind: str, corpus: Corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm

    from morbench.envs.enhancer.networks import (
        ActivityCNN,
        CNNConfig,
        KmerMLP,
        KmerMLPConfig,
        TrainConfig,
        predict_logits,
        save_network,
        train_classifier,
    )
    from morbench.metrics import auroc

    network: ActivityCNN | KmerMLP
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


def stage_oracle(corpus: Corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    return _train_network(ORACLE_NAME, corpus, assets, config)


def stage_judge(corpus: Corpus, assets: Path, config: BuildConfig) -> dict[str, Any]:
    return _train_network(JUDGE_NAME, corpus, assets, config)
