"""Multi-objective metrics, computed from raw reward vectors (maximisation; every formula is in docs/metrics.md).

* :func:`icv` - inverse coefficient of variation across objectives: ``mean(m) / std(m, ddof=1)`` of the K
  per-objective mean rewards ``m``; :func:`icv_samples` - ``mean(s) / std(s, ddof=1)`` of the per-sample mean
  rewards ``s``.
* :func:`hypervolume` - exact Lebesgue measure dominated by a point set and bounded by a reference point.
* :func:`expected_utility` - ``mean_w max_{p in F} w . p`` over a weight set (EUM, Zintgraf et al. 2015).
* :func:`igd` - ``mean_{z in P*} min_{p in F} ||z - p||_2``; :func:`maximum_utility_loss` -
  ``max_w [max_{z in P*} w.z - max_{p in F} w.p]``.
* :func:`bootstrap_interval` - percentile bootstrap CI of the mean over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "bootstrap_interval",
    "cardinality",
    "expected_utility",
    "hypervolume",
    "icv",
    "icv_samples",
    "igd",
    "maximum_utility_loss",
    "non_dominated",
]


def non_dominated(points: np.ndarray) -> np.ndarray:
    """The non-dominated subset of ``points`` (maximisation), duplicates removed, sorted lexicographically.

    ``a`` dominates ``b`` when ``a >= b`` in every objective and ``a > b`` in at least one.
    """
    points = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, np.shape(points)[-1]), axis=0)
    keep = []
    for i, p in enumerate(points):
        dominated = np.any(np.all(points >= p, axis=1) & np.any(points > p, axis=1))
        if not dominated:
            keep.append(i)
    return points[keep]


def cardinality(points: np.ndarray) -> int:
    return len(non_dominated(points))


def hypervolume(points: np.ndarray, reference_point: Sequence[float]) -> float:
    """Exact hypervolume of the region dominated by ``points`` and dominating ``reference_point``.

    Points that do not strictly dominate the reference point in every objective contribute nothing. Uses
    recursive slicing along the last objective (exact for any K; fast for the tens of points of a front).
    """
    ref = np.asarray(reference_point, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, ref.shape[0])
    pts = pts[np.all(pts > ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    return float(_hv(non_dominated(pts) - ref))


def _hv(points: np.ndarray) -> float:
    """Hypervolume w.r.t. the origin of positive points (maximisation)."""
    if points.shape[1] == 1:
        return float(points[:, 0].max())
    if len(points) == 1:
        return float(np.prod(points[0]))
    order = np.argsort(-points[:, -1])
    points = points[order]
    volume = 0.0
    for i in range(len(points)):
        upper = points[i, -1]
        lower = points[i + 1, -1] if i + 1 < len(points) else 0.0
        if upper <= lower:
            continue
        slice_points = non_dominated(points[: i + 1, :-1])
        volume += (upper - lower) * _hv(slice_points)
    return volume


def expected_utility(points: np.ndarray, weights: np.ndarray) -> float:
    """``mean over w of max over points of w . p`` (the utility a user with a random preference gets)."""
    points = np.asarray(points, dtype=np.float64)
    return float(np.mean(np.max(np.asarray(weights) @ points.T, axis=1)))


def igd(points: np.ndarray, true_front: np.ndarray) -> float:
    """Inverted generational distance: mean distance from each true-front point to its nearest point."""
    points = np.asarray(points, dtype=np.float64)
    front = np.asarray(true_front, dtype=np.float64)
    distances = np.linalg.norm(front[:, None, :] - points[None, :, :], axis=2)
    return float(distances.min(axis=1).mean())


def maximum_utility_loss(points: np.ndarray, true_front: np.ndarray, weights: np.ndarray) -> float:
    """The largest utility a user loses (over the weight set) by using ``points`` instead of the true front."""
    w = np.asarray(weights, dtype=np.float64)
    best = np.max(w @ np.asarray(true_front, dtype=np.float64).T, axis=1)
    achieved = np.max(w @ np.asarray(points, dtype=np.float64).T, axis=1)
    return float(np.max(best - achieved))


def icv(objective_means: Sequence[float]) -> float:
    """Inverse coefficient of variation across objectives: ``mean / std (ddof=1)`` of the per-objective means.

    Higher means the objectives are served more evenly; infinite when all means are equal and positive, NaN
    with fewer than two objectives.
    """
    m = np.asarray(objective_means, dtype=np.float64)
    if m.size < 2:
        return float("nan")
    std = m.std(ddof=1)
    return float(m.mean() / std) if std > 0 else (float("inf") if m.mean() > 0 else float("nan"))


def icv_samples(rewards: np.ndarray) -> float:
    """``mean / std (ddof=1)`` over samples of each sample's mean reward (concentration of the distribution)."""
    per_sample = np.asarray(rewards, dtype=np.float64).mean(axis=1)
    if per_sample.size < 2:
        return float("nan")
    std = per_sample.std(ddof=1)
    return float(per_sample.mean() / std) if std > 0 else float("nan")


def bootstrap_interval(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (fixed RNG, so reports are reproducible); NaN for < 2 values."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
