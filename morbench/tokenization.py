"""Word-level tokenizers (characters, SMILES atoms, k-mers) saved as transformers ``PreTrainedTokenizerFast``."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")

__all__ = ["SPECIAL_TOKENS", "build_word_level_tokenizer"]


def build_word_level_tokenizer(tokens: Sequence[str], split_pattern: str) -> PreTrainedTokenizerFast:
    """A tokenizer whose vocabulary is ``[PAD] [BOS] [EOS] [UNK]`` followed by ``tokens`` (in that order).

    ``split_pattern`` is a regex whose matches are the tokens (e.g. one character ``"."``, a SMILES atom
    pattern, or ``"[ACGT]{4}"`` for 4-mers); text it does not match maps to ``[UNK]``. Decoding concatenates
    tokens without spaces, so ``decode(encode(s)) == s`` for every string made of vocabulary tokens.
    """
    duplicates = sorted({t for t in tokens if list(tokens).count(t) > 1})
    if duplicates:
        raise ValueError(f"duplicate tokens {duplicates} in the vocabulary")
    clash = sorted(set(tokens) & set(SPECIAL_TOKENS))
    if clash:
        raise ValueError(f"tokens {clash} clash with the special tokens {SPECIAL_TOKENS}")
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *tokens])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(split_pattern), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        unk_token="[UNK]",
        clean_up_tokenization_spaces=False,
    )
