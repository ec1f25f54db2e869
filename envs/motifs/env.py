"""Motifs: a synthetic task with closed-form objectives and an exactly known Pareto front."""

from __future__ import annotations

import itertools
import string

import numpy as np

from morbench.core import Context, EvaluationProtocol, InvalidSequence, Oracle, OracleEvaluation, TokenEnv
from morbench.errors import ConfigError
from morbench.preferences import simplex_lattice
from morbench.tokenization import build_word_level_tokenizer
from morbench.vector import vector_entry_point

__all__ = ["MotifOracle", "MotifsEnv", "make_vec"]


class MotifOracle(Oracle):
    """Objective ``k`` is the fraction of motif ``k`` found at its best offset: ``c_k / motif_length``.

    ``c_k = max_p #{i : x[p + i] == motif_k[i]}`` over start positions ``p`` of the sequence (positions past the
    end never match). Motifs use disjoint letters, so every position counts for at most one motif and
    ``sum_k c_k <= len(x)``: the motifs compete for the length budget. Every count vector with
    ``c_k <= motif_length`` and ``sum_k c_k <= max_length`` is reachable (write the motifs' prefixes one after
    another), so the Pareto front is exactly the vectors with ``sum_k c_k = min(max_length, K * motif_length)``.
    """

    property_names: tuple[str, ...]

    def __init__(self, motifs: list[str], alphabet: str, max_length: int, budget: int | None = None) -> None:
        super().__init__(budget=budget)
        self.motifs = list(motifs)
        self.alphabet = alphabet
        self.max_length = max_length
        self.motif_length = len(motifs[0])
        self.objective_names = tuple(f"motif_{k + 1}" for k in range(len(motifs)))
        self.property_names = tuple(f"matches_motif_{k + 1}" for k in range(len(motifs)))
        self._letter_index = {c: i for i, c in enumerate(alphabet)}
        self._motif_codes = np.array([[self._letter_index[c] for c in m] for m in motifs], dtype=np.int64)

    def canonicalize(self, sequence: str, context: Context | None = None) -> str:
        if not sequence:
            raise InvalidSequence("empty sequence")
        if len(sequence) > self.max_length:
            raise InvalidSequence(f"sequence has {len(sequence)} letters; the maximum is {self.max_length}")
        unknown = sorted(set(sequence) - set(self.alphabet))
        if unknown:
            raise InvalidSequence(f"letters {unknown} are not in the alphabet {self.alphabet!r}")
        return sequence

    def evaluate(self, keys: list[str], contexts: list[Context | None]) -> OracleEvaluation:
        counts = self.match_counts(keys)
        rewards = counts / self.motif_length
        properties = {name: counts[:, k].astype(np.float64) for k, name in enumerate(self.property_names)}
        return OracleEvaluation(rewards=rewards, properties=properties)

    def match_counts(self, sequences: list[str]) -> np.ndarray:
        """``(B, K)`` integer best-offset match counts, vectorized over the batch."""
        m = self.motif_length
        codes = np.full((len(sequences), self.max_length + m), -1, dtype=np.int64)
        for b, sequence in enumerate(sequences):
            codes[b, : len(sequence)] = [self._letter_index[c] for c in sequence]
        # windows[b, p, i] = codes[b, p + i] for every start p < max_length
        windows = np.lib.stride_tricks.sliding_window_view(codes, m, axis=1)[:, : self.max_length, :]
        hits = windows[:, None, :, :] == self._motif_codes[None, :, None, :]  # (B, K, P, m)
        return hits.sum(axis=3).max(axis=2)

    def example_sequence(self, counts: np.ndarray | list[int]) -> str:
        """A sequence that reaches exactly the match counts ``counts`` (the motifs' prefixes in order)."""
        return "".join(motif[:c] for motif, c in zip(self.motifs, counts, strict=True))


