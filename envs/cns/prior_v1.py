"""The CNS-v1 prior: v0's GPT-2 trained further, or a wider GPT-2 trained from scratch, on the same ZINC250k
training split with v0's tokenizer (builder only).

Why continue rather than start again: v0's prior (1 epoch, 30 min on one CPU thread) is 81.8 % valid on
10,000 samples and still improving when its cosine schedule ended. Within the same wall time, a second
schedule that starts from its weights sees the training split twice in total, where a fresh run would see it
only once more from random weights; the tokenizer (vocabulary) and the architecture stay exactly v0's, so the
two priors are directly comparable. The stage is a separate, documented builder step
(``python -m morbench.envs.cns.prior_v1``), it never writes v0's assets, and it checkpoints its model,
optimizer and schedule every ``checkpoint_every`` steps, so a killed run resumes where it stopped with the
same data order (each epoch's order is a permutation seeded by ``(seed, epoch)``).

Why a wider model (``--n-embd/--n-layer/--n-head``): continuing v0's 0.8M-parameter GPT-2 reached 84.1 % valid
after 8,000 more steps and 85.0 % half-way through two more epochs, with its training NLL above its validation
NLL (it underfits: the limit is capacity, not data). The wider model starts from seeded random weights with
v0's vocabulary and positions; everything else (data, order, schedule, checkpoints) is the same machinery. The
shipped CNS-v1 prior is :data:`SHIPPED`: width 192, 4 layers, 6 heads (1.8M parameters), 3 epochs.

Training cost (``--group-by-length``, ``--bf16``, ``--threads``): batches drawn from length-sorted windows of the
epoch's order pad far less (ZINC SMILES are 38 tokens on average, 72 at most), and bfloat16 autocast runs the
matrix products at the CPU's bf16 rate (the weights, gradients and optimizer stay fp32). Both change the numbers
of the schedule, never its data: every molecule is seen once per epoch. The prior is built once and committed
with its checksum, so it need not be bit-identical to an fp32 run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morbench.assets import sha256_file, verify_manifest, write_manifest
from morbench.models import build_gpt2, load_causal_lm, save_causal_lm
from morbench.pretrain import _batches, _loss, encode_corpus, sequence_nll, warmup_cosine

__all__ = ["SHIPPED", "ContinueConfig", "continue_prior", "main"]

V0_PRIOR = Path(__file__).resolve().parent / "assets" / "prior"
REPORT_NAME = "pretrain.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclasses.dataclass
class ContinueConfig:
    """The continued schedule: AdamW, linear warm-up then cosine decay to zero over ``epochs`` epochs."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    seed: int = 1  # data order (v0 used seed 0 for its single epoch)
    max_length: int = 100
    valid_size: int = 5_000
    checkpoint_every: int = 500
    max_steps: int | None = None  # end the schedule after this many steps (the shipped prior: 8,000)
    # a wider GPT-2 from seeded random weights instead of v0's (None: continue v0's weights and architecture)
    n_embd: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    init_seed: int = 0
    # training cost: length-sorted windows of this many batches (0: the epoch's order as is), bf16 autocast
    group_by_length: int = 0
    bf16: bool = False
    threads: int = 1

    @property
    def fresh(self) -> bool:
        """Whether the schedule trains a new (wider) model rather than continuing v0's."""
        return self.n_embd is not None or self.n_layer is not None or self.n_head is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# the shipped CNS-v1 prior: `python -m morbench.envs.cns.prior_v1 --epochs 3 --learning-rate 1e-3 --batch-size 32
# --warmup-steps 200 --n-embd 192 --n-layer 4 --n-head 6 --group-by-length 100 --bf16 --threads 2`
SHIPPED = ContinueConfig(
    epochs=3,
    batch_size=32,
    learning_rate=1e-3,
    warmup_steps=200,
    n_embd=192,
    n_layer=4,
    n_head=6,
    group_by_length=100,
    bf16=True,
    threads=2,
)


def _resumable(config_json: str) -> dict[str, Any]:
    """The fields a resumed run must share with its checkpoint (not the thread count)."""
    fields = json.loads(config_json)
    fields.pop("threads", None)
    return fields


