"""Plots (matplotlib, PNG): Pareto fronts per objective pair, sample scatter in reward space, learning curves.

* fronts: every method's per-preference mean rewards (one faint point per preference and seed), the seed-averaged
  point of each preference, and the boundary of the region each method's seed-averaged points dominate (a step
  line through its non-dominated points, each labelled with its preference), so dominance can be read off;
* samples: individual samples at the uniform preference, one row per method;
* learning curves: the training score per PPO iteration, one line per trained policy (IterativeRS and Rewarded
  Soups experts, MORLHF preferences), so a switch between experts does not read as a jump of one curve.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from morbench.metrics import non_dominated
from morbench.runs import CURVE_FILE, EVALUATION_FILE, read_evaluation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from morbench.core import TokenEnv

__all__ = ["fronts_figure", "learning_curves_figure", "plot_all", "plot_fronts", "plot_learning_curves", "plot_samples"]

POLICY_TAGS = ("expert", "preference")  # curve.jsonl tags naming the policy an iteration trained


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pairs(k: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(k), 2))


def _colors(methods: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(sorted(methods))}


def _weights_label(weights: list[float]) -> str:
    """Compact preference label: ``(1,0)``, ``(.5,.5)``, ``(.33,.33,.33)``."""

    def short(x: float) -> str:
        text = f"{x:.2f}".rstrip("0").rstrip(".")
        return text[1:] if text.startswith("0.") else text

    return "(" + ",".join(short(float(x)) for x in weights) + ")"


def _front_step(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The boundary of the region dominated by 2-D non-dominated points (maximisation), left to right."""
    front = non_dominated(points)
    front = front[np.argsort(front[:, 0])]
    xs, ys = [front[0, 0]], [front[0, 1]]
    for x, y in front[1:]:  # down from the previous point to this one's height, then right to this point
        xs += [xs[-1], x]
        ys += [y, y]
    return np.asarray(xs), np.asarray(ys)


