"""The CNS prior: a small GPT-2 pretrained on the ZINC250k training split (builder only)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morbench.chem import build_smiles_tokenizer
from morbench.models import CONDITIONING_SLACK, save_causal_lm
from morbench.pretrain import PretrainConfig, encode_corpus, pretrain_gpt2

__all__ = ["PRIOR_REPORT", "PriorConfig", "train_prior"]

PRIOR_REPORT = "pretrain.json"  # written inside assets/prior/, covered by the prior's manifest


@dataclasses.dataclass
class PriorConfig:
    """What the prior is trained on and how (the defaults took 30 min on one CPU thread of 2 shared cores).

    ``n_positions`` must hold ``[BOS]`` + ``max_length`` tokens plus ``CONDITIONING_SLACK`` positions for
    conditioning tokens such as Rewards-in-Context's reward tokens.
    """

    train_size: int | None = None  # molecules taken from the train split in hash order (None: all of it)
    valid_size: int = 5_000  # validation molecules for the held-out NLL
    max_length: int = 100  # generated tokens, EOS included (the env's max_length)
    n_positions: int = 128
    pretrain: PretrainConfig = dataclasses.field(
        default_factory=lambda: PretrainConfig(
            n_layer=4, n_embd=128, n_head=4, epochs=1, batch_size=16, learning_rate=2e-3, warmup_steps=100, seed=0
        )
    )

    def __post_init__(self) -> None:
        if (self.train_size is not None and self.train_size < 1) or self.valid_size < 1:
            raise ValueError(f"train_size and valid_size must be >= 1, got {self.train_size} and {self.valid_size}")
        needed = self.max_length + 1 + CONDITIONING_SLACK
        if self.n_positions < needed:
            raise ValueError(
                f"n_positions ({self.n_positions}) must be >= max_length + 1 + {CONDITIONING_SLACK} conditioning "
                f"positions ({needed})"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_prior(
    train_smiles: list[str], valid_smiles: list[str], config: PriorConfig, out_dir: Path, progress: bool = True
) -> dict[str, Any]:
    """Build the tokenizer, pretrain the GPT-2 and save it (safetensors + tokenizer + manifest) to ``out_dir``.

    Returns the pretraining figures, also written to ``out_dir / pretrain.json``.
    """
    torch.set_num_threads(1)
    start = time.perf_counter()
    train_smiles = train_smiles[: config.train_size]
    valid_smiles = valid_smiles[: config.valid_size]
    tokenizer = build_smiles_tokenizer(train_smiles)
    train_ids, train_dropped = encode_corpus(tokenizer, train_smiles, config.max_length)
    valid_ids, valid_dropped = encode_corpus(tokenizer, valid_smiles, config.max_length)
    lengths = np.array([len(ids) - 2 for ids in train_ids])
    result = pretrain_gpt2(tokenizer, train_ids, valid_ids, config.n_positions, config.pretrain, progress=progress)
    report = {
        "config": config.to_dict(),
        "vocab_size": len(tokenizer),
        "train_molecules": len(train_ids),
        "train_dropped": len(train_dropped),
        "valid_molecules": len(valid_ids),
        "valid_dropped": len(valid_dropped),
        "train_tokens": int(lengths.sum() + 2 * len(lengths)),
        "tokens_per_molecule_mean": float(lengths.mean()),
        "tokens_per_molecule_max": int(lengths.max()),
        "num_parameters": result.num_parameters,
        "steps": result.steps,
        "train_nll_last_epoch": result.train_loss,
        "valid_nll": result.valid_nll,
        "train_seconds": result.seconds,
        "torch_threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - start,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PRIOR_REPORT).write_text(json.dumps(report, indent=2) + "\n")
    save_causal_lm(result.model, out_dir, tokenizer)
    return report