def _epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(size)


def _group_by_length(order: np.ndarray, lengths: np.ndarray, window: int) -> np.ndarray:
    """``order`` cut into windows of ``window`` molecules, each sorted by length (``_ordered_batches`` then
    shuffles the batches).

    A permutation of ``order`` (every molecule once), whose consecutive batches hold molecules of similar length.
    """
    pieces = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        pieces.append(chunk[np.argsort(lengths[chunk], kind="stable")])
    return np.concatenate(pieces) if pieces else order


def _ordered_batches(
    train: list[np.ndarray], order: np.ndarray, batch_size: int, pad_id: int, skip: int, shuffle_seed: Any = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    ordered = [train[i] for i in order]
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = _batches(ordered, batch_size, pad_id, None)
    if shuffle_seed is not None:  # length-grouped: the batches in a seeded order (so a resume skips the same ones)
        listed = list(batches)
        batches = iter([listed[i] for i in np.random.default_rng(shuffle_seed).permutation(len(listed))])
    for index, batch in enumerate(batches):
        if index >= skip:
            yield batch


def continue_prior(
    train_smiles: list[str],
    valid_smiles: list[str],
    config: ContinueConfig,
    out_dir: Path,
    checkpoint_dir: Path,
    base_dir: Path = V0_PRIOR,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``base_dir``'s prior further and save it to ``out_dir`` (safetensors + v0's tokenizer + manifest).

    Resumes from ``checkpoint_dir/state.pt`` when it exists. Returns the figures, also written to
    ``out_dir/pretrain.json``.
    """
    from transformers import PreTrainedTokenizerFast

    torch.set_num_threads(config.threads)
    wall = time.perf_counter()
    verify_manifest(base_dir, "morbench build-assets cns")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(base_dir, local_files_only=True)
    base_model = load_causal_lm(base_dir)  # v0's prior: the starting point, or the reference NLL of a fresh model
    model = base_model
    if config.fresh:
        base = base_model.config
        model = build_gpt2(
            base.vocab_size,
            base.n_positions,
            n_layer=config.n_layer or base.n_layer,
            n_embd=config.n_embd or base.n_embd,
            n_head=config.n_head or base.n_head,
            bos_token_id=base.bos_token_id,
            eos_token_id=base.eos_token_id,
            pad_token_id=base.pad_token_id,
            seed=config.init_seed,
        )
    train_ids, train_dropped = encode_corpus(tokenizer, train_smiles, config.max_length)
    valid_ids, valid_dropped = encode_corpus(tokenizer, valid_smiles[: config.valid_size], config.max_length)
    pad = tokenizer.pad_token_id
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = warmup_cosine(optimizer, config.warmup_steps, total_steps)
    state_path = checkpoint_dir / "state.pt"
    step, epoch_loss, epoch_tokens, resumed, seconds_before = 0, 0.0, 0, 0, 0.0
    valid_nll_before = None
    if state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        if _resumable(state["config"]) != _resumable(json.dumps(config.to_dict(), sort_keys=True)):
            raise ValueError(f"{state_path} was written with another configuration; delete it to start again")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch_loss, epoch_tokens = int(state["step"]), float(state["epoch_loss"]), int(state["epoch_tokens"])
        resumed, seconds_before = int(state["resumed"]) + 1, float(state["train_seconds"])
        valid_nll_before = float(state["valid_nll_before"])
        print(f"resumed at step {step} of {total_steps}", flush=True)
    if valid_nll_before is None:
        valid_nll_before = sequence_nll(base_model, valid_ids, pad)
        print(f"v0 valid NLL {valid_nll_before:.4f}", flush=True)

    def save_state() -> None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        temporary = checkpoint_dir / "state.pt.tmp"
        torch.save(
            {
                "config": json.dumps(config.to_dict(), sort_keys=True),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "epoch_loss": epoch_loss,
                "epoch_tokens": epoch_tokens,
                "resumed": resumed,
                "train_seconds": seconds_before + time.perf_counter() - start,
                "valid_nll_before": valid_nll_before,
            },
            temporary,
        )
        os.replace(temporary, state_path)

    lengths = np.array([len(ids) for ids in train_ids])
    model.train()
    start = time.perf_counter()
    while step < total_steps:
        epoch, within = divmod(step, steps_per_epoch)
        if within == 0:
            epoch_loss, epoch_tokens = 0.0, 0
        order = _epoch_order(config.seed, epoch, len(train_ids))
        shuffle_seed = None
        if config.group_by_length:
            order = _group_by_length(order, lengths, config.group_by_length * config.batch_size)
            shuffle_seed = [config.seed, epoch, 1]
        for ids, mask in _ordered_batches(train_ids, order, config.batch_size, pad, within, shuffle_seed):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                loss, count = _loss(model, ids, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.item() * count
            epoch_tokens += count
            step += 1
            if step % config.checkpoint_every == 0 or step == total_steps:
                save_state()
                if progress:
                    rate = (time.perf_counter() - start) / max(1, step)
                    print(
                        f"step {step}/{total_steps} loss {epoch_loss / max(epoch_tokens, 1):.4f} {rate:.3f}", flush=True
                    )
            if step >= total_steps:
                break
    train_seconds = seconds_before + time.perf_counter() - start
    model.eval()
    report = {
        "base": {
            "directory": "envs/cns/assets/prior (CNS-v0's prior"
            + ("; its tokenizer and positions only: the weights are a fresh, wider model)" if config.fresh else ")"),
            "model_sha256": sha256_file(base_dir / "model.safetensors"),
            "valid_nll": valid_nll_before,
        },
        "config": config.to_dict(),
        "vocab_size": len(tokenizer),
        "train_molecules": len(train_ids),
        "train_dropped": len(train_dropped),
        "valid_molecules": len(valid_ids),
        "valid_dropped": len(valid_dropped),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "steps": step,
        "train_nll_last_epoch": epoch_loss / max(epoch_tokens, 1),
        "valid_nll": sequence_nll(model, valid_ids, pad),
        "train_seconds": train_seconds,
        "resumed_from_checkpoint": resumed,
        "torch_threads": torch.get_num_threads(),
        "wall_seconds_last_session": time.perf_counter() - wall,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        shutil.copyfile(base_dir / name, out_dir / name)
    save_causal_lm(model, out_dir)
    write_manifest(out_dir)
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from morbench.envs.cns.data import load_zinc_splits, read_smiles_gz

    parser = argparse.ArgumentParser(prog="python -m morbench.envs.cns.prior_v1", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write the prior to")
    parser.add_argument("--checkpoint-dir", type=Path, required=True, help="where to keep the resumable state")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="end the schedule after this many steps")
    parser.add_argument("--learning-rate", type=float, default=ContinueConfig.learning_rate)
    parser.add_argument("--batch-size", type=int, default=ContinueConfig.batch_size)
    parser.add_argument("--warmup-steps", type=int, default=ContinueConfig.warmup_steps)
    parser.add_argument("--n-embd", type=int, default=None, help="train a wider GPT-2 from scratch (v0: 128)")
    parser.add_argument("--n-layer", type=int, default=None, help="... with this many layers (v0: 4)")
    parser.add_argument("--n-head", type=int, default=None, help="... and attention heads (v0: 4)")
    parser.add_argument(
        "--group-by-length", type=int, default=0, help="batches from length-sorted windows of this many batches"
    )
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward and backward passes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    config = ContinueConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        warmup_steps=args.warmup_steps,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        group_by_length=args.group_by_length,
        bf16=args.bf16,
        threads=args.threads,
    )
    train = read_smiles_gz(V0_PRIOR.parent / "zinc_train_smiles.txt.gz")
    splits = load_zinc_splits(progress=False)
    if splits.train != train:
        raise ValueError("the shipped training SMILES differ from the ZINC250k train split")
    report = continue_prior(train, splits.valid, config, args.out, args.checkpoint_dir)
    print(json.dumps(report, indent=2), flush=True)
    return report


if __name__ == "__main__":
    main()