class MotifsEnv(TokenEnv):
    """Write a short string that contains as much of each of K motifs as possible.

    >>> import morbench
    >>> env = morbench.make("morbench/Motifs-v0")  # no assets: built in milliseconds
    >>> task = env.unwrapped
    >>> task.motifs
    ['CLDK', 'AEHF', 'OMGJ']
    >>> obs, info = env.reset(seed=0)
    >>> for letter in "CLDKAEHF":  # all of the first two motifs, none of the third
    ...     obs, reward, terminated, truncated, info = env.step(task.tokenizer.convert_tokens_to_ids(letter))
    >>> reward, truncated  # max_length = 8 letters: a point of the Pareto front
    (array([1., 1., 0.], dtype=float32), True)
    >>> task.pareto_front().shape
    (15, 3)

    ## Description
    A synthetic, asset-free task with closed-form objectives and an **exactly known Pareto front**, for testing
    multi-objective agents in seconds (Ehrlich-style motifs, cf. holo-bench, made to conflict). The alphabet has
    `num_motifs * motif_length` motif letters plus `num_distractors` distractor letters; each motif is a string of
    `motif_length` distinct letters, disjoint across motifs, drawn from `seed`. The sequence is at most `max_length`
    letters, fewer than all motifs need, so the motifs compete for positions.

    | id | motifs | motif length | max_length | distractors | grid | front |
    |---|---|---|---|---|---|---|
    | `morbench/Motifs-v0` | `CLDK`, `AEHF`, `OMGJ` | 4 | 8 | 4 | simplex lattice, 3 objectives, step 1/3 (10 points) | 15 points, hypervolume 0.6875 |
    | `morbench/Motifs-2obj-v0` | `JCHE`, `FLAD` | 4 | 6 | 4 | 5 points (step 1/4) | 3 points, hypervolume 0.8125 |

    ## Observation Space
    `MultiDiscrete([vocab_size] * max_length)`: generated token ids padded with `[PAD]`.

    ## Action Space
    `Discrete(vocab_size)`: `[PAD]=0 [BOS]=1 [EOS]=2 [UNK]=3`, then one token per letter (`vocab_size` 20 and 16).

    ## Rewards
    One objective per motif, `motif_k` in [0, 1] = `c_k / motif_length`, where
    `c_k = max_p #{i : x[p+i] == motif_k[i]}` over start positions `p` (positions past the end never match). Raw value:
    the count `c_k` (`info["properties"]["matches_motif_k"]`). Because motifs use disjoint letters,
    `sum_k c_k <= len(x)`; every count vector with `c_k <= motif_length` and `sum_k c_k <= max_length` is reachable
    (write the motifs' prefixes one after another), so the Pareto front is exactly the vectors with
    `sum_k c_k = min(max_length, K * motif_length)` (`env.unwrapped.pareto_front()`; tested against brute-force
    enumeration). Invalid sequences (empty, letters outside the alphabet, a special token) get 0 in every objective.

    **Input bounds.** `score()` rejects, before anything else, text longer than `max_length` characters (one letter
    per token) and text whose tokenization holds a special token or a letter outside the alphabet; scoring the
    longest valid string costs well under 1 ms (`tests/benchmarks/test_input_bounds.py`).
    Reference point: the origin.

    ## Starting State
    `reset()` starts from the empty sequence: the observation is all `[PAD]` and `info` is empty. There is no
    randomness in the start state; `seed` seeds `env.np_random`, which this task does not draw from.

    ## Episode End
    Terminates on `[EOS]`; truncates after `max_length` tokens.

    ## Arguments
    | argument | type | default | meaning |
    |---|---|---|---|
    | `num_motifs` | `int` | `3` | number of motifs, one objective each |
    | `motif_length` | `int` | `4` | letters per motif |
    | `max_length` | `int` | `8` | generated tokens, EOS included (letters of the longest sequence) |
    | `num_distractors` | `int` | `4` | letters that belong to no motif |
    | `seed` | `int` | `0` | draws the motifs from the alphabet |
    | `preference_divisions` | `int` | `3` | divisions of the simplex lattice of preferences |
    | `oracle_budget` | `int` or `None` | `None` | maximum number of oracle calls (unique valid sequences) |
    | `render_mode` | `str` or `None` | `None` | None or `"ansi"` |

    ## Prior
    None is shipped: `morbench.models.load_prior(env)` builds a randomly initialised GPT-2 (2 layers, width 64,
    seed 0) whose next-token distribution is near uniform.

    ## Provenance & licenses
    Generated by morbench's own code (MIT). No data.

    ## Version History
    * v0: initial version.
    """

    def __init__(
        self,
        num_motifs: int = 3,
        motif_length: int = 4,
        max_length: int = 8,
        num_distractors: int = 4,
        seed: int = 0,
        preference_divisions: int = 3,
        oracle_budget: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        letters = num_motifs * motif_length + num_distractors
        if num_motifs < 1 or motif_length < 1 or num_distractors < 0 or letters > len(string.ascii_uppercase):
            raise ConfigError(
                f"Motifs needs num_motifs >= 1, motif_length >= 1, num_distractors >= 0 and at most 26 letters "
                f"in total; got {num_motifs} motifs x {motif_length} + {num_distractors} distractors"
            )
        rng = np.random.default_rng(seed)
        alphabet = string.ascii_uppercase[:letters]
        shuffled = "".join(rng.permutation(list(alphabet)))
        motifs = [shuffled[k * motif_length : (k + 1) * motif_length] for k in range(num_motifs)]
        self.motifs = motifs
        self.motif_length = motif_length
        oracle = MotifOracle(motifs, alphabet, max_length, budget=oracle_budget)
        super().__init__(
            tokenizer=build_word_level_tokenizer(list(alphabet), "."),
            oracle=oracle,
            max_length=max_length,
            preference_grid=simplex_lattice(num_motifs, preference_divisions),
            reference_point=np.zeros(num_motifs),
            protocol=EvaluationProtocol(samples_per_preference=512),
            render_mode=render_mode,
        )

    def pareto_front(self) -> np.ndarray:
        """The exact Pareto front in reward space, ``(P, K)``, sorted lexicographically."""
        m, k = self.motif_length, len(self.motifs)
        total = min(self.max_length, k * m)
        front = [c for c in itertools.product(range(m + 1), repeat=k) if sum(c) == total]
        return np.asarray(front, dtype=np.float64) / m


make_vec = vector_entry_point(MotifsEnv)
