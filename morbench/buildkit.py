"""What the asset builders (``morbench build-assets <task>``) share.

The record of the machine and package versions a build ran on, build reports (writing, reading and comparing
two of them within tolerances), correlation and invalid-reason summaries, stage timings, and unconditional
prior samples for the reports.

Each builder (``envs/<task>/build.py``) keeps only what is specific to its data and models.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morbench.assets import cpu_model, write_manifest

REPORT_NAME = "build_report.json"

FigurePath = tuple[str, ...]

__all__ = [
    "REPORT_NAME",
    "BuildRun",
    "PriorSamples",
    "Timings",
    "agreement",
    "average_ranks",
    "builder_parser",
    "command_line",
    "compare_reports",
    "comparison_by_figure",
    "comparison_failures",
    "comparison_rows",
    "correlation_matrices",
    "distribution_summary",
    "environment_record",
    "first_rows",
    "hardware_record",
    "load_average",
    "package_versions",
    "pairwise_correlations",
    "pearson",
    "read_report",
    "reason_classifier",
    "reason_counts",
    "report_json",
    "sample_prior",
    "spearman",
    "write_report",
]


# -- the machine and the packages a build ran on ---------------------------------------------------------------
def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (None where it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, or None where the OS does not report them.

    A shared machine's timings are read against them.
    """
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def hardware_record() -> dict[str, Any]:
    """Processor, core count and platform of this machine, and its load average now."""
    return {
        "processor": platform.processor() or None,
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": load_average(),
    }


def command_line(program: str, argv: Sequence[str] | None) -> str:
    """The command that reruns this build: ``program`` and the builder's arguments (``sys.argv``'s if None)."""
    return " ".join([program, *(sys.argv[1:] if argv is None else argv)])


