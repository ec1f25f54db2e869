"""``morbench leaderboard build``: validate every submission, recompute every metric, render and swap in the board.

Ranked: only entries whose *current* bytes have a passing record in the verification ledger
(``verified.json``, written only by ``morbench leaderboard verify``), with at least ``MIN_RANKED_SEEDS`` seeds at
the protocol's sample count. They are ordered by mean hypervolume over seeds, with 95% t-intervals over seeds,
a paired comparison against the leader and rank groups (entries whose interval overlaps the group head's).
Everything else is listed in the unranked table with the reason.

The whole board is rendered in memory, written to a temporary folder beside the target, and moved into place
only when everything succeeded: a failing submission leaves the committed board untouched. The output is a
pure function of the submission files and the ledger (no timestamps), so a build on a fresh clone reproduces
the committed ``leaderboard/README.md`` and ``leaderboard/site/`` byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morbench.errors import SubmissionError
from morbench.leaderboard.cache import CACHE_DIR, CachedEntry, EntryCache, code_fingerprint
from morbench.leaderboard.render import (
    PRIMARY_METRIC,
    EnvBoard,
    LeaderboardEntry,
    budget_label,
    render_html,
    render_markdown,
    render_plot_svg,
    site_assets,
)
from morbench.leaderboard.schema import submission_slug
from morbench.leaderboard.validate import (
    NamedSubmission,
    TaskCache,
    ValidatedSubmission,
    find_submissions,
    reject_duplicates,
    validate_files,
)
from morbench.leaderboard.verify import LEDGER_FILE, read_ledger, trusted_digests

__all__ = [
    "BuildResult",
    "build_boards",
    "build_leaderboard",
    "default_root",
    "rank_groups",
    "render_files",
    "score_submission",
    "t_interval",
]

CONFIDENCE = 0.95
INTERVAL_METRICS = ("hypervolume", "served_utility")


def default_root() -> Path:
    """The ``leaderboard/`` folder found from the current directory (:func:`morbench.leaderboard.submit.find_board`)."""
    from morbench.leaderboard.submit import find_board

    return find_board()


@dataclasses.dataclass
class BuildResult:
    """What ``build_leaderboard`` wrote (relative path -> bytes), from how many submissions, and its timings."""

    files: dict[str, int]  # relative path -> bytes
    submissions: int
    validation_seconds: dict[str, float]
    seconds: float
    rescored: int = 0  # files re-scored (the others were scored from claims their verification matched)
    cached: int = 0  # files whose scored entry an earlier build cached (neither validated nor scored again)


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def t_interval(values: Sequence[float | None], confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """:func:`morbench.metrics.t_interval` over seeds, with None (not NaN) when there are fewer than 2 values."""
    from morbench import metrics

    low, high = metrics.t_interval([v for v in values if v is not None], confidence=confidence)
    return _finite_or_none(low), _finite_or_none(high)


def difference_interval(
    values: dict[int, float], leader: dict[int, float], confidence: float = CONFIDENCE
) -> dict[str, Any] | None:
    """Entry minus leader, by seed, with its confidence interval.

    :func:`morbench.metrics.paired_t_interval` when both have the same seeds, else Welch's interval of the
    difference of means (marked unpaired).
    """
    from morbench import metrics

    if set(values) == set(leader) and len(values) >= 2:
        seeds = sorted(values)
        diff, low, high = metrics.paired_t_interval(
            [values[s] for s in seeds], [leader[s] for s in seeds], confidence=confidence
        )
        return {"diff": float(diff), "low": _finite_or_none(low), "high": _finite_or_none(high), "paired": True}
    a, b = np.asarray(list(values.values())), np.asarray(list(leader.values()))
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    se = float(np.sqrt(va + vb))
    if se == 0:
        return {"diff": diff, "low": diff, "high": diff, "paired": False}
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return {"diff": diff, "low": diff - half, "high": diff + half, "paired": False}


def _served_utility(result: dict[str, Any]) -> float:
    """Mean over the grid of ``w . mean reward at w`` (the scorer's ``served_utility`` when it computes it)."""
    if result.get("served_utility") is not None:
        return float(result["served_utility"])
    return float(np.mean([row["utility"] for row in result["per_preference"]]))


def score_submission(
    validated: ValidatedSubmission, verification: dict[str, Any] | None = None, reason: str | None = None
) -> LeaderboardEntry:
    """Every metric of every seed (``score_evaluation``) and their aggregate over seeds (``aggregate``).

    With a passing ``verification`` record, each seed's KL to the prior is the verifier's (from its own
    log-probabilities); otherwise it is computed from the submitted log-probabilities (self-reported). On tasks
    with a held-out judge, ``judge_gap_vs_prior`` is the seed's judge gap minus that of the prior sampled by the
    builder at the same seed and sample count (never a submitted "prior" run).
    """
    from morbench.scoring import add_judge_gap_vs_prior, aggregate, score_evaluation

    seeds = {entry["seed"]: entry for entry in validated.submission["seeds"]}
    verified_seeds = (verification or {}).get("seeds") or {}
    results = []
    for evaluation in validated.evaluations:
        result = score_evaluation(evaluation, validated.task, source=validated.source)
        result["served_utility"] = _served_utility(result)
        compute = seeds[evaluation["seed"]]["compute"]
        result["compute"] = {
            k: v for k, v in compute.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if verification is not None:
            kl = (verified_seeds.get(str(evaluation["seed"])) or {}).get("kl_to_prior")
            result["kl_to_prior"] = float(kl) if kl is not None else float("nan")
        results.append(result)
    add_judge_gap_vs_prior(results, sample_prior=True, use_prior_runs=False)  # the prior sampled by us, per seed
    summary = aggregate(results)[f"{validated.env_id}::{validated.name}"]
    intervals = {}
    for key in INTERVAL_METRICS:
        values = [r.get(key) for r in results]
        low, high = t_interval(values)
        finite = [v for v in values if v is not None and np.isfinite(v)]
        intervals[key] = {"mean": float(np.mean(finite)) if finite else None, "low": low, "high": high}
    return LeaderboardEntry(
        submission=validated.submission,
        results=results,
        summary=summary,
        samples_per_preference=validated.samples_per_preference,
        slug=submission_slug(validated.name),
        kind=validated.kind,
        verification=verification,
        reason=reason,
        intervals=intervals,
        protocol_samples=int(validated.task.protocol.samples_per_preference),
    )


def _ranking_key(entry: LeaderboardEntry) -> tuple[float, str, str]:
    value = entry.mean(PRIMARY_METRIC)
    return (-value if value is not None else float("inf"), entry.name.casefold(), entry.name)


def rank_groups(entries: list[LeaderboardEntry]) -> None:
    """Rank groups in ranking order; group 1 is the leader's.

    The best entry not yet grouped heads a new group, which every ungrouped entry whose 95% t-interval of
    hypervolume overlaps the head's joins.
    """
    group = 0
    for head in entries:
        if head.group is not None:
            continue
        group += 1
        head.group = group
        low, high = head.interval(PRIMARY_METRIC)
        for other in entries:
            if other.group is not None:
                continue
            o_low, o_high = other.interval(PRIMARY_METRIC)
            if (
                low is not None
                and high is not None
                and o_low is not None
                and o_high is not None
                and o_high >= low
                and o_low <= high
            ):
                other.group = group


def _per_seed(entry: LeaderboardEntry, key: str) -> dict[int, float]:
    return {int(r["seed"]): float(r[key]) for r in entry.results if r.get(key) is not None}


def rank_blockers(validated: ValidatedSubmission, ledger: dict[str, dict[str, Any]]) -> list[str]:
    """Why an entry is not ranked (empty: it is): its shape, then the ledger record of its current bytes."""
    from morbench.leaderboard.verify import passing_record

    reasons = validated.shape_blockers()
    if validated.kind in ("baseline", "policy") and passing_record(ledger, validated.sha256) is None:
        record = ledger.get(validated.sha256 or "")
        if isinstance(record, dict) and record.get("verdict") == "failed":
            reasons.insert(0, "verification failed")
        else:
            reasons.insert(0, "not verified")
    return reasons


def build_boards(
    validated: list[ValidatedSubmission],
    ledger: dict[str, dict[str, Any]] | None = None,
    cached: Sequence[CachedEntry] = (),
    store: Callable[[ValidatedSubmission, LeaderboardEntry], None] | None = None,
) -> list[EnvBoard]:
    """Group by env; rank verified entries with enough seeds at the protocol's count; the rest are unranked.

    ``cached``: entries scored by an earlier build (:mod:`morbench.leaderboard.cache`), used as they are;
    ``store(item, entry)`` is called with every entry scored now.
    """
    from morbench.leaderboard.verify import passing_record

    ledger = ledger or {}
    by_env: dict[str, list[LeaderboardEntry]] = defaultdict(list)
    tasks: dict[str, Any] = {}
    for item in validated:
        reasons = rank_blockers(item, ledger)
        entry = score_submission(item, passing_record(ledger, item.sha256), "; ".join(reasons) or None)
        if store is not None:
            store(item, entry)
        by_env[item.env_id].append(entry)
        tasks.setdefault(item.env_id, item.task)
    for hit in cached:
        by_env[hit.env_id].append(hit.entry)
    boards = []
    for env_id in sorted(by_env):
        by_budget: dict[str, list[LeaderboardEntry]] = defaultdict(list)
        for entry in by_env[env_id]:
            if entry.reason is None:
                by_budget[json.dumps(entry.budget, sort_keys=True)].append(entry)
        tracks = [
            (budget_label(group[0].budget), _ranked(group)) for group in sorted(by_budget.values(), key=_track_order)
        ]
        ranked = [entry for _, entries in tracks for entry in entries]
        unranked = sorted((entry for entry in by_env[env_id] if entry.reason is not None), key=_ranking_key)
        task = tasks[env_id] if env_id in tasks else TaskCache().get(env_id, f"the board of {env_id}")
        boards.append(EnvBoard(env_id, task, ranked, unranked, tracks))
    return boards


def _track_order(entries: list[LeaderboardEntry]) -> tuple[bool, int, int, str]:
    """Budget tracks from the smallest budget up; entries of unknown budget last."""
    budget = entries[0].budget or {}
    tokens, calls = budget.get("sampled_tokens"), budget.get("oracle_calls")
    return (not budget, tokens if tokens is not None else 2**62, calls if calls is not None else 2**62, str(budget))


def _ranked(entries: list[LeaderboardEntry]) -> list[LeaderboardEntry]:
    """The entries of one budget in ranking order, with their ranks, rank groups and difference to the leader."""
    entries = sorted(entries, key=_ranking_key)
    for rank, entry in enumerate(entries, start=1):
        entry.rank = rank
    rank_groups(entries)
    if entries:
        leader = _per_seed(entries[0], PRIMARY_METRIC)
        for entry in entries[1:]:
            entry.vs_leader = difference_interval(_per_seed(entry, PRIMARY_METRIC), leader)
    return entries


def render_files(boards: list[EnvBoard]) -> dict[str, bytes]:
    """Every output file, relative to the leaderboard root."""
    files = {"README.md": render_markdown(boards).encode("utf-8"), "site/index.html": render_html(boards).encode()}
    for name, text in site_assets().items():
        files[f"site/{name}"] = text.encode("utf-8")
    for board in boards:
        files[f"site/plots/{board.stem}.svg"] = render_plot_svg(board).encode("utf-8")
    return files


def _write_tree(files: dict[str, bytes], folder: Path) -> None:
    for relative, data in sorted(files.items()):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def install_files(files: dict[str, bytes], out: Path) -> None:
    """Write into a temporary folder beside ``out``, then swap ``out/site`` and ``out/README.md`` in."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    old_site = out / f".site-old-{os.getpid()}"
    try:
        _write_tree(files, staging)
        site = out / "site"
        if site.exists():
            site.rename(old_site)
        try:
            (staging / "site").rename(site)
        except OSError:
            if old_site.exists():
                old_site.rename(site)
            raise
        os.replace(staging / "README.md", out / "README.md")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old_site, ignore_errors=True)


def build_leaderboard(
    submissions: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    ledger: str | Path | None = None,
    rescore: bool = False,
) -> BuildResult:
    """Validate and score every submission under ``submissions``; render the board into ``out``.

    Both default to the board found from the current directory; a missing submissions folder is an error. The
    verification ledger is ``ledger`` (default: ``verified.json`` beside the submissions folder). Files whose
    exact bytes the ledger says were verified with claims matching the re-scoring are scored from their claims
    (:func:`morbench.leaderboard.verify.trusted_digests`); ``rescore`` re-scores every file regardless.
    Files unchanged since an earlier build (same bytes, place, ledger record and code) reuse its scored entries
    (``.cache`` beside the submissions folder, :mod:`morbench.leaderboard.cache`) unless ``rescore``.
    """
    started = time.perf_counter()
    if submissions is None or out is None:
        root = default_root()
        submissions = submissions if submissions is not None else root / "submissions"
        out = out if out is not None else root
    submissions, out = Path(submissions), Path(out)
    paths = find_submissions(submissions)
    ledger_entries = read_ledger(Path(ledger) if ledger is not None else submissions.parent / LEDGER_FILE)
    trusted = set() if rescore else trusted_digests(ledger_entries)
    cache = EntryCache(submissions.parent / CACHE_DIR, code_fingerprint())
    keys: dict[str, str] = {}
    hits: list[CachedEntry] = []
    todo: list[Path] = []
    for path in paths:
        key = _cache_key(cache, path, submissions, ledger_entries)
        hit = None if rescore or key is None else cache.get(key, str(path))
        if key is not None:
            keys[str(path)] = key
        if hit is None:
            todo.append(path)
        else:
            hits.append(hit)
    report = validate_files(todo, root=submissions, progress=progress, trusted=trusted)
    named: list[NamedSubmission] = [*report.valid, *hits]
    _, clashes = reject_duplicates(named)  # names must be unique across cached and new files
    errors = report.errors + [e for e in clashes if e not in report.errors]
    if errors:
        raise SubmissionError(
            f"{len(errors)} submission(s) failed validation; the board was not changed:\n\n" + "\n\n".join(errors)
        )

    def store(item: ValidatedSubmission, entry: LeaderboardEntry) -> None:
        if item.source in keys:
            cache.put(keys[item.source], item.env_id, entry)

    files = render_files(build_boards(report.valid, ledger_entries, cached=hits, store=store))
    install_files(files, out)
    return BuildResult(
        files={k: len(v) for k, v in sorted(files.items())},
        submissions=len(report.valid) + len(hits),
        rescored=sum(v.claims_error is not None for v in report.valid),
        validation_seconds={v.source: v.seconds for v in report.valid},
        seconds=time.perf_counter() - started,
        cached=len(hits),
    )


def _cache_key(cache: EntryCache, path: Path, submissions: Path, ledger: dict[str, dict[str, Any]]) -> str | None:
    """The cache key of a submission file, or None when it cannot be read (validation then says why)."""
    from morbench.leaderboard.schema import content_sha256, read_submission_bytes

    try:
        sha = content_sha256(read_submission_bytes(path))
    except SubmissionError:
        return None
    location = path.resolve().relative_to(submissions.resolve()).as_posix() if submissions.exists() else str(path)
    return cache.key(sha, location, ledger.get(sha))