def _method_means(results: list[dict[str, Any]]) -> dict[str, list[tuple[list[float], np.ndarray]]]:
    """Per method: (weights, mean over seeds of the per-preference mean reward) for each preference."""
    by_method: dict[str, dict[tuple[float, ...], list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        for row in result["per_preference"]:
            by_method[result["method"]][tuple(row["weights"])].append(np.asarray(row["mean"]))
    return {
        method: [(list(w), np.mean(means, axis=0)) for w, means in rows.items()] for method, rows in by_method.items()
    }


def fronts_figure(results: list[dict[str, Any]], true_front: np.ndarray | None = None) -> Figure:
    """The fronts figure (see :func:`plot_fronts`), returned open so tests can inspect it."""
    plt = _pyplot()
    names = results[0]["objective_names"]
    pairs = _pairs(len(names))
    methods = sorted({r["method"] for r in results})
    colors = _colors(methods)
    averaged = _method_means(results)
    width = max(6.5, 4.6 * len(pairs))
    fig, axes = plt.subplots(1, len(pairs), figsize=(width, 4.9), squeeze=False, layout="constrained")
    for ax, (i, j) in zip(axes[0], pairs, strict=True):
        for result in results:  # every seed, faint
            means = np.array([p["mean"] for p in result["per_preference"]])
            ax.scatter(means[:, i], means[:, j], s=10, color=colors[result["method"]], alpha=0.25, linewidths=0)
        for method in methods:
            points = np.array([m for _, m in averaged[method]])
            ax.scatter(points[:, i], points[:, j], s=26, color=colors[method], edgecolor="black", linewidths=0.4)
            xs, ys = _front_step(points[:, [i, j]])
            ax.plot(xs, ys, color=colors[method], lw=1.6, label=method)
            front = {tuple(p) for p in non_dominated(points[:, [i, j]])}
            for weights, point in averaged[method]:
                if (point[i], point[j]) not in front:  # labels on the front only: dominated points stay unlabelled
                    continue
                ax.annotate(
                    _weights_label(weights),
                    (point[i], point[j]),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=6,
                    color=colors[method],
                )
        if true_front is not None:
            ax.scatter(true_front[:, i], true_front[:, j], marker="x", color="black", s=16, label="true front")
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, title="non-dominated front", title_fontsize=7)
    fig.suptitle(
        f"{results[0]['env']}: mean reward per preference\n"
        "large points: mean over seeds, labelled with the preference w on the front\nfaint points: single seeds",
        fontsize=10,
    )
    return fig


def plot_fronts(results: list[dict[str, Any]], path: Path, true_front: np.ndarray | None = None) -> Path:
    """Per-preference mean rewards of every method, one panel per objective pair, with per-method fronts."""
    plt = _pyplot()
    fig = fronts_figure(results, true_front)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_samples(results: list[dict[str, Any]], path: Path, max_points: int = 1500) -> Path | None:
    """Scatter of individual samples at the uniform preference, one row per method (as the paper's Figs 1-3).

    None when no run's samples are here (every result restored from a suite's scored records).
    """
    plt = _pyplot()
    names = results[0]["objective_names"]
    pairs = _pairs(len(names))
    by_method: dict[str, list[np.ndarray]] = defaultdict(list)
    for result in results:
        if not (Path(result["run_dir"]) / EVALUATION_FILE).is_file():
            continue  # restored from a suite's scored record: its samples were not kept
        evaluation = read_evaluation(result["run_dir"])
        k = len(names)
        uniform = min(evaluation["preferences"], key=lambda e: float(np.abs(np.asarray(e["weights"]) - 1.0 / k).sum()))
        by_method[result["method"]].append(np.asarray(uniform["rewards"]))
    if not by_method:
        return None
    methods = sorted(by_method)
    colors = _colors(methods)
    fig, axes = plt.subplots(
        len(methods),
        len(pairs),
        figsize=(max(5.0, 3.6 * len(pairs)), 3.2 * len(methods) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    rng = np.random.default_rng(0)
    for row, method in enumerate(methods):
        rewards = np.concatenate(by_method[method])
        if len(rewards) > max_points:
            rewards = rewards[rng.choice(len(rewards), max_points, replace=False)]
        for col, (i, j) in enumerate(pairs):
            ax = axes[row][col]
            jitter = rng.normal(0, 0.004, size=(len(rewards), 2))
            ax.scatter(
                rewards[:, i] + jitter[:, 0], rewards[:, j] + jitter[:, 1], s=4, alpha=0.35, color=colors[method]
            )
            ax.set_xlabel(names[i])
            ax.set_ylabel(names[j])
            ax.set_title(method, fontsize=9)
            ax.grid(alpha=0.3)
    fig.suptitle(f"{results[0]['env']}:\nsamples at the uniform preference", fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _curve_lines(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Split a run's curve by the policy each iteration trained (its ``expert`` / ``preference`` tag)."""
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        tag = next((f"{t} {entry[t]}" for t in POLICY_TAGS if entry.get(t) is not None), "policy")
        lines[tag].append(entry)
    return lines


def learning_curves_figure(results: list[dict[str, Any]]) -> Figure | None:
    """The learning-curves figure (see :func:`plot_learning_curves`), or None when no run has a curve."""
    plt = _pyplot()
    curves: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for result in results:
        curve_file = Path(result["run_dir"]) / CURVE_FILE
        if curve_file.is_file():
            entries = [json.loads(line) for line in curve_file.read_text().splitlines() if line.strip()]
        else:  # restored from a suite's scored record: its thinned curve
            entries = list(result.get("curve") or [])
        entries = [e for e in entries if "score_mean" in e]
        if entries:
            curves[result["method"]].append(entries)
    if not curves:
        return None
    methods = sorted(curves)
    fig, axes = plt.subplots(
        1, len(methods), figsize=(max(6.5, 4.4 * len(methods)), 4.2), squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("tab10")
    for ax, method in zip(axes[0], methods, strict=True):
        tags = sorted({tag for run in curves[method] for tag in _curve_lines(run)})
        colors = {tag: cmap(i % 10) for i, tag in enumerate(tags)}
        for run in curves[method]:  # one line per seed and trained policy
            for tag, entries in _curve_lines(run).items():
                x = [e["sampled_tokens"] for e in entries]
                y = [e["score_mean"] for e in entries]
                ax.plot(x, y, color=colors[tag], alpha=0.8, lw=1, marker="." if len(x) < 20 else None)
        for tag in tags:
            ax.plot([], [], color=colors[tag], label=tag)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("sampled tokens (whole run)")
        ax.set_ylabel("training score of the policy trained")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{results[0]['env']}: learning curves, one line per trained policy and seed", fontsize=10)
    return fig


def plot_learning_curves(results: list[dict[str, Any]], path: Path) -> Path | None:
    """Training score per PPO iteration against sampled tokens, one panel per method, one line per policy."""
    plt = _pyplot()
    fig = learning_curves_figure(results)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(results: list[dict[str, Any]], root: Path, out: Path) -> list[Path]:
    """Fronts, samples and learning curves of every env in ``results``, written under ``out/plots``; their paths."""
    from morbench.registry import make

    figures: list[Path] = []
    out = Path(out) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    by_env: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_env[result["env"]].append(result)
    for env_id, env_results in sorted(by_env.items()):
        stem = env_id.replace("/", "_")
        task = cast("TokenEnv", make(env_id).unwrapped)
        true_front = task.pareto_front()
        figures.append(plot_fronts(env_results, out / f"{stem}_fronts.png", true_front))
        for figure in (
            plot_samples(env_results, out / f"{stem}_samples.png"),
            plot_learning_curves(env_results, out / f"{stem}_learning_curves.png"),
        ):
            if figure is not None:
                figures.append(figure)
    return figures
