"""``morbench leaderboard build``: validate every submission, recompute every metric, render and swap in the board.

The whole board is rendered in memory, written to a temporary folder beside the target, and moved into place
only when everything succeeded: a failing submission leaves the committed board untouched. The output is a
pure function of the submission files (no timestamps), so a build on a fresh clone reproduces the committed
``leaderboard/README.md`` and ``leaderboard/site/`` byte for byte.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from morbench.errors import SubmissionError
from morbench.leaderboard.render import (
    PRIMARY_METRIC,
    EnvBoard,
    LeaderboardEntry,
    render_html,
    render_markdown,
    render_plot_svg,
    site_assets,
)
from morbench.leaderboard.schema import submission_slug
from morbench.leaderboard.validate import ValidatedSubmission, find_submissions, validate_files

__all__ = ["BuildResult", "build_leaderboard", "default_root", "render_files", "score_submission"]


def default_root() -> Path:
    """The ``leaderboard/`` folder found from the current directory (:func:`morbench.leaderboard.submit.find_board`)."""
    from morbench.leaderboard.submit import find_board

    return find_board()


@dataclasses.dataclass
class BuildResult:
    files: dict[str, int]  # relative path -> bytes
    submissions: int
    validation_seconds: dict[str, float]
    seconds: float


def score_submission(validated: ValidatedSubmission) -> LeaderboardEntry:
    """Every metric of every seed (``score_evaluation``) and their aggregate over seeds (``aggregate``)."""
    from morbench.scoring import aggregate, score_evaluation

    seeds = {entry["seed"]: entry for entry in validated.submission["seeds"]}
    results = []
    for evaluation in validated.evaluations:
        result = score_evaluation(evaluation, validated.task, source=validated.source)
        compute = seeds[evaluation["seed"]]["compute"]
        result["compute"] = {
            k: v for k, v in compute.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        results.append(result)
    summary = aggregate(results)[f"{validated.env_id}::{validated.name}"]
    return LeaderboardEntry(
        submission=validated.submission,
        results=results,
        summary=summary,
        samples_per_preference=validated.samples_per_preference,
        slug=submission_slug(validated.name),
    )


def _ranking_key(entry: LeaderboardEntry) -> tuple[float, str, str]:
    value = entry.mean(PRIMARY_METRIC)
    return (-value if value is not None else float("inf"), entry.name.casefold(), entry.name)


def build_boards(validated: list[ValidatedSubmission]) -> list[EnvBoard]:
    """Group by env, score, rank by the primary metric; unranked ones (too few seeds) separately."""
    by_env: dict[str, list[ValidatedSubmission]] = defaultdict(list)
    for item in validated:
        by_env[item.env_id].append(item)
    boards = []
    for env_id in sorted(by_env):
        items = by_env[env_id]
        ranked = sorted((score_submission(v) for v in items if v.ranked), key=_ranking_key)
        unranked = sorted((score_submission(v) for v in items if not v.ranked), key=_ranking_key)
        for rank, entry in enumerate(ranked, start=1):
            entry.rank = rank
        boards.append(EnvBoard(env_id, items[0].task, ranked, unranked))
    return boards


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
    submissions: str | Path | None = None, out: str | Path | None = None, progress: bool = False
) -> BuildResult:
    """Validate and score every submission under ``submissions``; render the board into ``out``.

    Both default to the board found from the current directory; a missing submissions folder is an error.
    """
    started = time.perf_counter()
    if submissions is None or out is None:
        root = default_root()
        submissions = submissions if submissions is not None else root / "submissions"
        out = out if out is not None else root
    submissions, out = Path(submissions), Path(out)
    paths = find_submissions(submissions)
    report = validate_files(paths, root=submissions, progress=progress)
    if not report.ok:
        raise SubmissionError(
            f"{len(report.errors)} submission(s) failed validation; the board was not changed:\n\n"
            + "\n\n".join(report.errors)
        )
    files = render_files(build_boards(report.valid))
    install_files(files, out)
    return BuildResult(
        files={k: len(v) for k, v in sorted(files.items())},
        submissions=len(report.valid),
        validation_seconds={v.source: v.seconds for v in report.valid},
        seconds=time.perf_counter() - started,
    )
