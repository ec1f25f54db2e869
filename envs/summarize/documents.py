"""The documents to summarize (ACL paper abstracts from aclsum) and the chat prompts built from them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from morbench.core import Context
from morbench.envs.summarize.text import split_sentences
from morbench.errors import ConfigError

__all__ = [
    "ASPECTS",
    "DEFAULT_MAX_PROMPT_LENGTH",
    "INSTRUCTION",
    "SPLITS",
    "Document",
    "PromptBuilder",
    "load_documents",
]

SPLITS = ("train", "val", "test")  # aclsum's own splits: 100 / 50 / 100 papers
ASPECTS = ("challenge", "approach", "outcome")  # the three one-sentence aspects of an aclsum gold summary
DEFAULT_MAX_PROMPT_LENGTH = 320  # fits 97 of 100 test abstracts whole (see the build report)
INSTRUCTION = "Summarize this research paper abstract in one sentence.\n\n{document}"


@dataclasses.dataclass(frozen=True)
class Document:
    """One paper: its abstract (the text to summarize) and aclsum's gold aspect summary (the judge's reference).

    ``source`` is the abstract as the prompt shows it (possibly cut to fit ``max_prompt_length``);
    ``full_source`` is the whole abstract; ``truncated`` says whether sentences were dropped.
    """

    key: str
    split: str
    title: str
    source: str
    gold: str
    full_source: str
    truncated: bool
    prompt_length: int

    @property
    def source_words(self) -> int:
        return len(self.source.split())


def load_documents(path: Path, split: str) -> list[dict[str, Any]]:
    """The records of one split of ``documents.jsonl`` (written by ``morbench build-assets summarize``)."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r["split"] == split]


class PromptBuilder:
    """Chat prompts ``<system> <user: INSTRUCTION with the abstract> <assistant>`` that fit ``max_prompt_length``.

    A prompt that would be longer is shortened by dropping whole sentences from the end of the abstract (the
    instruction and the chat template always survive); if even the first sentence does not fit, the abstract
    is cut at a token boundary.
    """

    def __init__(self, tokenizer: Any, max_prompt_length: int, instruction: str = INSTRUCTION) -> None:
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.max_prompt_length = int(max_prompt_length)
        self.overhead = len(self.encode(""))
        if self.overhead >= self.max_prompt_length:
            raise ConfigError(
                f"max_prompt_length={max_prompt_length} leaves no room for the document: the chat template and "
                f"instruction alone take {self.overhead} tokens"
            )

    def encode(self, document: str) -> list[int]:
        messages = [{"role": "user", "content": self.instruction.format(document=document)}]
        ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def fit(self, document: str) -> tuple[str, list[int], bool]:
        """``(shown text, prompt ids, truncated)`` for ``document``."""
        ids = self.encode(document)
        if len(ids) <= self.max_prompt_length:
            return document, ids, False
        sentences = split_sentences(document)
        best: tuple[str, list[int]] | None = None
        low, high = 1, len(sentences) - 1  # binary search for the most leading sentences that fit
        while low <= high:
            middle = (low + high) // 2
            text = " ".join(sentences[:middle])
            candidate = self.encode(text)
            if len(candidate) <= self.max_prompt_length:
                best, low = (text, candidate), middle + 1
            else:
                high = middle - 1
        if best is None:  # not even one sentence fits: cut the abstract's tokens
            budget = self.max_prompt_length - self.overhead
            pieces = self.tokenizer(document, add_special_tokens=False)["input_ids"][:budget]
            text = self.tokenizer.decode(pieces, skip_special_tokens=True).rstrip("\ufffd")
            while len(self.encode(text)) > self.max_prompt_length:
                pieces = pieces[:-1]
                text = self.tokenizer.decode(pieces, skip_special_tokens=True).rstrip("\ufffd")
            best = (text, self.encode(text))
        return best[0], best[1], True

    def contexts(self, records: Sequence[dict[str, Any]]) -> list[Context]:
        """One :class:`~morbench.core.Context` per record: key = aclsum paper id, data = its :class:`Document`."""
        out = []
        for record in records:
            shown, ids, truncated = self.fit(record["abstract"])
            document = Document(
                key=record["key"],
                split=record["split"],
                title=record["title"],
                source=shown,
                gold=" ".join(record["gold"][aspect] for aspect in ASPECTS),
                full_source=record["abstract"],
                truncated=truncated,
                prompt_length=len(ids),
            )
            out.append(Context(key=document.key, prompt_ids=tuple(ids), data=document))
        return out
