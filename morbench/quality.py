"""Task quality: how good a task is as a multi-objective benchmark, measured on its own prior, oracle and judge.

``morbench quality <env-id>`` (or :func:`measure`) answers four questions about a registered task and writes the
answer to ``envs/<task>/quality/<Name>-v<N>.json``, from which the env card's "Task quality" section is rendered
(:func:`render_quality_section`, called by :mod:`morbench.cards`):

1. **Do the objectives conflict?** Pearson and Spearman correlation of every pair of objectives on the valid
   prior samples; the fraction of valid prior samples that are non-dominated among them; the fraction whose every
   objective exceeds 0.5, and the best worst objective.
2. **How much headroom is there?** The prior's hypervolume and served utility against the best the task knows:
   exact where the task knows its Pareto front (``env.pareto_front()``, Motifs), otherwise the best found by a
   documented search over the training oracle: best-of-N over prior samples for every task, plus a genetic
   algorithm (``mol_ga``, one per preference of the grid, linear scalarization) for molecules and a mutation
   hill-climb per preference for DNA. The ratios prior / best are the headroom.
3. **Can the judge catch reward hacking?** Per-objective agreement of the held-out judge with the oracle and the
   judge gap (mean oracle reward minus mean judge reward, the scorer's sign: positive where the judge does not
   confirm the oracle) on prior samples and on optimized samples (the search's best candidates per preference).
4. **What did it cost?** Oracle calls and wall seconds per stage, hardware, seeds and package versions.

Every metric is the project's own (:mod:`morbench.metrics`, :mod:`morbench.buildkit`); the definitions are in
``docs/metrics.md`` ("Task quality report"). Sizes are the constants below, overridable per run.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from morbench.core import Context, ScoreResult, TokenEnv

__all__ = [
    "DEFAULT_SIZES",
    "QUALITY_DIR",
    "SEARCH_KINDS",
    "QualityConfig",
    "QualityRun",
    "exact_best",
    "figures_from_samples",
    "measure",
    "quality_figures",
    "read_quality_report",
    "render_quality_section",
    "report_path",
    "search_kind",
    "write_quality_report",
]

QUALITY_DIR = "quality"  # envs/<task>/quality/<Name>-v<N>.json
PACKAGES = ("morbench", "torch", "transformers", "numpy", "rdkit", "mol_ga", "moocore")

# How each task family searches for its best achievable points (by the module of the env class's entry point;
# an unknown family gets best-of-N only). "exact": the task knows its front (env.pareto_front()).
SEARCH_KINDS = {
    "morbench.envs.motifs.env": "exact",
    "morbench.envs.qm9.env": "molecule",
    "morbench.envs.cns.env": "molecule",
    "morbench.envs.enhancer.env": "dna",
    "morbench.envs.summarize.env": "text",
}

# Default sizes per search kind: small enough that one id's report runs in minutes on a 2-core CPU at 1 thread.
# prior_samples: prior samples measured; best_of_n: further prior samples that only feed the best-of-N search;
# ga_*: per preference, a mol_ga run seeded with the pool's best ga_population molecules under w.r, for
# ga_generations generations of ga_offspring children (at most ga_generations * ga_offspring new oracle calls);
# climb_*: per preference, a hill-climb keeping the climb_width best sequences, climb_rounds rounds, each parent
# proposing climb_children mutants of 1-3 substituted bases; optimized_per_preference: how many of the search's
# best candidates per preference the judge scores.
DEFAULT_SIZES: dict[str, dict[str, int]] = {
    "exact": {"prior_samples": 10_000, "best_of_n": 0},
    "molecule": {
        "prior_samples": 10_000,
        "best_of_n": 10_000,
        "ga_population": 500,
        "ga_generations": 10,
        "ga_offspring": 200,
        "optimized_per_preference": 50,
    },
    "dna": {
        "prior_samples": 10_000,
        "best_of_n": 10_000,
        "climb_width": 16,
        "climb_rounds": 20,
        "climb_children": 8,
        "optimized_per_preference": 50,
    },
    "text": {"prior_samples": 300, "best_of_n": 0, "optimized_per_preference": 1},
    "other": {"prior_samples": 10_000, "best_of_n": 10_000, "optimized_per_preference": 50},
}
SIZE_FIELDS = (
    "prior_samples",
    "best_of_n",
    "ga_population",
    "ga_generations",
    "ga_offspring",
    "climb_width",
    "climb_rounds",
    "climb_children",
    "optimized_per_preference",
)
POINT_DECIMALS = 6  # stored front points are rounded to this many decimals (the best figures use the rounded points)
INVALID_SCORE = -1.0  # what a search's scalarized score gives an invalid candidate (every valid one is >= 0)
DNA_BASES = "ACGT"


# -- configuration -----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class QualityConfig:
    """Sizes and seeds of one quality report; a size left None takes the task kind's :data:`DEFAULT_SIZES`."""

    prior_samples: int | None = None  # prior samples measured (temperature and top-p of the task's protocol)
    best_of_n: int | None = None  # further prior samples that only feed the best-of-N search
    ga_population: int | None = None  # molecules: mol_ga population per preference
    ga_generations: int | None = None  # molecules: generations per preference
    ga_offspring: int | None = None  # molecules: children per generation
    climb_width: int | None = None  # DNA: sequences kept per preference
    climb_rounds: int | None = None  # DNA: rounds per preference
    climb_children: int | None = None  # DNA: mutants per kept sequence and round
    optimized_per_preference: int | None = None  # best candidates per preference scored by the judge
    search: bool = True  # False: best-of-N over the prior samples only (no GA / hill-climb, no extra samples)
    seed: int = 0  # prior sampling seed; the best-of-N samples use seed + 1, the searches seed + preference index
    batch_size: int = 256  # sampling batch
    progress: bool = True  # tqdm progress bars

    def __post_init__(self) -> None:
        for name in SIZE_FIELDS:
            value = getattr(self, name)
            minimum = 0 if name == "best_of_n" else 1
            if value is not None and (not isinstance(value, int) or value < minimum):
                raise ConfigError(f"QualityConfig.{name} must be an integer >= {minimum} (or None), got {value!r}")
        if self.batch_size < 1:
            raise ConfigError(f"QualityConfig.batch_size must be >= 1, got {self.batch_size}")

    def sizes(self, kind: str) -> dict[str, int]:
        """The sizes this run uses for a task of search kind ``kind``: the defaults with this config's overrides."""
        sizes = dict(DEFAULT_SIZES[kind])
        for name in SIZE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                sizes[name] = value
        if not self.search:
            sizes = {k: v for k, v in sizes.items() if k in ("prior_samples", "optimized_per_preference")}
            sizes["best_of_n"] = 0
        return sizes