def environment_record(packages: Iterable[str], *, command: str, torch_threads: int, **extra: Any) -> dict[str, Any]:
    """Date (UTC), command, hardware, torch threads, Python and package versions of a build (``extra`` appended)."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        **hardware_record(),
        "torch_threads": torch_threads,
        "python": platform.python_version(),
        "packages": package_versions(packages),
        **extra,
    }


class Timings:
    """Wall seconds per named stage: ``with timings("prior"): ...`` records ``timings.seconds["prior"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as stage ``name`` (recorded even if the block raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - start


def builder_parser(program: str, description: str, assets_dir: Path) -> argparse.ArgumentParser:
    """The command line of a builder, with the options that :class:`BuildRun` builders share.

    Those are ``--assets-dir``, ``--threads`` and ``--no-progress``; the builder adds its own.
    """
    parser = argparse.ArgumentParser(
        prog=program, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assets-dir", type=Path, default=assets_dir, help="where to write the assets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the figures reproducible)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


class BuildRun:
    """One run of a builder that keeps an ``environment`` record in its report.

    It sets torch's threads, creates the asset directory, reads the previous report, times stages, stamps
    sections, compares and writes.

    ``with run.stage("prior"): ...`` times a stage; :meth:`stamp` marks a section with this run's environment
    and that stage's wall time (sections kept from an earlier run keep their own); :meth:`finish` compares the
    report with the previous one, writes it and the manifest.
    """

    def __init__(
        self, assets_dir: str | Path, *, packages: Iterable[str], command: str, threads: int, **extra: Any
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self.assets_dir = Path(assets_dir)
        self.assets_dir.mkdir(parents=True, exist_ok=True)
        self.report_path = self.assets_dir / REPORT_NAME
        self.previous = read_report(self.report_path)
        self.environment = environment_record(packages, command=command, torch_threads=threads, **extra)
        self.timings = Timings()
        self.stage = self.timings

    def stamp(self, section: Mapping[str, Any], stage: str) -> dict[str, Any]:
        """``section`` followed by ``built`` (this run's environment record) and the stage's ``wall_seconds``."""
        return {**section, "built": self.environment, "wall_seconds": self.timings.seconds[stage]}

    def finish(self, report: dict[str, Any], tolerances: Mapping[FigurePath, float], compare: bool = True) -> None:
        """Compare with the previous report, then write the report and the manifest.

        ``reproduction_check`` (the figures at ``tolerances`` against the previous report) is added if there is
        a previous report and ``compare``; the figures beyond tolerance are printed.
        """
        if self.previous and compare:
            check = report["reproduction_check"] = compare_reports(self.previous, report, tolerances)
            print(
                f"reproduction check: {check['compared']} figures compared, within tolerance: {check['all_within_tolerance']}"
            )
            for line in comparison_failures(check):
                print(f"  beyond tolerance: {line}")
        write_report(self.report_path, report)
        write_manifest(self.assets_dir)


# -- reports: writing, reading, comparing -------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"a build report cannot hold a {type(value).__name__}: {value!r}")


def report_json(report: Mapping[str, Any]) -> str:
    """A build report (or part of one) as JSON text: two-space indent, keys in insertion order, non-ASCII kept.

    NumPy scalars and arrays, tuples, sets and paths become JSON numbers, lists and strings.
    """
    return json.dumps(report, indent=2, ensure_ascii=False, default=_json_default)


def write_report(path: str | Path, report: Mapping[str, Any]) -> Path:
    """Write :func:`report_json` of ``report`` to ``path`` as UTF-8 with a final newline."""
    path = Path(path)
    path.write_text(report_json(report) + "\n", encoding="utf-8")
    return path


def read_report(path: str | Path) -> dict[str, Any]:
    """A build report, or an empty dict where the file does not exist (a first build)."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _node(report: Any, path: FigurePath) -> Any:
    for key in path:
        if not isinstance(report, dict) or key not in report:
            return None
        report = report[key]
    return report


def _number(value: Any) -> float | None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if is_number else None


def _paired_figures(previous: Any, current: Any, path: FigurePath) -> Iterator[tuple[FigurePath, float, float]]:
    old, new = _node(previous, path), _node(current, path)
    if isinstance(old, dict) and isinstance(new, dict):  # a figure per key, e.g. an AUROC per cell type
        for key in old:
            if key in new:
                yield from _pair((*path, key), old[key], new[key])
        return
    yield from _pair(path, old, new)


def _pair(path: FigurePath, old: Any, new: Any) -> Iterator[tuple[FigurePath, float, float]]:
    old_number, new_number = _number(old), _number(new)
    if old_number is not None and new_number is not None:
        yield path, old_number, new_number


def compare_reports(
    previous: Mapping[str, Any], current: Mapping[str, Any], tolerances: Mapping[FigurePath, float]
) -> dict[str, Any]:
    """Compare the figures at ``tolerances``' key paths in two build reports.

    A path may name a number or a mapping of numbers (each of its keys present in both reports is compared).
    Figures missing from either report are skipped. Returns ``{"compared", "all_within_tolerance",
    "figures"}``, one figure row being ``{"figure": "a.b.c", "previous", "current", "tolerance", "ok"}``.
    """
    rows = []
    for path, tolerance in tolerances.items():
        for figure, old, new in _paired_figures(previous, current, path):
            row = {"figure": ".".join(figure), "previous": old, "current": new, "tolerance": tolerance}
            rows.append({**row, "ok": abs(new - old) <= tolerance})
    return {"compared": len(rows), "all_within_tolerance": all(row["ok"] for row in rows), "figures": rows}


def comparison_by_figure(comparison: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A comparison as one entry per figure name (the layout of CNS's ``comparison_with_previous_build``)."""
    return {row["figure"]: {k: v for k, v in row.items() if k != "figure"} for row in comparison["figures"]}


def comparison_rows(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The figure rows of a comparison section of a committed report, in either layout.

    The layouts are the table of :func:`compare_reports` (QM9, Summarize) and one entry per figure (CNS's
    :func:`comparison_by_figure`).
    """
    if "figures" in section and isinstance(section["figures"], list):
        return [dict(row) for row in section["figures"]]
    return [{"figure": figure, **row} for figure, row in section.items()]


def comparison_failures(comparison: Mapping[str, Any]) -> list[str]:
    """One line per figure beyond its tolerance: ``figure: previous -> current (tolerance t)``."""
    return [
        f"{row['figure']}: {row['previous']:.4g} -> {row['current']:.4g} (tolerance {row['tolerance']})"
        for row in comparison_rows(comparison)
        if not row["ok"]
    ]


# -- correlations ---------------------------------------------------------------------------------------------
def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``; tied values share the mean of their ranks (as Spearman's rho requires)."""
    _, inverse, counts = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2.0)[inverse.reshape(-1)]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two equally long arrays."""
    return float(np.corrcoef(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the :func:`average_ranks`."""
    return pearson(average_ranks(a), average_ranks(b))


def pairwise_correlations(columns: Mapping[str, np.ndarray], separator: str = "~") -> dict[str, dict[str, float]]:
    """Pearson and Spearman correlation of every pair of columns, keyed ``"a~b"`` (``a`` before ``b``).

    Returns ``{"pearson": {"a~b": r, ...}, "spearman": {"a~b": rho, ...}}``.
    """
    names = list(columns)
    out: dict[str, dict[str, float]] = {"pearson": {}, "spearman": {}}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out["pearson"][f"{a}{separator}{b}"] = pearson(columns[a], columns[b])
            out["spearman"][f"{a}{separator}{b}"] = spearman(columns[a], columns[b])
    return out


def correlation_matrices(columns: Mapping[str, np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
    """Full Pearson and Spearman correlation matrices of the columns: ``{"pearson": {a: {b: r}}, ...}``."""
    names = list(columns)
    values = np.stack([np.asarray(columns[n], dtype=np.float64) for n in names])
    ranks = np.stack([average_ranks(row) for row in values])
    matrices = {"pearson": np.atleast_2d(np.corrcoef(values)), "spearman": np.atleast_2d(np.corrcoef(ranks))}
    return {
        method: {a: {b: float(matrix[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}
        for method, matrix in matrices.items()
    }


def agreement(a: np.ndarray, b: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Pearson r, Spearman rho and mean absolute difference per column of two ``(n, len(names))`` arrays.

    For example the oracle's and the judge's scores of the same samples.
    """
    return {
        name: {
            "pearson": pearson(a[:, k], b[:, k]),
            "spearman": spearman(a[:, k], b[:, k]),
            "mean_abs_difference": float(np.mean(np.abs(a[:, k] - b[:, k]))),
        }
        for k, name in enumerate(names)
    }


def distribution_summary(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Minimum, 5th percentile, median, mean, 95th percentile and maximum of ``values``."""
    array = np.asarray(values, dtype=np.float64)
    return {
        "min": float(array.min()),
        "p05": float(np.percentile(array, 5)),
        "median": float(np.median(array)),
        "mean": float(array.mean()),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


def first_rows(keys: Sequence[str | None]) -> tuple[list[str], np.ndarray]:
    """The distinct keys, sorted, and the row where each first occurs.

    Keys are the canonical forms of valid samples (None for invalid ones); the rows stand for the unique valid
    samples in per-molecule figures.
    """
    first: dict[str, int] = {}
    for row, key in enumerate(keys):
        if key is not None and key not in first:
            first[key] = row
    unique = sorted(first)
    return unique, np.array([first[key] for key in unique], dtype=np.int64)


# -- invalid-reason summaries ---------------------------------------------------------------------------------
def reason_classifier(
    prefixes: Mapping[str, str], contains: Mapping[str, str] | None = None, other: Callable[[str], str] | None = None
) -> Callable[[str], str]:
    """A function that names the class of an invalid reason, for counting without the specific sequence.

    The class is that of the first prefix the reason starts with, else of the first ``contains`` key it
    contains, else ``other(reason)`` (the reason itself by default).
    """
    contains = contains or {}

    def classify(reason: str) -> str:
        for prefix, name in prefixes.items():
            if reason.startswith(prefix):
                return name
        for part, name in contains.items():
            if part in reason:
                return name
        return other(reason) if other is not None else reason

    return classify


def reason_counts(reasons: Iterable[str | None], classify: Callable[[str], str]) -> dict[str, int]:
    """How many reasons fall in each class, most frequent first (None, i.e. a valid sequence, is not counted)."""
    return dict(Counter(classify(reason) for reason in reasons if reason is not None).most_common())


# -- prior samples --------------------------------------------------------------------------------------------
@dataclass
class PriorSamples:
    """Token ids sampled from a prior after a BOS prompt, one row per sample (EOS included where a row ended)."""

    rows: list[list[int]]
    eos_token_id: int
    wall_seconds: float
    cpu_seconds: float

    @property
    def ended(self) -> list[bool]:
        """Whether each row ended with EOS (False: cut at the length limit)."""
        return [bool(row) and row[-1] == self.eos_token_id for row in self.rows]

    def contents(self) -> list[list[int]]:
        """The rows without their final EOS."""
        return [row[:-1] if ended else row for row, ended in zip(self.rows, self.ended, strict=True)]

    def texts(self, tokenizer: Any) -> list[str]:
        """The rows decoded without special tokens (and without tokenization-space clean-up)."""
        return tokenizer.batch_decode(self.contents(), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def sample_prior(
    model: Any,
    *,
    count: int,
    batch_size: int,
    max_new_tokens: int,
    bos_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
    seed: int,
    forbid_token_ids: Sequence[int] | None = None,
    progress: bool = False,
) -> PriorSamples:
    """``count`` unconditional samples at temperature 1 in batches of ``batch_size``.

    One seeded generator draws them all, so the samples depend on ``seed`` and ``batch_size``, not on the
    machine's load.
    """
    import torch
    from tqdm.auto import tqdm

    from morbench.sampling import bos_prompts, sample

    generator = torch.Generator().manual_seed(seed)
    forbid = list(forbid_token_ids) if forbid_token_ids is not None else None
    rows: list[list[int]] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for start in tqdm(range(0, count, batch_size), desc="sample prior", disable=not progress):
        prompt_ids, prompt_mask = bos_prompts(min(batch_size, count - start), bos_token_id)
        generation = sample(
            model,
            prompt_ids,
            prompt_mask,
            max_new_tokens,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            generator=generator,
            forbid_token_ids=forbid,
        )
        rows.extend(generation.rows())
    return PriorSamples(rows, eos_token_id, time.perf_counter() - wall, time.process_time() - cpu)
