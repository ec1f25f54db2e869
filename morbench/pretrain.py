"""Pretraining a small GPT-2 prior from scratch on tokenized sequences (used by every task's asset builder)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from morbench.models import build_gpt2

__all__ = ["PretrainConfig", "PretrainResult", "encode_corpus", "pretrain_gpt2", "sequence_nll", "warmup_cosine"]


@dataclasses.dataclass
class PretrainConfig:
    """Hyperparameters of prior pretraining (causal LM loss on ``[BOS] tokens [EOS]``)."""

    n_layer: int = 4
    n_embd: int = 192
    n_head: int = 4
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    dropout: float = 0.0
    seed: int = 0
    max_steps: int | None = None  # stop early (for tests)


@dataclasses.dataclass
class PretrainResult:
    """The pretrained model with its final training loss, validation NLL, step count, time and size."""

    model: PreTrainedModel
    train_loss: float  # mean token NLL over the last epoch (nats)
    valid_nll: float  # mean token NLL on the validation sequences (nats)
    steps: int
    seconds: float
    num_parameters: int


def encode_corpus(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int
) -> tuple[list[np.ndarray], list[int]]:
    """Tokenize ``texts`` to ``[BOS] ids [EOS]`` arrays; drop those with ``[UNK]`` or longer than ``max_tokens``.

    Returns the arrays and the indices of the texts that were dropped.
    """
    encoded, dropped = [], []
    unk = tokenizer.unk_token_id
    for i, ids in enumerate(tokenizer(list(texts), add_special_tokens=False)["input_ids"]):
        if (unk is not None and unk in ids) or len(ids) + 1 > max_tokens or not ids:
            dropped.append(i)
            continue
        encoded.append(np.asarray([tokenizer.bos_token_id, *ids, tokenizer.eos_token_id], dtype=np.int64))
    return encoded, dropped


def _batches(
    sequences: list[np.ndarray], batch_size: int, pad_id: int, rng: np.random.Generator | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    order = rng.permutation(len(sequences)) if rng is not None else np.arange(len(sequences))
    for start in range(0, len(order), batch_size):
        chunk = [sequences[i] for i in order[start : start + batch_size]]
        width = max(len(s) for s in chunk)
        ids = np.full((len(chunk), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=bool)
        for j, s in enumerate(chunk):
            ids[j, : len(s)] = s
            mask[j, : len(s)] = True
        yield torch.from_numpy(ids), torch.from_numpy(mask)


def _loss(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1]
    targets = ids[:, 1:]
    target_mask = mask[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    nll = nll.view_as(targets) * target_mask
    count = int(target_mask.sum())
    return nll.sum() / max(count, 1), count


@torch.no_grad()
def sequence_nll(model: PreTrainedModel, sequences: list[np.ndarray], pad_id: int, batch_size: int = 256) -> float:
    """Mean per-token negative log-likelihood (nats) of ``sequences`` (each ``[BOS] ... [EOS]``)."""
    model.eval()
    total, count = 0.0, 0
    for ids, mask in _batches(sequences, batch_size, pad_id, None):
        loss, n = _loss(model, ids, mask)
        total += float(loss) * n
        count += n
    return total / max(count, 1)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to zero at ``total_steps``."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        fraction = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def pretrain_gpt2(
    tokenizer: PreTrainedTokenizerBase,
    train: list[np.ndarray],
    valid: list[np.ndarray],
    n_positions: int,
    config: PretrainConfig,
    progress: bool = True,
) -> PretrainResult:
    """Train a GPT-2 from scratch with AdamW, linear warm-up and cosine decay; deterministic given the seed."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_gpt2(
        len(tokenizer),
        n_positions,
        n_layer=config.n_layer,
        n_embd=config.n_embd,
        n_head=config.n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dropout=config.dropout,
        seed=config.seed,
    )
    model.train()
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = warmup_cosine(optimizer, config.warmup_steps, total_steps)
    start = time.perf_counter()
    step, epoch_loss, epoch_tokens = 0, 0.0, 0
    bar = tqdm(total=total_steps, desc="pretrain", disable=not progress, unit="step")
    while step < total_steps:
        epoch_loss, epoch_tokens = 0.0, 0
        for ids, mask in _batches(train, config.batch_size, tokenizer.pad_token_id, rng):
            loss, count = _loss(model, ids, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.item() * count
            epoch_tokens += count
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step >= total_steps:
                break
    bar.close()
    model.eval()
    return PretrainResult(
        model=model,
        train_loss=epoch_loss / max(epoch_tokens, 1),
        valid_nll=sequence_nll(model, valid, tokenizer.pad_token_id),
        steps=step,
        seconds=time.perf_counter() - start,
        num_parameters=sum(p.numel() for p in model.parameters()),
    )