def search_kind(env_id: str) -> str:
    """The search kind of a registered id: ``exact``, ``molecule``, ``dna``, ``text`` or ``other``."""
    from morbench.registry import spec

    entry_point = spec(env_id).entry_point
    module = entry_point.partition(":")[0] if isinstance(entry_point, str) else ""
    return SEARCH_KINDS.get(module, "other")


def report_path(env_id: str) -> Path:
    """Where the committed report of ``env_id`` lives: ``<env package>/quality/<Name>-v<N>.json``."""
    from morbench.cards import card_path, env_class
    from morbench.registry import spec

    env_spec = spec(env_id)
    return card_path(env_class(env_id)).parent / QUALITY_DIR / f"{env_spec.name}-v{env_spec.version}.json"


# -- samples -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Candidates:
    """Scored sequences: oracle rewards ``(n, K)``, validity and the context key of each (None: unconditional)."""

    sequences: list[str]
    rewards: np.ndarray
    valid: np.ndarray
    contexts: list[str | None]

    @classmethod
    def empty(cls, k: int) -> Candidates:
        """No candidates, for ``k`` objectives."""
        return cls([], np.zeros((0, k)), np.zeros(0, dtype=bool), [])

    def extend(self, other: Candidates) -> Candidates:
        """These candidates followed by ``other``'s."""
        return Candidates(
            self.sequences + other.sequences,
            np.concatenate([self.rewards, other.rewards]),
            np.concatenate([self.valid, other.valid]),
            self.contexts + other.contexts,
        )

    def only_valid(self) -> Candidates:
        """The valid candidates."""
        keep = np.flatnonzero(self.valid)
        return Candidates(
            [self.sequences[i] for i in keep], self.rewards[keep], self.valid[keep], [self.contexts[i] for i in keep]
        )


def _scored(result: ScoreResult, contexts: Sequence[Context | None]) -> Candidates:
    keys = [c.key if c is not None else None for c in contexts]
    return Candidates(list(result.sequences), np.asarray(result.rewards, np.float64), result.valid.copy(), keys)


