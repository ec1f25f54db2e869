"""The morbench contract: token-level multi-objective environments, batched cached oracles, and their results.

Everything in morbench builds on three pieces defined here:

* :class:`Oracle` scores a batch of finished sequences into a ``(B, K)`` float32 reward array. It canonicalizes
  each sequence, caches by canonical key, counts oracle calls the PMO way (unique valid sequences; repeats are
  free; invalid sequences cost nothing and get the ``floor`` reward) and can enforce a call budget.
* :class:`ScoreResult` is what an oracle returns: rewards, validity, reasons and raw property values.
* :class:`InputCheck` bounds the work an oracle does per sequence: before parsing, text longer than the task's
  episodes can write, or whose tokenization holds a special or unknown token, is invalid with a reason.
* :class:`TokenEnv` is a ``gymnasium.Env`` in which one action appends one token. The reward is a float32 vector
  of shape ``(K,)``: zeros until the episode ends (EOS terminates, ``max_length`` truncates), then the oracle's
  vector. ``env.unwrapped`` exposes ``reward_space``, ``reward_dim``, ``objective_names``, ``tokenizer``,
  ``oracle``, ``judge``, ``preference_grid``, ``reference_point``, ``prior_path`` and ``protocol``, and offers the
  sequence-level API :meth:`TokenEnv.score` used by LM trainers.
"""

from __future__ import annotations

import dataclasses
import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from morbench.errors import (
    ConfigError,
    InvalidActionError,
    MorbenchError,
    OracleBudgetExhausted,
    OracleStateError,
    StepAfterDoneError,
)
from morbench.preferences import validate_preference

__all__ = [
    "Context",
    "EvaluationProtocol",
    "InputCheck",
    "InvalidSequence",
    "LazyAttributes",
    "Observation",
    "Oracle",
    "OracleEvaluation",
    "ScoreResult",
    "TokenEnv",
]


Observation: TypeAlias = "np.ndarray | dict[str, np.ndarray]"
"""What :class:`TokenEnv` observes: the padded token ids, int64 ``(max_length,)``, or for a prompt-conditioned task
``{"prompt": (max_prompt_length,), "tokens": (max_length,)}``."""

CacheKey: TypeAlias = "str | tuple[str, str]"
"""An :class:`Oracle` cache key: the canonical form, or ``(context key, canonical form)`` for a prompt-conditioned
task."""


