"""DNA sequence helpers of the Enhancer task: the 200-bp contract, integer/one-hot encodings and tokenizers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from morbench.tokenization import build_word_level_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "ALPHABET",
    "KMER_SIZE",
    "SEQUENCE_LENGTH",
    "TOKENIZER_KINDS",
    "build_dna_tokenizer",
    "encode",
    "one_hot",
    "reverse_complement",
    "sequence_problem",
    "tokens_per_sequence",
]

ALPHABET = "ACGT"  # the column order of every one-hot array and PWM in this task
SEQUENCE_LENGTH = 200  # bp, the DHS window length of the corpus
KMER_SIZE = 4  # non-overlapping 4-mers: 50 tokens per 200-bp sequence
TOKENIZER_KINDS = ("kmer4", "nucleotide")

_CODE = np.full(256, -1, dtype=np.int8)
for _i, _letter in enumerate(ALPHABET):
    _CODE[ord(_letter)] = _i
    _CODE[ord(_letter.lower())] = _i


def build_dna_tokenizer(kind: str = "kmer4") -> PreTrainedTokenizerFast:
    """The task tokenizer: ``"kmer4"`` (256 non-overlapping 4-mers) or ``"nucleotide"`` (A, C, G, T).

    Both put ``[PAD] [BOS] [EOS] [UNK]`` first; k-mers are listed in lexicographic ACGT order.
    """
    if kind == "kmer4":
        kmers = ["".join(p) for p in itertools.product(ALPHABET, repeat=KMER_SIZE)]
        return build_word_level_tokenizer(kmers, f"[ACGT]{{{KMER_SIZE}}}")
    if kind == "nucleotide":
        return build_word_level_tokenizer(list(ALPHABET), ".")
    raise ValueError(f"unknown DNA tokenizer kind {kind!r}; choose one of {TOKENIZER_KINDS}")


def tokens_per_sequence(kind: str = "kmer4") -> int:
    """Content tokens of one 200-bp sequence (EOS not counted)."""
    return SEQUENCE_LENGTH // KMER_SIZE if kind == "kmer4" else SEQUENCE_LENGTH


def sequence_problem(sequence: str, length: int = SEQUENCE_LENGTH) -> str | None:
    """Why ``sequence`` is not a valid design (None when it is): empty, wrong length, or letters outside ACGT.

    Lower-case a/c/g/t are accepted (soft-masked genome style); the canonical form is upper case.
    """
    if not sequence:
        return "empty sequence"
    if len(sequence) != length:
        return f"sequence is {len(sequence)} bp; designs must be exactly {length} bp"
    raw = np.frombuffer(sequence.encode("utf-8", errors="replace"), dtype=np.uint8)
    if raw.size != len(sequence) or np.any(_CODE[raw] < 0):
        bad = sorted({c for c in sequence if c not in "ACGTacgt"})
        return f"characters {bad} are not DNA bases; only A, C, G and T are allowed"
    return None


def encode(sequences: Sequence[str], length: int | None = None) -> np.ndarray:
    """Integer codes ``(N, length)`` int8 with A=0, C=1, G=2, T=3 and -1 for other letters and padding.

    ``length`` defaults to the longest sequence; longer sequences are cut.
    """
    if length is None:
        length = max((len(s) for s in sequences), default=0)
    codes = np.full((len(sequences), length), -1, dtype=np.int8)
    for i, sequence in enumerate(sequences):
        raw = np.frombuffer(sequence[:length].encode("ascii", errors="replace"), dtype=np.uint8)
        codes[i, : raw.size] = _CODE[raw]
    return codes


def one_hot(codes: np.ndarray) -> np.ndarray:
    """``(N, L)`` codes to ``(N, L, 4)`` float32 one-hot in ACGT order (all zeros where a code is -1)."""
    eye = np.vstack([np.eye(4, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)])
    return eye[np.where(codes < 0, 4, codes)]


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of equal-length integer codes (A<->T, C<->G is ``3 - code`` in ACGT order)."""
    return np.where(codes < 0, codes, 3 - codes)[:, ::-1].copy()