def sample_prior(task: TokenEnv, prior: Any, count: int, seed: int, config: QualityConfig, desc: str) -> Candidates:
    """``count`` prior samples with the protocol's decoding and contexts, scored by the training oracle."""
    import torch
    from tqdm.auto import tqdm

    from morbench.evaluation import evaluation_contexts
    from morbench.sampling import sample_for_task

    contexts = evaluation_contexts(task, count, seed)
    generator = torch.Generator().manual_seed(seed)
    out = Candidates.empty(task.reward_dim)
    for start in tqdm(range(0, count, config.batch_size), desc=desc, unit="batch", disable=not config.progress):
        chunk = contexts[start : start + config.batch_size]
        generation = sample_for_task(prior, task, chunk, generator, task.protocol.temperature, task.protocol.top_p)
        sequences, _ = task.decode_token_ids(generation.rows())
        out = out.extend(_scored(task.score(sequences, chunk), chunk))
    return out


# -- figures of a sample set -------------------------------------------------------------------------------------
def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _point_key(row: np.ndarray) -> tuple[float, ...]:
    return tuple(float(x) for x in row)


def non_dominated_fraction(points: np.ndarray) -> float:
    """The fraction of ``points`` (rows, duplicates counted) that no other point dominates (maximisation)."""
    from morbench.metrics import non_dominated

    if len(points) == 0:
        return float("nan")
    front = {_point_key(row) for row in non_dominated(points)}
    return float(np.mean([_point_key(row) in front for row in np.asarray(points, np.float64)]))


def figures_from_samples(
    rewards: np.ndarray, valid: np.ndarray, objective_names: Sequence[str], weights: np.ndarray, reference: np.ndarray
) -> dict[str, Any]:
    """The prior figures of a sample set: validity, conflict and the prior's hypervolume and served utility.

    ``rewards`` are every sample's oracle rewards (the floor where invalid) and ``valid`` their validity. The
    prior serves every preference with the same samples, so its per-preference means are all the pooled mean of
    every sample (invalid ones at the floor, as the protocol counts them): its served utility is
    :func:`morbench.metrics.served_utility` of that mean at every preference, and its hypervolume the
    :func:`morbench.metrics.hypervolume` of that one point (what the cross-fitted estimate converges to for a
    preference-blind policy). Conflict figures use the valid samples only.
    """
    from morbench.buildkit import pairwise_correlations
    from morbench.metrics import hypervolume, non_dominated, served_utility

    rewards = np.asarray(rewards, np.float64)
    good = rewards[np.asarray(valid, bool)]
    mean = rewards.mean(axis=0)
    columns = {name: good[:, k] for k, name in enumerate(objective_names)}
    correlations = pairwise_correlations(columns) if len(good) > 1 else {"pearson": {}, "spearman": {}}
    worst = good.min(axis=1) if len(good) else np.zeros(0)
    return {
        "samples": len(rewards),
        "valid": len(good),
        "validity": float(np.mean(valid)),
        "mean_reward": mean.tolist(),
        "mean_reward_valid": good.mean(axis=0).tolist() if len(good) else None,
        "correlations": {m: {pair: _finite(r) for pair, r in rs.items()} for m, rs in correlations.items()},
        "non_dominated_fraction": _finite(non_dominated_fraction(good)),
        "all_above_half_fraction": _finite(float(np.mean(worst > 0.5))) if len(good) else None,
        "best_worst_objective": float(worst.max()) if len(good) else None,
        "hypervolume": hypervolume(mean[None, :], reference),
        "served_utility": served_utility(np.tile(mean, (len(weights), 1)), weights),
        "samples_front_hypervolume": hypervolume(non_dominated(good), reference) if len(good) else 0.0,
    }