class InvalidSequence(Exception):
    """Raised by :meth:`Oracle.canonicalize` to mark a sequence invalid; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class Context:
    """The conditioning input of a prompt-conditioned episode (e.g. a document to summarize).

    ``key`` identifies the context in caches and result files; ``prompt_ids`` are the token ids the policy
    sees before generating; ``data`` carries whatever the oracle needs (e.g. the source text).
    """

    key: str
    prompt_ids: tuple[int, ...]
    data: Any = None


JUDGE_PREFERENCES = ("all", "uniform")


@dataclasses.dataclass(frozen=True)
class EvaluationProtocol:
    """How a task is evaluated: the same for every method (see ``docs/metrics.md``)."""

    samples_per_preference: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    seeds: tuple[int, ...] = (0, 1, 2)
    context_split: str | None = None  # prompt-conditioned tasks: which split the evaluation prompts come from
    # which preferences' samples the held-out judge scores: "all", or "uniform" (only the uniform preference, where
    # the judge gap is defined) for a task whose judge is expensive (QM9-v1's GFN2-xTB: about 35 molecules/s)
    judge_preferences: str = "all"

    def __post_init__(self) -> None:
        if self.judge_preferences not in JUDGE_PREFERENCES:
            raise ValueError(f"judge_preferences must be one of {JUDGE_PREFERENCES}, got {self.judge_preferences!r}")

    def judges(self, weights: Any) -> bool:
        """Whether the judge scores the samples drawn at preference ``weights`` under this protocol."""
        if self.judge_preferences == "all":
            return True
        w = np.asarray(weights, dtype=np.float64)
        return bool(w.size) and bool(np.allclose(w, np.full(w.size, 1.0 / w.size), atol=1e-6))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


@dataclasses.dataclass
class ScoreResult:
    """Scores of a batch of ``B`` sequences under ``K`` objectives."""

    sequences: list[str]
    rewards: np.ndarray  # (B, K) float32; the floor reward where invalid
    valid: np.ndarray  # (B,) bool
    reasons: list[str | None]  # why a sequence is invalid, None where valid
    keys: list[str | None]  # canonical form used for caching, None where invalid
    properties: dict[str, np.ndarray]  # raw (untransformed) values, (B,) float64, NaN where invalid
    objective_names: tuple[str, ...]

    def info(self, index: int) -> dict[str, Any]:
        """The per-sequence info dict (fresh objects; safe to keep)."""
        return {
            "sequence": self.sequences[index],
            "valid": bool(self.valid[index]),
            "reason": self.reasons[index],
            "canonical": self.keys[index],
            "objectives": {n: float(v) for n, v in zip(self.objective_names, self.rewards[index], strict=True)},
            "properties": {n: _finite_or_none(v[index]) for n, v in self.properties.items()},
        }

    def __len__(self) -> int:
        return len(self.sequences)

    @classmethod
    def all_invalid(cls, sequences: list[str], reasons: list[str | None], oracle: Oracle) -> ScoreResult:
        """A result in which every sequence is invalid (floor reward, NaN properties)."""
        n = len(sequences)
        return cls(
            sequences=list(sequences),
            rewards=np.tile(oracle.floor, (n, 1)),
            valid=np.zeros(n, dtype=bool),
            reasons=[reason or "invalid sequence" for reason in reasons],
            keys=[None] * n,
            properties={name: np.full(n, np.nan) for name in oracle.property_names},
            objective_names=tuple(oracle.objective_names),
        )

    def scatter(self, indices: Sequence[int], other: ScoreResult) -> None:
        """Write the rows of ``other`` into positions ``indices`` of this result."""
        idx = np.asarray(indices, dtype=np.int64)
        self.rewards[idx] = other.rewards
        self.valid[idx] = other.valid
        for j, i in enumerate(indices):
            self.reasons[i] = other.reasons[j]
            self.keys[i] = other.keys[j]
        for name, values in other.properties.items():
            self.properties.setdefault(name, np.full(len(self), np.nan))[idx] = values


@dataclasses.dataclass
class OracleEvaluation:
    """What :meth:`Oracle.evaluate` returns for ``n`` new canonical keys."""

    rewards: np.ndarray  # (n, K)
    properties: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # name -> (n,)
    failures: dict[int, str] = dataclasses.field(default_factory=dict)  # row -> reason; scored as invalid


class InputCheck:
    """The tokenizer-level validity and work bound of finished text, checked before an oracle parses it.

    A text is invalid (floor reward, a reason, no oracle call) when it has more than ``max_characters``
    characters (checked first, so nothing long is ever tokenized or parsed), when its tokenization holds a
    token of ``forbidden_token_ids`` (special tokens, EOS included, and the unknown token: what the token-level
    env forbids or cannot write), or when it has more than ``max_tokens`` tokens (None: no token bound).
    :meth:`TokenEnv.__init__` derives the bounds from ``max_length``, so every text the env's episodes can
    produce passes: ``max_characters`` is ``max_length`` times the longest vocabulary token.
    """

    def __init__(
        self,
        tokenizer: Any,
        forbidden_token_ids: Sequence[int],
        max_characters: int,
        max_tokens: int | None = None,
        task: str = "this task",
    ) -> None:
        if max_characters < 1 or (max_tokens is not None and max_tokens < 1):
            raise ConfigError(f"input bounds must be >= 1, got {max_characters} characters, {max_tokens} tokens")
        self.tokenizer = tokenizer
        self.forbidden_token_ids = frozenset(int(i) for i in forbidden_token_ids)
        self.max_characters = int(max_characters)
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.task = task

    def length_reason(self, text: str) -> str | None:
        """Why ``text`` cannot even be tokenized (None where it can): too long, or not encodable as UTF-8."""
        if len(text) > self.max_characters:
            return (
                f"sequence has {len(text):,} characters; {self.task} accepts at most {self.max_characters:,} "
                "(the longest text its episodes can write), so it is not parsed"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, e.g. "\ud800" from a JSON file
            return (
                f"the text is not valid Unicode: lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start}"
            )
        return None

    def token_reasons(self, texts: Sequence[str]) -> list[str | None]:
        """One reason (None where fine) per text; texts must already be within ``max_characters``."""
        if not texts:
            return []
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:  # the Rust tokenizer directly: several times faster than the Python wrapper
            encodings = backend.encode_batch(list(texts), add_special_tokens=False)
            ids_of, offsets_of = (lambda i: encodings[i].ids), (lambda i: encodings[i].offsets)
        else:
            encoded = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
            ids_of, offsets_of = (lambda i: encoded["input_ids"][i]), (lambda i: encoded["offset_mapping"][i])
        reasons: list[str | None] = []
        for i, text in enumerate(texts):
            ids = ids_of(i)
            if not self.forbidden_token_ids.isdisjoint(ids):
                position = next(p for p, token in enumerate(ids) if token in self.forbidden_token_ids)
                start, end = offsets_of(i)[position]
                token = self.tokenizer.convert_ids_to_tokens(int(ids[position]))
                if text[start:end] != token:  # the unknown token stands for text the vocabulary cannot spell
                    reasons.append(f"{text[start:end]!r} at character {start} is not in {self.task}'s vocabulary")
                else:
                    reasons.append(
                        f"special token {token!r} at character {start}: {self.task} forbids special tokens "
                        "inside a sequence"
                    )
            elif self.max_tokens is not None and len(ids) > self.max_tokens:
                reasons.append(
                    f"sequence is {len(ids)} tokens long; {self.task} episodes end after {self.max_tokens} tokens"
                )
            else:
                reasons.append(None)
        return reasons


class LazyAttributes:
    """The one idiom for what an env or oracle loads on first use: a ``functools.cached_property`` whose name is
    listed in ``not_pickled``, so that a pickled copy (a vector env's worker, a checkpoint) loads it again
    instead of carrying a model or a process pool along."""

    not_pickled: ClassVar[tuple[str, ...]] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in self.not_pickled:
            state.pop(name, None)
        return state


class Oracle(LazyAttributes, ABC):
    """A batched, deterministic, cached scorer of finished sequences.

    Subclasses set ``objective_names`` (and ``reward_low``/``reward_high``, the true bounds of each objective,
    where they are not the default [0, 1]) and implement :meth:`canonicalize` (string -> cache key, raising :class:`InvalidSequence`) and :meth:`evaluate`
    (a batch of new keys -> rewards and raw properties). The base class handles caching, PMO-style call
    counting, the floor reward of invalid sequences, budgets, and isolates exceptions so that a bad sequence
    can never crash an episode. Before anything is parsed, :meth:`screen` applies the task's
    :class:`InputCheck` (``input_check``, set by the env), so every sequence costs bounded work.
    """

    objective_names: tuple[str, ...] = ()
    property_names: tuple[str, ...] = ()
    _reward_low: np.ndarray | None = None  # None: the default bound, see reward_low / reward_high
    _reward_high: np.ndarray | None = None

    def __init__(self, budget: int | None = None) -> None:
        if budget is not None and budget < 0:
            raise ConfigError(f"oracle budget {budget} is negative; use None for no budget")
        self._budget = None if budget is None else int(budget)
        self.input_check: InputCheck | None = None  # set by TokenEnv: the task's tokenizer-level bounds
        self.calls = 0  # unique sequences evaluated (repeats are free, invalid ones cost nothing)
        self.requests = 0  # sequences asked for, repeats and invalid ones included
        self._cache: dict[CacheKey, tuple[np.ndarray, dict[str, float], str | None]] = {}

    # -- to implement -------------------------------------------------------------------------------------
    def canonicalize(self, sequence: str, context: Context | None = None) -> str:
        """Return the canonical form of ``sequence`` (the cache key) or raise :class:`InvalidSequence`."""
        return sequence

    @abstractmethod
    def evaluate(self, keys: list[str], contexts: list[Context | None]) -> OracleEvaluation:
        """Score ``keys`` (canonical, unique, not cached). Must be deterministic."""

    def prepare(self, sequences: list[str]) -> None:
        """Hook called with the batch's screened strings before they are canonicalized (e.g. to parse them all
        in a process pool at once). The default does nothing."""

    @property
    def prefetches(self) -> bool:
        """Whether :meth:`prefetch` does any work (a vector env with deferred scoring then hands it each step's
        finished strings); False by default."""
        return False

    def prefetch(self, sequences: list[str]) -> None:
        """Hook: start the per-string work of scoring ``sequences`` in the background and return at once, so that
        it overlaps what the caller does next (a sampler's next steps); the call that scores them later collects
        it. A hint only: what any call returns never depends on it. The default does nothing."""

    def tokenizer_form(self, sequence: str) -> str:
        """The spelling of ``sequence`` that :attr:`input_check` tokenizes (e.g. upper-cased DNA)."""
        return sequence

    # -- provided -----------------------------------------------------------------------------------------
    @property
    def budget(self) -> int | None:
        """The oracle-call budget (None: unlimited); fixed when the oracle is built."""
        return self._budget

    @budget.setter
    def budget(self, value: Any) -> None:
        raise ConfigError(
            f"oracle.budget is fixed when the oracle is built (it is {self._budget}, cannot become {value!r}); "
            "make a new env with oracle_budget=... instead"
        )

    def screen(self, sequences: Sequence[Any]) -> list[str | None]:
        """Why each sequence is invalid before any parsing (None where it may be canonicalized): not a string,
        longer than the task's input bounds, or a tokenization with special or unknown tokens."""
        reasons: list[str | None] = [
            None if isinstance(s, str) else f"expected a string, got {type(s).__name__}" for s in sequences
        ]
        check = self.input_check
        if check is None:
            return reasons
        for i, sequence in enumerate(sequences):
            if reasons[i] is None:
                reasons[i] = check.length_reason(sequence)
        todo = [i for i, reason in enumerate(reasons) if reason is None]
        texts = [self.tokenizer_form(sequences[i]) for i in todo]
        for i, reason in zip(todo, check.token_reasons(texts), strict=True):
            reasons[i] = reason
        return reasons

    @property
    def reward_dim(self) -> int:
        return len(self.objective_names)

    @property
    def reward_low(self) -> np.ndarray:
        """The lower bound of each objective, float32 ``(K,)``; 0 unless a subclass sets another."""
        low = self._reward_low
        return np.zeros(self.reward_dim, dtype=np.float32) if low is None else low

    @reward_low.setter
    def reward_low(self, value: Sequence[float] | np.ndarray) -> None:
        self._reward_low = np.asarray(value, dtype=np.float32)

    @property
    def reward_high(self) -> np.ndarray:
        """The upper bound of each objective, float32 ``(K,)``; 1 unless a subclass sets another."""
        high = self._reward_high
        return np.ones(self.reward_dim, dtype=np.float32) if high is None else high

    @reward_high.setter
    def reward_high(self, value: Sequence[float] | np.ndarray) -> None:
        self._reward_high = np.asarray(value, dtype=np.float32)

    def close(self) -> None:
        """Release what the oracle holds outside this process (e.g. worker processes); the default does nothing.
        :meth:`TokenEnv.close` calls it for the oracle and the judge."""

    @property
    def floor(self) -> np.ndarray:
        """The reward of an invalid sequence: the lower bound of every objective."""
        return np.asarray(self.reward_low, dtype=np.float32).copy()

    @property
    def remaining(self) -> int | None:
        """Oracle calls left in the budget (None when there is no budget)."""
        return None if self.budget is None else self.budget - self.calls

    def __call__(self, sequences: Sequence[str], contexts: Sequence[Context | None] | None = None) -> ScoreResult:
        n = len(sequences)
        if contexts is None:
            contexts = [None] * n
        elif len(contexts) != n:
            raise ValueError(f"got {n} sequences but {len(contexts)} contexts")
        k = self.reward_dim
        rewards = np.tile(self.floor, (n, 1))
        valid = np.zeros(n, dtype=bool)
        reasons: list[str | None] = [None] * n
        keys: list[str | None] = [None] * n
        properties = {name: np.full(n, np.nan) for name in self.property_names}

        cache_keys: list[CacheKey | None] = [None] * n
        new: dict[CacheKey, tuple[str, Context | None]] = {}
        screened = self.screen(sequences)
        self.prepare([s for s, reason in zip(sequences, screened, strict=True) if reason is None])
        for i, (sequence, context) in enumerate(zip(sequences, contexts, strict=True)):
            if screened[i] is not None:
                reasons[i] = screened[i]
                continue
            try:
                key = self.canonicalize(sequence, context)
            except InvalidSequence as exc:
                reasons[i] = str(exc) or "invalid sequence"
                continue
            except MorbenchError:
                raise  # e.g. an oracle timeout: no verdict about the sequence
            except Exception as exc:
                reasons[i] = f"canonicalization failed: {type(exc).__name__}: {exc}"
                continue
            keys[i] = key
            key_in_cache: CacheKey = key if context is None else (context.key, key)
            cache_keys[i] = key_in_cache
            if key_in_cache not in self._cache and key_in_cache not in new:
                new[key_in_cache] = (key, context)

        if new:
            if self.budget is not None and self.calls + len(new) > self.budget:
                raise OracleBudgetExhausted(
                    f"scoring {len(new)} new sequences would exceed the oracle budget "
                    f"({self.calls} of {self.budget} calls used); stop the run or raise the budget"
                )
            self._evaluate_new(list(new.items()))

        self.requests += n
        for i, cache_key in enumerate(cache_keys):
            if cache_key is None:
                continue
            row, props, failure = self._cache[cache_key]
            if failure is not None:
                reasons[i] = failure
                keys[i] = None
                continue
            rewards[i] = row
            valid[i] = True
            for name, value in props.items():
                properties[name][i] = value
        assert rewards.shape == (n, k)
        return ScoreResult(list(sequences), rewards, valid, reasons, keys, properties, self.objective_names)

    def _evaluate_new(self, items: list[tuple[CacheKey, tuple[str, Context | None]]]) -> None:
        low, high = self.reward_low, self.reward_high
        keys = [key for _, (key, _) in items]
        contexts = [context for _, (_, context) in items]
        try:
            evaluations = [self.evaluate(keys, contexts)]
            rows = [list(range(len(items)))]
        except MorbenchError:
            raise  # not a verdict about the sequences (e.g. an oracle timeout): nothing is cached or charged
        except Exception:
            evaluations, rows = [], []
            for j in range(len(items)):
                try:
                    evaluations.append(self.evaluate([keys[j]], [contexts[j]]))
                except MorbenchError:
                    raise
                except Exception as exc:
                    evaluations.append(
                        OracleEvaluation(np.full((1, self.reward_dim), np.nan), failures={0: f"oracle failed: {exc}"})
                    )
                rows.append([j])
        for evaluation, positions in zip(evaluations, rows, strict=True):
            values = np.asarray(evaluation.rewards, dtype=np.float32).reshape(len(positions), self.reward_dim)
            for local, j in enumerate(positions):
                failure = evaluation.failures.get(local)
                row = values[local]
                if failure is None and not np.all(np.isfinite(row)):
                    failure = f"oracle returned a non-finite reward {row.tolist()}"
                if failure is None:
                    row = np.clip(row, low, high).astype(np.float32)
                props = {name: float(evaluation.properties[name][local]) for name in evaluation.properties}
                self._cache[items[j][0]] = (row, props, failure)
        self.calls += len(items)

    def state_dict(self) -> dict[str, Any]:
        """Counters and cache as JSON-ready data, so a resumed run counts oracle calls exactly as before."""
        return {"calls": self.calls, "requests": self.requests, "budget": self.budget, "cache": self.cache_records()}

    def cache_records(self, start: int = 0) -> list[list[Any]]:
        """The cache entries from the ``start``-th on, in insertion order, as :meth:`state_dict` stores them.

        Entries are only ever added (until :meth:`clear_cache`), so a checkpoint can append the entries since its
        last write instead of re-writing the whole cache (:meth:`cached_count` says how many there are).
        """
        return [
            [list(key) if isinstance(key, tuple) else key, row.tolist(), props, failure]
            for key, (row, props, failure) in itertools.islice(self._cache.items(), start, None)
        ]

    def cached_count(self) -> int:
        """The number of cached sequences (of :meth:`cache_records`)."""
        return len(self._cache)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s data, all or nothing; raises :class:`OracleStateError` naming the bad value.

        The counters must be non-negative integers (``requests >= calls``, no more calls than the budget allows)
        and the saved budget must be this oracle's: a resumed run keeps the budget it was started with.
        """
        if not isinstance(state, dict) or not {"calls", "requests", "budget", "cache"} <= set(state):
            raise OracleStateError(
                f"oracle state must be a dict with calls, requests, budget and cache, got {_describe(state)}; "
                "restore the run's checkpoint or start the run again"
            )
        calls, requests, budget = state["calls"], state["requests"], state["budget"]
        for name, value in (("calls", calls), ("requests", requests)):
            if not _is_count(value):
                raise OracleStateError(
                    f"oracle state has {name}={value!r}; it must be a non-negative integer (a damaged or edited "
                    "checkpoint: restore it or start the run again)"
                )
        if budget != self._budget or (budget is not None and not _is_count(budget)):
            raise OracleStateError(
                f"oracle state was saved with budget {budget!r} but this oracle's budget is {self._budget!r}; "
                "resume with the same oracle_budget the run started with"
            )
        if requests < calls or (budget is not None and calls > budget):
            raise OracleStateError(
                f"oracle state is inconsistent: calls={calls}, requests={requests}, budget={budget} (calls must be "
                "<= requests and <= budget); restore the checkpoint or start the run again"
            )
        cache: dict[CacheKey, tuple[np.ndarray, dict[str, float], str | None]] = {}
        entries = state["cache"]
        if not isinstance(entries, list) or len(entries) > calls:
            raise OracleStateError(
                f"oracle state's cache must be a list of at most calls={calls} entries, got {_describe(entries)}"
            )
        for number, entry in enumerate(entries):
            try:
                key, row, props, failure = entry
                array = np.asarray(row, dtype=np.float32)
                if array.shape != (self.reward_dim,) or not isinstance(props, dict):
                    raise ValueError(f"a reward row of {self.reward_dim} values and a properties dict")
                if failure is not None and not isinstance(failure, str):
                    raise ValueError("failure must be a string or null")
                if not isinstance(key, (str, list)):
                    raise ValueError("the key must be a string or a [context, key] pair")
                cache[tuple(key) if isinstance(key, list) else key] = (array, dict(props), failure)
            except (TypeError, ValueError) as exc:
                raise OracleStateError(
                    f"oracle state's cache entry {number} ({str(entry)[:80]}) is malformed: {exc}; restore the "
                    "checkpoint or start the run again"
                ) from None
        self.calls, self.requests, self._cache = calls, requests, cache

    def clear_cache(self) -> None:
        """Forget cached scores (call counters are kept)."""
        self._cache.clear()


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 0)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {str(value)[:60]}"


def _as_token_array(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64).reshape(-1)


class TokenEnv(LazyAttributes, gym.Env):
    """Base class of morbench environments: generate a sequence token by token, get a reward vector at the end.

    Subclasses load their assets and call ``super().__init__``; their docstring is the task's env card, from which
    ``envs/<task>/README.md`` is generated (``morbench card --write``, :mod:`morbench.cards`).
    Observation: the generated token ids, padded with ``pad_token_id`` to ``max_length`` (a ``MultiDiscrete``);
    prompt-conditioned tasks observe ``{"prompt": ..., "tokens": ...}`` with the prompt left-padded to
    ``max_prompt_length``. Action: ``Discrete(vocab_size)``; one action appends one token.
    """

    # an instance attribute, as gymnasium.Env declares it (mypy refuses a ClassVar override)
    metadata: dict[str, Any] = {"render_modes": ["ansi"]}  # noqa: RUF012
    rebuild_command: ClassVar[str | None] = None  # the command that rebuilds the task's assets, named in errors
    # whether the input check bounds texts to max_length tokens (a task whose oracle has its own, stricter
    # token rule, such as Summarize's overlong rule, sets False so that rule gives the reason)
    bound_input_tokens: ClassVar[bool] = True

    def __init__(
        self,
        *,
        tokenizer: Any,
        oracle: Oracle,
        max_length: int,
        preference_grid: np.ndarray,
        reference_point: Sequence[float] | np.ndarray,
        judge: Oracle | None = None,
        prior_path: str | Path | None = None,
        contexts: Sequence[Context] | None = None,
        max_prompt_length: int = 0,
        protocol: EvaluationProtocol | None = None,
        render_mode: str | None = None,
        extra_forbidden_token_ids: Sequence[int] = (),
    ) -> None:
        if max_length < 1:
            raise ConfigError(f"max_length must be >= 1, got {max_length}")
        from morbench.registry import check_vectorizer  # Gymnasium's scalar-reward vectorizers: a clear error

        check_vectorizer()
        if render_mode not in (None, "ansi"):
            raise ConfigError(f"render_mode {render_mode!r} is not supported; use None or 'ansi'")
        self.tokenizer = tokenizer
        self.oracle = oracle
        self.judge = judge
        self.max_length = int(max_length)
        self.prior_path = Path(prior_path) if prior_path is not None else None
        self.protocol = protocol or EvaluationProtocol()
        self.render_mode = render_mode
        self.objective_names = tuple(oracle.objective_names)
        self.reward_dim = len(self.objective_names)
        self.reward_space = spaces.Box(
            low=np.asarray(oracle.reward_low, dtype=np.float32),
            high=np.asarray(oracle.reward_high, dtype=np.float32),
            shape=(self.reward_dim,),
            dtype=np.float32,
        )
        self.preference_grid = np.asarray(
            [validate_preference(w, self.reward_dim) for w in preference_grid], dtype=np.float64
        )
        self.reference_point = np.asarray(reference_point, dtype=np.float64)
        if self.reference_point.shape != (self.reward_dim,):
            raise ConfigError(f"reference_point {reference_point!r} must have {self.reward_dim} entries")

        self.vocab_size = len(tokenizer)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(tokenizer, name, None) is None:
                raise ConfigError(f"the tokenizer has no {name}; morbench tokenizers need BOS, EOS and PAD tokens")
        self.bos_token_id = int(tokenizer.bos_token_id)
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id)
        # any special token other than EOS inside a generated sequence makes it invalid
        special = set(tokenizer.all_special_ids) | {int(i) for i in extra_forbidden_token_ids}
        self.forbidden_token_ids = np.array(sorted(special - {self.eos_token_id}), dtype=np.int64)
        # the same rule for text given to score(): no special token (EOS included: episodes end there) and no
        # unknown token, and no more than the episodes can write (see docs/contract.md, "Input bounds")
        self.input_check = self.build_input_check(special | {self.eos_token_id})
        for scorer in (oracle, judge):
            if scorer is not None:
                scorer.input_check = self.input_check

        self.contexts = list(contexts) if contexts is not None else None
        self.max_prompt_length = int(max_prompt_length)
        self.action_space = spaces.Discrete(self.vocab_size)
        token_space = spaces.MultiDiscrete(np.full(self.max_length, self.vocab_size, dtype=np.int64))
        if self.contexts is None:
            self.observation_space = token_space
        else:
            if not self.contexts:
                raise ConfigError("a prompt-conditioned task needs at least one context")
            if self.max_prompt_length < 1:
                raise ConfigError("a prompt-conditioned task needs max_prompt_length >= 1")
            prompt_space = spaces.MultiDiscrete(np.full(self.max_prompt_length, self.vocab_size, dtype=np.int64))
            self.observation_space = spaces.Dict({"prompt": prompt_space, "tokens": token_space})

        self._tokens = np.full(self.max_length, self.pad_token_id, dtype=np.int64)
        self._length = 0
        self._done = True
        self._context: Context | None = None

    def build_input_check(self, forbidden_token_ids: set[int]) -> InputCheck:
        """The :class:`InputCheck` of this task: at most ``max_length`` tokens (if ``bound_input_tokens``) and
        ``max_length`` times the longest vocabulary token in characters, no forbidden or unknown token."""
        vocabulary = self.tokenizer.get_vocab()
        longest = max(len(token) for token, i in vocabulary.items() if i not in forbidden_token_ids)
        unknown = getattr(self.tokenizer, "unk_token_id", None)
        forbidden = forbidden_token_ids | ({int(unknown)} if unknown is not None else set())
        spec = getattr(self, "spec", None)
        name = spec.id if spec is not None else type(self).__name__
        return InputCheck(
            self.tokenizer,
            sorted(forbidden),
            max_characters=self.max_length * longest,
            max_tokens=self.max_length if self.bound_input_tokens else None,
            task=name,
        )

    # -- episode API --------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        super().reset(seed=seed)
        self._tokens.fill(self.pad_token_id)
        self._length = 0
        self._done = False
        self._context = self.draw_contexts(self.np_random, 1, options)[0]
        info: dict[str, Any] = {}
        if self._context is not None:
            info["context"] = self._context.key
        return self._observation(), info

    def step(self, action: Any) -> tuple[Observation, np.ndarray, bool, bool, dict[str, Any]]:
        if self._done:
            raise StepAfterDoneError("step() called after the episode ended; call reset() first")
        token = self.check_action(action)
        length = self._length + 1
        terminated = token == self.eos_token_id
        truncated = not terminated and length >= self.max_length
        reward = np.zeros(self.reward_dim, dtype=np.float32)
        info: dict[str, Any] = {}
        if terminated or truncated:
            # score before changing any state: if scoring raises (e.g. OracleBudgetExhausted), the episode is
            # exactly as it was, and the same step can be retried
            ids = np.append(self._tokens[: self._length], token)
            result = self.score_token_ids([ids], [self._context])
            reward = result.rewards[0].copy()
            info = result.info(0)
            info["length"] = length
            if self._context is not None:
                info["context"] = self._context.key
            self._done = True
        self._tokens[self._length] = token
        self._length = length
        return self._observation(), reward, bool(terminated), bool(truncated), info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        ids = self._tokens[: self._length]
        return self.tokenizer.decode(ids.tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    # -- sequence-level API -------------------------------------------------------------------------------
    def score(self, sequences: Sequence[str], contexts: Sequence[Context | None] | None = None) -> ScoreResult:
        """Score a batch of finished sequences with the training oracle: ``result.rewards`` is ``(B, K)``."""
        return self.oracle(list(sequences), contexts)

    def judge_score(self, sequences: Sequence[str], contexts: Sequence[Context | None] | None = None) -> ScoreResult:
        """Score a batch with the held-out judge (raises if the task has none)."""
        if self.judge is None:
            raise ConfigError(f"{type(self).__name__} has no held-out judge")
        return self.judge(list(sequences), contexts)

    def score_token_ids(
        self,
        token_ids: Sequence[Sequence[int] | np.ndarray] | np.ndarray,
        contexts: Sequence[Context | None] | None = None,
    ) -> ScoreResult:
        """Decode generated token ids (cut at the first EOS) and score them.

        A sequence that contains a special token other than EOS is invalid, gets the floor reward and is not
        sent to the oracle.
        """
        sequences, reasons = self.decode_token_ids(token_ids)
        contexts = list(contexts) if contexts is not None else [None] * len(sequences)
        clean = [i for i, reason in enumerate(reasons) if reason is None]
        if len(clean) == len(sequences):
            return self.score(sequences, contexts)
        result = ScoreResult.all_invalid(sequences, reasons, self.oracle)
        if clean:
            result.scatter(clean, self.score([sequences[i] for i in clean], [contexts[i] for i in clean]))
        return result

    def decode_token_ids(
        self, token_ids: Sequence[Sequence[int] | np.ndarray] | np.ndarray
    ) -> tuple[list[str], list[str | None]]:
        """Decode rows of generated ids (up to the first EOS) to strings; flag rows with forbidden tokens."""
        rows = []
        reasons: list[str | None] = []
        for ids in token_ids:
            ids = _as_token_array(ids)
            eos = np.flatnonzero(ids == self.eos_token_id)
            if eos.size:
                ids = ids[: eos[0]]
            bad = np.flatnonzero(np.isin(ids, self.forbidden_token_ids))
            if bad.size:
                token = self.tokenizer.convert_ids_to_tokens(int(ids[bad[0]]))
                reasons.append(f"special token {token!r} at position {int(bad[0])}")
            else:
                reasons.append(None)
            rows.append(ids.tolist())
        sequences = self.tokenizer.batch_decode(rows, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return sequences, reasons

    def domain_metrics(self, sequences: Sequence[str]) -> dict[str, float]:
        """Task-specific quality metrics of a sample set, reported by the scorer (novelty, diversity, ...).

        ``sequences`` are the decoded samples of one preference, invalid ones included. Tasks override this;
        the scorer itself computes validity and uniqueness for every task.
        """
        return {}

    def pareto_front(self) -> np.ndarray | None:
        """The exact Pareto front in reward space, ``(P, K)``, where the task knows it (synthetic tasks such as
        Motifs); None where it is unknown, the default. The scorer reports IGD and utility loss against it."""
        return None

    def close(self) -> None:
        """Release what the oracle and the judge hold outside this process (e.g. CNS's worker processes)."""
        for scorer in (getattr(self, "oracle", None), getattr(self, "judge", None)):
            if scorer is not None:
                scorer.close()
        super().close()

    # -- helpers ------------------------------------------------------------------------------------------
    def check_action(self, action: Any) -> int:
        """Return ``action`` as an int token id or raise :class:`InvalidActionError` naming it."""
        try:
            value = np.asarray(action)
        except (TypeError, ValueError):  # e.g. a ragged nested list
            value = np.asarray(None)
        if value.shape != () or value.dtype.kind not in "iu":
            raise InvalidActionError(
                f"action {action!r} is not an integer token id; actions are ints in [0, {self.vocab_size})"
            )
        token = int(value)
        if not 0 <= token < self.vocab_size:
            raise InvalidActionError(
                f"action {token} is outside the vocabulary; valid token ids are 0..{self.vocab_size - 1}"
            )
        return token

    def draw_contexts(
        self, rng: np.random.Generator, count: int, options: dict[str, Any] | None = None
    ) -> list[Context | None]:
        """Pick the contexts of ``count`` new episodes (``options={"context_index": i}`` selects one)."""
        if self.contexts is None:
            return [None] * count
        if options and "context_index" in options:
            index = options["context_index"]
            if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.contexts):
                raise ConfigError(f"context_index {index!r} is not in 0..{len(self.contexts) - 1}")
            return [self.contexts[int(index)]] * count
        picks = rng.integers(0, len(self.contexts), size=count)
        return [self.contexts[int(i)] for i in picks]

    def prompt_array(self, contexts: Sequence[Context | None]) -> np.ndarray:
        """Left-pad the prompts of ``contexts`` to ``(len(contexts), max_prompt_length)``."""
        out = np.full((len(contexts), self.max_prompt_length), self.pad_token_id, dtype=np.int64)
        for i, context in enumerate(contexts):
            if context is not None and context.prompt_ids:
                ids = context.prompt_ids[-self.max_prompt_length :]
                out[i, self.max_prompt_length - len(ids) :] = ids
        return out

    def _observation(self) -> Observation:
        tokens = self._tokens.copy()
        if self.contexts is None:
            return tokens
        return {"prompt": self.prompt_array([self._context])[0], "tokens": tokens}
