"""Plots (matplotlib, PNG): Pareto fronts per objective pair, sample scatter in reward space, learning curves."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from morbench.runs import CURVE_FILE, read_evaluation

__all__ = ["plot_all", "plot_fronts", "plot_learning_curves", "plot_samples"]


def _pyplot():
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


def plot_fronts(results: list[dict[str, Any]], path: Path, true_front: np.ndarray | None = None) -> Path:
    """Per-preference mean reward vectors of every method and seed, one panel per objective pair."""
    plt = _pyplot()
    names = results[0]["objective_names"]
    pairs = _pairs(len(names))
    colors = _colors(list({r["method"] for r in results}))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs, strict=True):
        seen = set()
        for result in results:
            means = np.array([p["mean"] for p in result["per_preference"]])
            label = result["method"] if result["method"] not in seen else None
            seen.add(result["method"])
            ax.scatter(means[:, i], means[:, j], s=18, color=colors[result["method"]], alpha=0.8, label=label)
        if true_front is not None:
            ax.scatter(
                true_front[:, i], true_front[:, j], marker="x", color="black", s=20, label="true front (projected)"
            )
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{results[0]['env']}: mean rewards per preference (one point per preference and seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_samples(results: list[dict[str, Any]], path: Path, max_points: int = 1500) -> Path:
    """Scatter of individual samples at the uniform preference, one row per method (as the paper's Figs 1-3)."""
    plt = _pyplot()
    names = results[0]["objective_names"]
    pairs = _pairs(len(names))
    by_method: dict[str, list[np.ndarray]] = defaultdict(list)
    for result in results:
        evaluation = read_evaluation(result["run_dir"])
        k = len(names)
        uniform = min(evaluation["preferences"], key=lambda e: float(np.abs(np.asarray(e["weights"]) - 1.0 / k).sum()))
        by_method[result["method"]].append(np.asarray(uniform["rewards"]))
    methods = sorted(by_method)
    colors = _colors(methods)
    fig, axes = plt.subplots(len(methods), len(pairs), figsize=(3.6 * len(pairs), 3.2 * len(methods)), squeeze=False)
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
    fig.suptitle(f"{results[0]['env']}: samples at the uniform preference")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curves(results: list[dict[str, Any]], path: Path) -> Path | None:
    """Training score (the scalarized reward of each PPO iteration) against sampled tokens."""
    plt = _pyplot()
    curves = []
    for result in results:
        curve_file = Path(result["run_dir"]) / CURVE_FILE
        if not curve_file.is_file():
            continue
        entries = [json.loads(line) for line in curve_file.read_text().splitlines() if line.strip()]
        entries = [e for e in entries if "score_mean" in e]
        if entries:
            curves.append((result["method"], entries))
    if not curves:
        return None
    colors = _colors(list({m for m, _ in curves}))
    fig, ax = plt.subplots(figsize=(6, 4))
    seen = set()
    for method, entries in curves:
        x = [e["sampled_tokens"] for e in entries]
        y = [e["score_mean"] for e in entries]
        ax.plot(x, y, color=colors[method], alpha=0.7, label=method if method not in seen else None, lw=1)
        seen.add(method)
    ax.set_xlabel("sampled tokens")
    ax.set_ylabel("training score (scalarized reward)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{results[0]['env']}: learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(results: list[dict[str, Any]], root: Path, out: Path) -> list[Path]:
    from morbench.registry import make

    figures: list[Path] = []
    out = Path(out) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    by_env: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_env[result["env"]].append(result)
    for env_id, env_results in sorted(by_env.items()):
        stem = env_id.replace("/", "_")
        task = make(env_id).unwrapped
        true_front = task.pareto_front() if hasattr(task, "pareto_front") else None
        figures.append(plot_fronts(env_results, out / f"{stem}_fronts.png", true_front))
        figures.append(plot_samples(env_results, out / f"{stem}_samples.png"))
        curve = plot_learning_curves(env_results, out / f"{stem}_learning_curves.png")
        if curve is not None:
            figures.append(curve)
    return figures