# -- the best achievable -------------------------------------------------------------------------------------------
def best_figures(fronts: Sequence[np.ndarray], weights: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Best hypervolume and served utility from the best points found, one front per context (one if none).

    Per front (a context's points): the hypervolume of the points and, per preference, the best ``w . r``;
    both averaged over fronts (a policy must serve every context). Best served utility is the grid mean of the
    per-preference best (:func:`morbench.metrics.served_utility` of each preference's best point).
    """
    from morbench.metrics import hypervolume, served_utility

    weights = np.asarray(weights, np.float64)
    fronts = [front for front in fronts if len(front)]
    if not fronts:  # nothing valid was found: no estimate
        return {
            "hypervolume": None,
            "served_utility": None,
            "per_preference_utility": None,
            "best_worst_objective": None,
        }
    per_front_hv, per_front_utility, per_preference, worst = [], [], np.zeros(len(weights)), []
    for front in fronts:
        front = np.asarray(front, np.float64)
        best = front[np.argmax(weights @ front.T, axis=1)]  # each preference's best point
        per_front_hv.append(hypervolume(front, reference))
        per_front_utility.append(served_utility(best, weights))
        per_preference += np.sum(weights * best, axis=1)
        worst.append(float(front.min(axis=1).max()))  # the best compromise is on the front
    return {
        "hypervolume": float(np.mean(per_front_hv)),
        "served_utility": float(np.mean(per_front_utility)),
        "per_preference_utility": (per_preference / len(fronts)).tolist(),
        "best_worst_objective": float(np.mean(worst)),
    }


def exact_best(task: TokenEnv) -> dict[str, Any] | None:
    """The exact best points of a task that knows its Pareto front (``task.pareto_front()``), else None."""
    front = task.pareto_front()
    if front is None:
        return None
    front = np.asarray(front, np.float64)
    example = getattr(task.oracle, "example_sequence", None)
    scale = getattr(task, "motif_length", None)
    sequences = {}
    if example is not None and scale is not None:  # Motifs: the motifs' prefixes reach each point
        sequences = {_point_key(row): example(np.rint(row * scale).astype(int)) for row in front}
    return {"fronts": [_front_entry(None, front, sequences, task.preference_grid)]}


def _front_entry(
    context: str | None, points: np.ndarray, sequences: dict[tuple[float, ...], str], weights: np.ndarray
) -> dict[str, Any]:
    """A stored front: its points and, per preference of the grid, the best point's sequence (where known)."""
    best = np.argmax(np.asarray(weights) @ points.T, axis=1)
    return {
        "context": context,
        "points": points.tolist(),
        "best_sequence_per_preference": [sequences.get(_point_key(points[i])) for i in best] if sequences else None,
    }


def _fronts_of(found: Candidates, weights: np.ndarray) -> list[dict[str, Any]]:
    """The non-dominated valid points of ``found`` per context, rounded to :data:`POINT_DECIMALS` decimals.

    Rounding keeps the committed report small (a 3-objective DNA front holds thousands of points); every best
    figure is computed from the rounded points, so it recomputes exactly from the report. Unconditional tasks
    also keep each preference's best sequence.
    """
    from morbench.metrics import non_dominated

    fronts = []
    keys = sorted({c for c in found.contexts}, key=lambda c: (c is not None, c or ""))
    for key in keys:
        rows = [i for i, c in enumerate(found.contexts) if c == key]
        rounded = np.round(found.rewards[rows], POINT_DECIMALS)
        sequences: dict[tuple[float, ...], str] = {}
        if key is None:
            for row, i in zip(rounded, rows, strict=True):
                sequences.setdefault(_point_key(row), found.sequences[i])
        fronts.append(_front_entry(key, non_dominated(rounded), sequences, weights))
    return fronts


def _ranked(found: Candidates, weights: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` best distinct (context, sequence) candidates under ``weights``, per context."""
    scores = found.rewards @ weights
    chosen: list[int] = []
    for key in sorted({c for c in found.contexts}, key=lambda c: (c is not None, c or "")):
        seen: set[str] = set()
        rows = sorted((i for i, c in enumerate(found.contexts) if c == key), key=lambda i: (-scores[i], i))
        for i in rows:
            if found.sequences[i] not in seen:
                seen.add(found.sequences[i])
                chosen.append(i)
                if len(seen) == count:
                    break
    return chosen


def genetic_search(task: TokenEnv, pool: Candidates, sizes: dict[str, int], seed: int, progress: bool) -> Candidates:
    """One mol_ga run per preference of the grid over the training oracle, scalarized linearly (``w . r``).

    Each run starts from the pool's ``ga_population`` best molecules under its preference and runs
    ``ga_generations`` generations of ``ga_offspring`` Graph-GA children (crossover with 1% mutation, 10% pure
    mutation), keeping the best ``ga_population`` (ties broken by SMILES, so runs are reproducible); an
    invalid molecule scores -1. Returns every candidate scored, valid or not.
    """
    try:
        from mol_ga import run_ga_maximization
        from mol_ga.graph_ga.gen_candidates import graph_ga_blended_generation
        from mol_ga.sample_population import uniform_quantile_sampling
    except ImportError as exc:
        raise MissingDependencyError(
            f"the molecule search of `morbench quality` needs mol_ga ({exc}); install it with `make assets-deps` "
            "or `pip install mol_ga`, or run `morbench quality --no-search`"
        ) from exc
    from tqdm.auto import tqdm

    valid_pool = pool.only_valid()
    scored: dict[str, tuple[np.ndarray, bool]] = {}

    def score(smiles: list[str]) -> list[tuple[np.ndarray, bool]]:
        new = [s for s in dict.fromkeys(smiles) if s not in scored]
        if new:
            result = task.score(new)
            for s, r, v in zip(new, result.rewards, result.valid, strict=True):
                scored[s] = (np.asarray(r, np.float64), bool(v))
        return [scored[s] for s in smiles]

    def select(n: int, population: list[tuple[float, str]]) -> list[tuple[float, str]]:
        return sorted(population, key=lambda item: (-item[0], item[1]))[:n]

    for p, weights in enumerate(tqdm(task.preference_grid, desc="genetic search", disable=not progress)):
        start = [valid_pool.sequences[i] for i in _ranked(valid_pool, weights, sizes["ga_population"])]

        def scalarized(smiles: list[str], weights: np.ndarray = weights) -> list[float]:
            return [float(r @ weights) if v else INVALID_SCORE for r, v in score(smiles)]

        run_ga_maximization(
            scoring_func=scalarized,
            starting_population_smiles=set(start),
            sampling_func=uniform_quantile_sampling,
            offspring_gen_func=graph_ga_blended_generation,
            selection_func=select,
            max_generations=sizes["ga_generations"],
            population_size=sizes["ga_population"],
            offspring_size=sizes["ga_offspring"],
            rng=random.Random(seed + p),
        )
    smiles = sorted(scored)
    rewards = np.array([scored[s][0] for s in smiles]).reshape(len(smiles), task.reward_dim)
    return Candidates(smiles, rewards, np.array([scored[s][1] for s in smiles], dtype=bool), [None] * len(smiles))


def _mutants(sequence: str, count: int, rng: np.random.Generator) -> list[str]:
    out = []
    for _ in range(count):
        letters = list(sequence.upper())
        for position in rng.choice(len(letters), size=int(rng.integers(1, 4)), replace=False):
            letters[position] = DNA_BASES[(DNA_BASES.index(letters[position]) + int(rng.integers(1, 4))) % 4]
        out.append("".join(letters))
    return out


def hill_climb(task: TokenEnv, pool: Candidates, sizes: dict[str, int], seed: int, progress: bool) -> Candidates:
    """Per preference, a mutation hill-climb over the training oracle, scalarized linearly (``w . r``).

    Starts from the pool's ``climb_width`` best sequences; each round every kept sequence proposes
    ``climb_children`` mutants with 1-3 bases substituted, and the best ``climb_width`` of parents and children
    are kept. Returns every mutant scored.
    """
    from tqdm.auto import tqdm

    found = Candidates.empty(task.reward_dim)
    valid_pool = pool.only_valid()
    for p, weights in enumerate(tqdm(task.preference_grid, desc="hill-climb", disable=not progress)):
        rng = np.random.default_rng(seed + p)
        keep = [
            (float(valid_pool.rewards[i] @ weights), valid_pool.sequences[i])
            for i in _ranked(valid_pool, weights, sizes["climb_width"])
        ]
        for _ in range(sizes["climb_rounds"]):
            children = [m for _, s in keep for m in _mutants(s, sizes["climb_children"], rng)]
            result = task.score(children)
            found = found.extend(_scored(result, [None] * len(children)))
            scores = np.where(result.valid, np.asarray(result.rewards, np.float64) @ weights, INVALID_SCORE)
            merged = dict((s, v) for v, s in keep)
            for s, v in zip(children, scores, strict=True):
                merged.setdefault(s, float(v))
            keep = heapq.nsmallest(sizes["climb_width"], ((-v, s) for s, v in merged.items()))
            keep = [(-v, s) for v, s in keep]
    return found


# -- judge agreement -----------------------------------------------------------------------------------------------
def judge_figures(task: TokenEnv, candidates: Candidates, objective_names: Sequence[str]) -> dict[str, Any] | None:
    """Judge vs oracle on candidates valid for both: per-objective agreement, means and the judge gap.

    The judge gap is ``mean_k mean_n (oracle - judge)`` (the scorer's sign: positive where the judge does not
    confirm the oracle's reward).
    """
    from morbench.buildkit import agreement

    if task.judge is None or not candidates.sequences:
        return None
    contexts = _context_objects(task, candidates.contexts)
    judge = task.judge_score(candidates.sequences, contexts)
    both = candidates.valid & judge.valid
    oracle_rewards = candidates.rewards[both]
    judge_rewards = np.asarray(judge.rewards, np.float64)[both]
    if len(oracle_rewards) < 2:
        return {"samples": int(both.sum()), "agreement": None, "judge_gap": None}
    rows = agreement(oracle_rewards, judge_rewards, objective_names)
    return {
        "samples": int(both.sum()),
        "agreement": {name: {k: _finite(v) for k, v in row.items()} for name, row in rows.items()},
        "oracle_mean": oracle_rewards.mean(axis=0).tolist(),
        "judge_mean": judge_rewards.mean(axis=0).tolist(),
        "judge_gap": float(np.mean(oracle_rewards) - np.mean(judge_rewards)),
    }


def _context_objects(task: TokenEnv, keys: Sequence[str | None]) -> list[Context | None]:
    if task.contexts is None:
        return [None] * len(keys)
    by_key = {c.key: c for c in task.contexts}
    return [by_key[k] if k is not None else None for k in keys]


# -- one report --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class QualityRun:
    """A measured report and the samples it was computed from (``prior``: the measured prior samples;
    ``found``: every valid candidate the search scored, prior samples included)."""

    report: dict[str, Any]
    prior: Candidates
    found: Candidates


def measure(env_id: str, config: QualityConfig | None = None, command: str | None = None) -> QualityRun:
    """Measure the quality report of ``env_id`` (not written: see :func:`write_quality_report`)."""
    import torch

    from morbench.buildkit import Timings, environment_record
    from morbench.evaluation import make_evaluation_task
    from morbench.models import load_prior
    from morbench.registry import spec_to_dict

    config = config or QualityConfig()
    kind = search_kind(env_id)
    sizes = config.sizes(kind)
    task = make_evaluation_task(env_id)
    names = list(task.objective_names)
    weights, reference = task.preference_grid, task.reference_point
    timings, calls = Timings(), {}

    def counted(stage: str, work: Callable[[], Any]) -> Any:
        before = task.oracle.calls
        with timings(stage):
            value = work()
        calls[stage] = task.oracle.calls - before
        return value

    prior_model = load_prior(task)
    prior = counted(
        "prior", lambda: sample_prior(task, prior_model, sizes["prior_samples"], config.seed, config, "prior samples")
    )
    prior_figures = figures_from_samples(prior.rewards, prior.valid, names, weights, reference)

    exact = exact_best(task) if kind == "exact" else None
    found = prior.only_valid()
    searches = [f"best-of-{sizes['prior_samples'] + sizes.get('best_of_n', 0):,} prior samples"]
    if exact is None:
        if sizes.get("best_of_n"):
            extra = counted(
                "best_of_n",
                lambda: sample_prior(
                    task, prior_model, sizes["best_of_n"], config.seed + 1, config, "best-of-N samples"
                ),
            )
            found = found.extend(extra.only_valid())
        if config.search and kind == "molecule":
            ga = counted("genetic_search", lambda: genetic_search(task, found, sizes, config.seed, config.progress))
            found = found.extend(ga.only_valid())
            searches.append(
                f"mol_ga per preference (linear w.r; population {sizes['ga_population']}, "
                f"{sizes['ga_generations']} generations x {sizes['ga_offspring']} children, seed {config.seed}+p)"
            )
        if config.search and kind == "dna":
            climbed = counted("hill_climb", lambda: hill_climb(task, found, sizes, config.seed, config.progress))
            found = found.extend(climbed.only_valid())
            searches.append(
                f"mutation hill-climb per preference (width {sizes['climb_width']}, {sizes['climb_rounds']} rounds x "
                f"{sizes['climb_children']} mutants of 1-3 bases, seed {config.seed}+p)"
            )
        best: dict[str, Any] = {"fronts": _fronts_of(found, weights)}
        source = "search: " + " + ".join(searches)
    else:
        best = exact
        source = "exact: the task's Pareto front (env.pareto_front())"
    fronts = [np.asarray(f["points"], np.float64) for f in best["fronts"]]
    best.update(best_figures(fronts, weights, reference))
    best["source"] = source
    best["exact"] = exact is not None
    best["candidates_scored"] = len(found.sequences)
    headroom = {
        "hypervolume_ratio": _ratio(prior_figures["hypervolume"], best["hypervolume"]),
        "served_utility_ratio": _ratio(prior_figures["served_utility"], best["served_utility"]),
    }

    judge: dict[str, Any] | None = None
    if task.judge is not None:
        judge_calls_before = task.judge.calls
        with timings("judge"):
            judge_prior = judge_figures(task, prior.only_valid(), names)
            count = sizes.get("optimized_per_preference", 1)
            rows = sorted({i for w in weights for i in _ranked(found, w, count)})
            optimized = Candidates(
                [found.sequences[i] for i in rows],
                found.rewards[rows],
                found.valid[rows],
                [found.contexts[i] for i in rows],
            )
            judge_optimized = judge_figures(task, optimized, names)
        judge = {
            "prior": judge_prior,
            "optimized": judge_optimized,
            "optimized_selection": f"the {count} best distinct candidates per preference under w.r (pooled)",
        }
        prior_gap, optimized_gap = (judge_prior or {}).get("judge_gap"), (judge_optimized or {}).get("judge_gap")
        judge["judge_gap_vs_prior"] = (
            optimized_gap - prior_gap if prior_gap is not None and optimized_gap is not None else None
        )

    report = {
        "env": spec_to_dict(task),
        "objective_names": names,
        "reference_point": reference.tolist(),
        "preference_grid": weights.tolist(),
        "protocol": task.protocol.to_dict(),
        "search_kind": kind,
        "sizes": sizes,
        "seed": config.seed,
        "prior": prior_figures,
        "best": best,
        "headroom": headroom,
        "judge": judge,
        "compute": {
            "oracle_calls": calls,
            "oracle_calls_total": int(sum(calls.values())),
            "judge_calls": task.judge.calls - judge_calls_before if task.judge is not None else 0,
            "wall_seconds": timings.seconds,
            "wall_seconds_total": float(sum(timings.seconds.values())),
        },
        "environment": environment_record(
            PACKAGES, command=command or f"morbench quality {env_id}", torch_threads=torch.get_num_threads()
        ),
    }
    task.close()
    return QualityRun(report, prior, found)


def _ratio(prior: float, best: float | None) -> float | None:
    return float(prior / best) if best else None


def write_quality_report(env_id: str, report: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``report`` to ``out`` (default: :func:`report_path`), creating the folder."""
    from morbench.buildkit import report_json

    path = Path(out) if out is not None else report_path(env_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one line per list of numbers (a front point, a mean vector): a front of thousands of points stays readable
    text = re.sub(
        r"\[\s+([-+0-9.eE,\s]+?|null)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", report_json(report)
    )
    path.write_text(text + "\n", encoding="utf-8")
    return path


def read_quality_report(env_id: str) -> dict[str, Any] | None:
    """The committed report of ``env_id``, or None where there is none."""
    from morbench.buildkit import read_report

    return read_report(report_path(env_id)) or None


# -- the card section ------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if isinstance(value, float) and value < 0 else f"{value:.{digits}f}"


def quality_figures(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The card's figures of one report, as ``(label, formatted value)`` rows (the card renders exactly these)."""
    prior, best, headroom = report["prior"], report["best"], report["headroom"]
    rows = [
        ("prior samples (valid)", f"{prior['samples']:,} ({_fmt(prior['validity'])})"),
    ]
    for pair in prior["correlations"]["pearson"]:
        pearson, spearman = prior["correlations"]["pearson"][pair], prior["correlations"]["spearman"][pair]
        rows.append(
            (
                f"correlation {pair.replace('~', ' vs ')} (Pearson / Spearman)",
                f"{_fmt(pearson, 2)} / {_fmt(spearman, 2)}",
            )
        )
    rows += [
        ("non-dominated fraction of valid prior samples", _fmt(prior["non_dominated_fraction"], 4)),
        ("valid prior samples with every objective > 0.5", _fmt(prior["all_above_half_fraction"], 4)),
        (
            "best worst-objective: prior sample / best found",
            f"{_fmt(prior['best_worst_objective'])} / {_fmt(best.get('best_worst_objective'))}",
        ),
        (
            "hypervolume: prior / best (ratio)",
            f"{_fmt(prior['hypervolume'], 4)} / {_fmt(best['hypervolume'], 4)} ({_fmt(headroom['hypervolume_ratio'])})",
        ),
        (
            "served utility: prior / best (ratio)",
            f"{_fmt(prior['served_utility'])} / {_fmt(best['served_utility'])} "
            f"({_fmt(headroom['served_utility_ratio'])})",
        ),
    ]
    judge = report.get("judge")
    if judge:
        for label, part in (("prior", judge["prior"]), ("optimized", judge["optimized"])):
            if part and part.get("agreement"):
                agree = " / ".join(_fmt(part["agreement"][n]["pearson"], 2) for n in report["objective_names"])
                rows.append((f"judge vs oracle Pearson per objective, {label} samples", agree))
                rows.append((f"judge gap (oracle - judge), {label} samples", _fmt(part["judge_gap"])))
        rows.append(("judge gap of optimized samples relative to the prior's", _fmt(judge["judge_gap_vs_prior"])))
    return rows


def _per_context_note(report: dict[str, Any]) -> str:
    """For a prompt-conditioned task: how its best figures are formed (per context, then averaged)."""
    contexts = [front for front in report["best"]["fronts"] if front["context"] is not None]
    if not contexts:
        return ""
    return (
        f"; best figures are per context (document), averaged over the {len(contexts)} contexts with a valid "
        "sample, and the prior's best worst-objective is over all its samples"
    )


def render_quality_section(env_ids: Sequence[str], reports: dict[str, dict[str, Any] | None]) -> str:
    """The card's "Task quality" section: one table per id from its report (a line saying where one is missing)."""
    lines = [
        "## Task quality",
        "Generated from `quality/<Name>-v<N>.json`, written by `morbench quality <id>` (definitions:",
        "[docs/metrics.md](../../docs/metrics.md#task-quality-report)). Prior figures from the task's own prior at its",
        "protocol's decoding; the best is exact where the task knows its front, otherwise the best the named search",
        "found over the training oracle (an estimate from below). Judge gap: mean oracle minus mean judge reward.",
    ]
    for env_id in env_ids:
        report = reports.get(env_id)
        lines.append("")
        if report is None:
            lines.append(f"`{env_id}`: no report committed yet (`morbench quality {env_id}` writes it).")
            continue
        compute, machine = report["compute"], report["environment"]
        threads = f"{machine['torch_threads']} torch thread" + ("s" if machine["torch_threads"] != 1 else "")
        lines += [
            f"`{env_id}` ({machine['date'][:10]}; {compute['oracle_calls_total']:,} oracle calls, "
            f"{compute['wall_seconds_total']:,.0f} s on {machine['cpu_count']} cores at {threads}); "
            f"best: {report['best']['source']}{_per_context_note(report)}.",
            "",
            "| figure | value |",
            "|---|---|",
        ]
        lines += [f"| {label} | {value} |" for label, value in quality_figures(report)]
    return "\n".join(lines)


# -- the command line ----------------------------------------------------------------------------------------------
def add_quality_parser(sub: Any) -> None:
    """Add the ``quality`` subcommand to the ``morbench`` parser."""
    from morbench.cli import positive_int, seed_int

    quality = sub.add_parser(
        "quality",
        help="measure how good a task is as a multi-objective benchmark (writes envs/<task>/quality/<id>.json)",
        description=__doc__.split("\n\n")[0],
    )
    quality.add_argument("env", nargs="*", help="env ids, e.g. morbench/QM9-v0")
    quality.add_argument("--all", action="store_true", help="every registered id")
    quality.add_argument("--out", default=None, help="write here instead (a folder; one <Name>-v<N>.json per id)")
    quality.add_argument("--no-search", action="store_true", help="best-of-N over the prior samples only")
    quality.add_argument("--seed", type=seed_int, default=0, help="prior sampling seed (searches: seed + preference)")
    for name in SIZE_FIELDS:
        flag = "--" + name.replace("_", "-")
        minimum = "0 or more" if name == "best_of_n" else "override"
        quality.add_argument(
            flag,
            type=int if name == "best_of_n" else positive_int,
            default=None,
            help=f"{minimum}: the task kind's default in morbench.quality.DEFAULT_SIZES",
        )
    quality.add_argument("--batch-size", type=positive_int, default=256, help="prior sampling batch (default 256)")
    quality.add_argument("--quiet", action="store_true", help="no progress bars")
    quality.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def quality_command(args: Any) -> int:
    """``morbench quality``: measure each id's report, write it and print its card figures."""
    from morbench.registry import list_envs, spec

    if args.all == bool(args.env):
        raise ConfigError("name env ids (e.g. `morbench quality morbench/QM9-v0`) or pass --all, not both")
    env_ids = list_envs() if args.all else list(args.env)
    for env_id in env_ids:
        spec(env_id)  # an unknown id fails before any work, with suggestions
    config = QualityConfig(
        **{name: getattr(args, name) for name in SIZE_FIELDS},
        search=not args.no_search,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    flags = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in SIZE_FIELDS if getattr(args, name)]
    flags += ["--no-search"] * args.no_search + [f"--seed {args.seed}"] * (args.seed != 0)
    flags += [f"--batch-size {args.batch_size}"] * (args.batch_size != 256)
    for env_id in env_ids:
        run = measure(env_id, config, command=" ".join(["morbench quality", env_id, *flags]))
        out = None
        if args.out is not None:
            env_spec = spec(env_id)
            out = Path(args.out) / f"{env_spec.name}-v{env_spec.version}.json"
        path = write_quality_report(env_id, run.report, out)
        print(f"{env_id}: {path}")
        for label, value in quality_figures(run.report):
            print(f"  {label}: {value}")
    return 0
