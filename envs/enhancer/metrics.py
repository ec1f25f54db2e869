"""Naturalness and diversity metrics of DNA sample sets (vectorized NumPy; the prior likelihood uses torch).

Every function takes plain ACGT strings (valid designs); codes outside ACGT are ignored where that makes sense.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from morbench.envs.enhancer.sequences import encode, one_hot

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "gc_content",
    "kmer_counts",
    "kmer_spectrum_correlation",
    "longest_homopolymer",
    "median_pairwise_hamming",
    "prior_log_likelihood_per_bp",
]


def kmer_counts(sequences: Sequence[str], k: int = 3) -> np.ndarray:
    """Overlapping k-mer counts pooled over ``sequences``: ``(4**k,)`` int64 in lexicographic ACGT order.

    Windows containing a letter other than ACGT (or padding) are skipped.
    """
    counts = np.zeros(4**k, dtype=np.int64)
    if not sequences:
        return counts
    codes = encode(sequences).astype(np.int64)
    if codes.shape[1] < k:
        return counts
    windows = np.lib.stride_tricks.sliding_window_view(codes, k, axis=1)  # (N, L-k+1, k)
    ok = np.all(windows >= 0, axis=2)
    index = (windows * (4 ** np.arange(k - 1, -1, -1))).sum(axis=2)
    return np.bincount(index[ok], minlength=4**k).astype(np.int64)


def kmer_spectrum_correlation(sequences: Sequence[str], reference_counts: np.ndarray, k: int = 3) -> float:
    """Pearson r between the pooled k-mer frequencies of ``sequences`` and reference k-mer counts.

    NaN when there are no sequences or either spectrum is constant.
    """
    counts = kmer_counts(sequences, k).astype(np.float64)
    reference = np.asarray(reference_counts, dtype=np.float64)
    if reference.shape != counts.shape:
        raise ValueError(f"reference_counts has shape {reference.shape}; expected ({4**k},) for k={k}")
    if counts.sum() == 0 or counts.std() == 0 or reference.std() == 0:
        return float("nan")
    return float(np.corrcoef(counts / counts.sum(), reference / reference.sum())[0, 1])


def gc_content(sequences: Sequence[str]) -> np.ndarray:
    """Fraction of G or C among the ACGT letters of each sequence, ``(N,)`` float64 (NaN for empty)."""
    codes = encode(sequences)
    letters = (codes >= 0).sum(axis=1)
    gc = ((codes == 1) | (codes == 2)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(letters > 0, gc / np.maximum(letters, 1), np.nan)


def longest_homopolymer(sequences: Sequence[str]) -> np.ndarray:
    """Length of the longest run of one repeated base in each sequence, ``(N,)`` int64 (0 for empty)."""
    codes = encode(sequences).astype(np.int64)
    n, length = codes.shape
    if length == 0:
        return np.zeros(n, dtype=np.int64)
    positions = np.arange(length)
    # padding/non-ACGT letters get a value unique to their position, so they never extend a run
    values = np.where(codes >= 0, codes, 4 + positions)
    starts_run = np.ones((n, length), dtype=bool)
    starts_run[:, 1:] = values[:, 1:] != values[:, :-1]
    run_start = np.maximum.accumulate(np.where(starts_run, positions, 0), axis=1)
    run_length = np.where(codes >= 0, positions - run_start + 1, 0)
    return run_length.max(axis=1)


def median_pairwise_hamming(sequences: Sequence[str], max_sequences: int | None = 2048) -> float:
    """Median Hamming distance over all unordered pairs of distinct indices (equal-length sequences).

    With more than ``max_sequences`` sequences, the first ``max_sequences`` are used. NaN for fewer than two.
    """
    sequences = list(sequences)[:max_sequences] if max_sequences else list(sequences)
    if len(sequences) < 2:
        return float("nan")
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise ValueError(f"median_pairwise_hamming needs equal-length sequences, got lengths {sorted(lengths)}")
    length = lengths.pop()
    flat = one_hot(encode(sequences, length)).reshape(len(sequences), -1)
    matches = flat @ flat.T  # positions where both sequences carry the same base
    upper = np.triu_indices(len(sequences), k=1)
    return float(np.median(length - matches[upper]))


def prior_log_likelihood_per_bp(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sequences: Sequence[str],
    batch_size: int = 256,
    include_eos: bool = True,
) -> np.ndarray:
    """Log-likelihood (nats per bp) of each sequence under a causal LM prior: ``log p([BOS] tokens [EOS]) / bp``.

    Sequences are tokenized with ``tokenizer``; one that contains ``[UNK]`` gets NaN.
    """
    import torch

    ids = tokenizer(list(sequences), add_special_tokens=False)["input_ids"]
    tail = [tokenizer.eos_token_id] if include_eos else []
    rows = [i for i, row in enumerate(ids) if row and tokenizer.unk_token_id not in row]
    out = np.full(len(sequences), np.nan)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            arrays = [[tokenizer.bos_token_id, *ids[i], *tail] for i in chunk]
            width = max(len(a) for a in arrays)
            batch = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.bool)
            for j, array in enumerate(arrays):
                batch[j, : len(array)] = torch.tensor(array)
                mask[j, : len(array)] = True
            logits = model(input_ids=batch, attention_mask=mask.long()).logits[:, :-1].float()
            logp = torch.log_softmax(logits, dim=-1).gather(2, batch[:, 1:, None]).squeeze(2)
            totals = (logp * mask[:, 1:]).sum(dim=1).numpy()
            for i, total in zip(chunk, totals, strict=True):
                out[i] = total / len(sequences[i])
    return out
