"""Plain-text measurements of a summary: words, sentences, syllables, readability formulas, length bands.

Everything here is a pure function of the text (no models), so the oracle and the judge compute it in
microseconds per summary. Syllables come from the ``pyphen`` hyphenation dictionary (``en_US``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import re
from typing import TYPE_CHECKING

from morbench.errors import MissingDependencyError

if TYPE_CHECKING:
    import pyphen

__all__ = [
    "TextStats",
    "band_score",
    "coleman_liau_index",
    "count_syllables",
    "flesch_reading_ease",
    "normalize_whitespace",
    "require_pyphen",
    "split_sentences",
    "text_stats",
    "words",
]

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’.-][A-Za-z0-9]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")
_PARAGRAPH = re.compile(r"\n\s*\n")
_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "etc.", "vs.", "cf.", "fig.", "eq.", "sec.", "approx.", "resp.", "no.")


def normalize_whitespace(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Word tokens: runs of letters/digits, keeping inner apostrophes, hyphens and dots (``state-of-the-art``,
    ``don't``, ``3.5``) inside one word."""
    return _WORD.findall(text)


def split_sentences(text: str) -> list[str]:
    """Sentences: split after ``.``, ``!`` or ``?`` (and closing quotes/brackets) followed by whitespace, except
    after common abbreviations (``e.g.``, ``et al.``, ...), and at blank lines; pieces without a word are
    dropped. A text without a final stop still counts as one sentence."""
    pieces: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        merged: list[str] = []
        for piece in _SENTENCE_END.split(paragraph.strip()):
            if merged and merged[-1].lower().endswith(_ABBREVIATIONS):
                merged[-1] = f"{merged[-1]} {piece.strip()}"
            else:
                merged.append(piece.strip())
        pieces.extend(merged)
    return [p for p in pieces if words(p)]


def require_pyphen() -> None:
    """Summarize envs call this when made: without ``pyphen`` every readability score would fail at scoring."""
    if importlib.util.find_spec("pyphen") is None:
        raise MissingDependencyError(
            'the summarize task counts syllables with `pyphen`, which is not installed; run `pip install "morbench[text]"`'
            " (or `pip install pyphen`)"
        )


@functools.lru_cache(maxsize=1)
def _hyphenator() -> pyphen.Pyphen:
    import pyphen

    return pyphen.Pyphen(lang="en_US", left=1, right=1)


@functools.lru_cache(maxsize=65536)
def count_syllables(word: str) -> int:
    """Syllables of one word: hyphenation points + 1 for each hyphen-separated part (``pyphen`` ``en_US``,
    ``left=right=1``); a part without letters (a number) counts as one syllable."""
    hyphenator = _hyphenator()
    total = 0
    for part in re.split(r"[-'’.]", word):
        if not part:
            continue
        if not any(c.isalpha() for c in part):
            total += 1
            continue
        total += len(hyphenator.positions(part.lower())) + 1
    return max(total, 1)


@dataclasses.dataclass(frozen=True)
class TextStats:
    words: int
    sentences: int
    syllables: int
    letters: int  # letters and digits inside words


def text_stats(text: str) -> TextStats:
    tokens = words(text)
    return TextStats(
        words=len(tokens),
        sentences=max(len(split_sentences(text)), 1),
        syllables=sum(count_syllables(w) for w in tokens),
        letters=sum(sum(c.isalnum() for c in w) for w in tokens),
    )


def flesch_reading_ease(stats: TextStats) -> float:
    """Flesch (1948): ``206.835 - 1.015 * words/sentences - 84.6 * syllables/words`` (higher = easier)."""
    if stats.words == 0:
        return float("nan")
    return 206.835 - 1.015 * stats.words / stats.sentences - 84.6 * stats.syllables / stats.words


def coleman_liau_index(stats: TextStats) -> float:
    """Coleman & Liau (1975): ``0.0588 L - 0.296 S - 15.8``, L = letters per 100 words, S = sentences per 100
    words (a US grade level; lower = easier). Uses characters, not syllables."""
    if stats.words == 0:
        return float("nan")
    letters_per_100 = 100.0 * stats.letters / stats.words
    sentences_per_100 = 100.0 * stats.sentences / stats.words
    return 0.0588 * letters_per_100 - 0.296 * sentences_per_100 - 15.8


def band_score(value: float, low: float, high: float, width: float) -> float:
    """1 inside ``[low, high]``; outside, a Gaussian in log space: ``exp(-d^2 / (2 width^2))`` with ``d`` the
    distance of ``log(value)`` from ``[log(low), log(high)]``. Halving below ``low`` costs as much as doubling
    above ``high``; ``value <= 0`` scores 0."""
    if value <= 0 or not math.isfinite(value):
        return 0.0
    log_value = math.log(value)
    distance = max(math.log(low) - log_value, log_value - math.log(high), 0.0)
    return math.exp(-(distance**2) / (2.0 * width**2))
