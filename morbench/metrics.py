"""Multi-objective metrics, computed from raw reward vectors (maximisation; every formula is in docs/metrics.md).

* :func:`hypervolume` - exact Lebesgue measure dominated by a point set and bounded by a reference point
  (moocore's exact algorithms). Applied to per-preference *sample means* it is biased upward by sampling noise:
  :func:`crossfit_hypervolume` is the noise-corrected estimate the scorer reports as ``hypervolume``.
* :func:`crossfit_hypervolume`, :func:`crossfit_expected_utility` - cross-fitted (independent halves) estimates:
  one half of each preference's samples decides which point serves a region / a weight, the other half values
  it, after James-Stein shrinkage of each half's per-preference means toward their grand mean.
* :func:`noise_aware_cardinality` - the number of non-dominated trade-offs that differ by more than sampling noise.
* :func:`served_utility` - ``mean_w w . p_w``: the utility each preference gets from its own samples.
* :func:`expected_utility` - ``mean_w max_{p in F} w . p`` over a weight set (EUM, Zintgraf et al. 2015).
* :func:`igd`, :func:`maximum_utility_loss` - distances / utility losses to a known true front.
* :func:`icv`, :func:`icv_samples` - inverse coefficients of variation across objectives / across samples;
  :func:`cv_samples` - the latter's inverse, the form to average over seeds.
* :func:`t_interval`, :func:`paired_t_interval` - Student-t confidence intervals over seeds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "auroc",
    "cardinality",
    "crossfit_expected_utility",
    "crossfit_hypervolume",
    "crossfit_maximum_utility_loss",
    "cv_samples",
    "expected_utility",
    "hypervolume",
    "icv",
    "icv_samples",
    "igd",
    "maximum_utility_loss",
    "noise_aware_cardinality",
    "non_dominated",
    "paired_t_interval",
    "served_utility",
    "shrink_means",
    "student_t_quantile",
    "t_interval",
]

CROSSFIT_SPLITS = 32  # random halvings averaged (x2 directions); fixed RNG seed 0 so reports are reproducible
CROSSFIT_POINTS = 2**12  # Halton points integrating the cross-fitted dominated region (4,096: fits in cache)


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
    """Size of the non-dominated subset of ``points`` (on sample means: inflated by noise, see below)."""
    return len(non_dominated(points))


def hypervolume(points: np.ndarray, reference_point: npt.ArrayLike) -> float:
    """Exact hypervolume of the region dominated by ``points`` and dominating ``reference_point``.

    Points that do not strictly dominate the reference point in every objective contribute nothing. Computed by
    moocore (WFG / dimension-sweep algorithms: 1,000 points in 3 objectives take about a millisecond).
    """
    import moocore

    ref = np.asarray(reference_point, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, ref.shape[0])
    pts = pts[np.all(pts > ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    if ref.shape[0] == 1:
        return float(pts.max() - ref[0])
    # moocore minimises: negate both the points and the reference point
    return float(moocore.hypervolume(-pts, ref=-ref))


def expected_utility(points: np.ndarray, weights: np.ndarray) -> float:
    """``mean over w of max over points of w . p`` (the utility a user with a random preference gets)."""
    points = np.asarray(points, dtype=np.float64)
    return float(np.mean(np.max(np.asarray(weights) @ points.T, axis=1)))


def served_utility(means: np.ndarray, weights: np.ndarray) -> float:
    """``mean over the grid of w . p_w``: each preference scored on the mean reward of its *own* samples.

    ``means[i]`` is the mean reward vector of the samples drawn for ``weights[i]``. No maximum, so no noise bias.
    """
    means = np.asarray(means, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if means.shape != weights.shape:
        raise ValueError(f"means {means.shape} and weights {weights.shape} must have the same shape")
    return float(np.mean(np.sum(weights * means, axis=1)))


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


# -- noise-corrected front metrics ---------------------------------------------------------------------------
def shrink_means(means: np.ndarray, noise_variance: np.ndarray) -> np.ndarray:
    """Positive-part James-Stein shrinkage of P per-preference means toward their grand mean, per objective.

    ``p~_wk = pbar_k + lambda_k (p_wk - pbar_k)`` with ``lambda_k = max(0, 1 - (P - 3) v_k / S_k)``, where
    ``v_k`` is the sampling variance of one mean and ``S_k = sum_w (p_wk - pbar_k)^2``. Differences between
    preferences no larger than noise are pulled together; real ones (``S_k >> P v_k``) are kept. Needs P >= 4
    (with fewer preferences the means are returned unchanged).
    """
    means = np.asarray(means, dtype=np.float64)
    n_points = means.shape[0]
    if n_points < 4:
        return means.copy()
    grand = means.mean(axis=0)
    spread = np.sum((means - grand) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(spread > 0, 1.0 - (n_points - 3) * np.asarray(noise_variance) / spread, 0.0)
    return grand + np.clip(factor, 0.0, 1.0) * (means - grand)


def _halves(rewards: Sequence[np.ndarray], splits: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each of ``splits`` random halvings: the shrunk per-preference means of half A and of half B."""
    rng = np.random.default_rng(seed)
    for _ in range(splits):
        halves: tuple[list[np.ndarray], ...] = ([], [], [], [])  # means A, means B, noise variance A, noise variance B
        for r in rewards:
            if len(r) < 4:
                raise ValueError(f"cross-fitting needs >= 4 samples per preference, got {len(r)}")
            order = rng.permutation(len(r))
            half = len(r) // 2
            for side, part in enumerate((r[order[:half]], r[order[half : 2 * half]])):
                halves[side].append(part.mean(axis=0))
                halves[2 + side].append(part.var(axis=0, ddof=1) / half)
        a = shrink_means(np.asarray(halves[0]), np.mean(halves[2], axis=0))
        b = shrink_means(np.asarray(halves[1]), np.mean(halves[3], axis=0))
        yield a, b
        yield b, a


def _halton(n: int, dims: int) -> np.ndarray:
    """The first ``n`` points (from index 1) of the Halton sequence in ``[0, 1)^dims`` (prime bases 2, 3, 5, ...)."""
    primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37][:dims]
    if len(primes) < dims:
        raise ValueError(f"Halton points are implemented for up to 12 objectives, got {dims}")
    out = np.empty((n, dims))
    for j, base in enumerate(primes):
        index = np.arange(1, n + 1)
        fraction, value = 1.0, np.zeros(n)
        while np.any(index > 0):
            fraction /= base
            value += fraction * (index % base)
            index //= base
        out[:, j] = value
    return out


def _as_reward_list(rewards: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = [np.asarray(r, dtype=np.float64) for r in rewards]
    if not out or any(r.ndim != 2 or r.shape[1] != out[0].shape[1] for r in out):
        raise ValueError("rewards must be a non-empty list of (samples, objectives) arrays")
    return out


def crossfit_hypervolume(
    rewards: Sequence[np.ndarray],
    reference_point: npt.ArrayLike,
    splits: int = CROSSFIT_SPLITS,
    seed: int = 0,
    points: int = CROSSFIT_POINTS,
) -> float:
    """Hypervolume of per-preference mean rewards, corrected for sampling noise by cross-fitting.

    ``rewards[i]`` is the ``(n_i, K)`` array of sample rewards at preference ``i``. Each preference's samples are
    split in random halves A and B; each half's per-preference means are shrunk (:func:`shrink_means`). A point
    ``z`` of objective space is *assigned* by half A to the point that covers it best,
    ``i*(z) = argmax_i min_k (a_ik - z_k)``, and counts as dominated when half B's mean of that same point
    dominates it: ``HV_cf = vol{z >= r : b_{i*(z)} >= z}``. Selection and valuation use independent samples, so
    the upward "max of noisy means" bias of the plug-in :func:`hypervolume` is removed. Averaged over both
    directions and ``splits`` seeded halvings; the volume is integrated on ``points`` Halton points of the box
    ``[r, max_i b_i]`` (integration error below 1e-3 relative at the default).
    """
    rewards = _as_reward_list(rewards)
    ref = np.asarray(reference_point, dtype=np.float64)
    unit = _halton(points, ref.shape[0])
    values = []
    for select, value in _halves(rewards, splits, seed):
        top = value.max(axis=0)
        if np.any(top <= ref):
            values.append(0.0)
            continue
        z = ref + unit * (top - ref)
        # min_k (a_ik - z_k) for every (z, i), one objective at a time (a reduction over a short axis is slow)
        margin = select[None, :, 0] - z[:, None, 0]
        for k in range(1, ref.shape[0]):
            np.minimum(margin, select[None, :, k] - z[:, None, k], out=margin)
        chosen = value[np.argmax(margin, axis=1)]
        covered = chosen[:, 0] >= z[:, 0]
        for k in range(1, ref.shape[0]):
            covered &= chosen[:, k] >= z[:, k]
        values.append(float(covered.mean() * np.prod(top - ref)))
    return float(np.mean(values))


def _crossfit_utilities(rewards: list[np.ndarray], weights: np.ndarray, splits: int, seed: int) -> np.ndarray:
    """Per weight: the cross-fitted ``max_p w . p`` (chosen on one half, valued on the other), split-averaged."""
    totals = np.zeros(len(weights))
    count = 0
    for select, value in _halves(rewards, splits, seed):
        chosen = np.argmax(weights @ select.T, axis=1)
        totals += np.sum(weights * value[chosen], axis=1)
        count += 1
    return totals / count


def crossfit_expected_utility(
    rewards: Sequence[np.ndarray], weights: np.ndarray, splits: int = CROSSFIT_SPLITS, seed: int = 0
) -> float:
    """:func:`expected_utility` of the per-preference means, corrected for noise.

    For each weight ``w`` one half picks ``argmax_i w . a_i`` and the other half values it (``w . b_i``);
    averaged as in :func:`crossfit_hypervolume`.
    """
    weights = np.asarray(weights, dtype=np.float64)
    return float(np.mean(_crossfit_utilities(_as_reward_list(rewards), weights, splits, seed)))


def crossfit_maximum_utility_loss(
    rewards: Sequence[np.ndarray],
    true_front: np.ndarray,
    weights: np.ndarray,
    splits: int = CROSSFIT_SPLITS,
    seed: int = 0,
) -> float:
    """:func:`maximum_utility_loss` with the achieved utility ``max_p w . p`` cross-fitted per weight."""
    w = np.asarray(weights, dtype=np.float64)
    best = np.max(w @ np.asarray(true_front, dtype=np.float64).T, axis=1)
    return float(np.max(best - _crossfit_utilities(_as_reward_list(rewards), w, splits, seed)))


def noise_aware_cardinality(rewards: Sequence[np.ndarray], confidence: float = 0.95) -> int:
    """Number of non-dominated per-preference means that are distinguishable from each other beyond noise.

    Means are visited by decreasing sum (ties by index); one is kept unless an already-kept mean ``q`` is at
    least as good up to noise in every objective: ``q_k + z sqrt(se_qk^2 + se_pk^2) >= p_k`` for all ``k``
    (``z`` the normal quantile of ``confidence``, ``se`` the standard error of a mean). A policy that ignores the
    preference scores 1; the plug-in :func:`cardinality` of its noisy means is typically 3-6.
    """
    rewards = _as_reward_list(rewards)
    means = np.array([r.mean(axis=0) for r in rewards])
    se = np.array([r.std(axis=0, ddof=1) / math.sqrt(len(r)) if len(r) > 1 else np.zeros(r.shape[1]) for r in rewards])
    z = _normal_quantile(0.5 + confidence / 2)
    order = sorted(range(len(means)), key=lambda i: (-means[i].sum(), i))
    kept: list[int] = []
    for i in order:
        margin = z * np.sqrt(se[kept] ** 2 + se[i] ** 2) if kept else None
        if kept and np.any(np.all(means[kept] + margin >= means[i], axis=1)):
            continue
        kept.append(i)
    return len(kept)


# -- per-run summaries -----------------------------------------------------------------------------------------
ROUNDING_SPREAD = 1e-12  # a spread below this fraction of the mean is float rounding of equal values


def _spread(values: np.ndarray) -> tuple[float, float]:
    """``(mean, std (ddof=1))`` of ``values``, the std set to 0 where it is float rounding of equal values.

    Averaging 1,024 copies of one number does not give that number back exactly, so a policy that emits one
    sequence over and over shows a std of ~1e-16 instead of 0; without the floor its inverse coefficient of
    variation would read ~1e15 for one seed and inf for another, by luck of rounding.
    """
    mean, std = float(values.mean()), float(values.std(ddof=1))
    return mean, (0.0 if std <= ROUNDING_SPREAD * abs(mean) else std)


def _inverse_cv(values: np.ndarray) -> float:
    """``mean / std (ddof=1)``: +inf when all values are equal and positive, NaN when equal and not positive.

    NaN with fewer than two values.
    """
    if values.size < 2:
        return float("nan")
    mean, std = _spread(values)
    if std > 0:
        return mean / std
    return float("inf") if mean > 0 else float("nan")


def icv(objective_means: Sequence[float]) -> float:
    """Inverse coefficient of variation across objectives: ``mean / std (ddof=1)`` of the per-objective means.

    Higher means the objectives are served more evenly; +inf when all means are equal (to float rounding) and
    positive, NaN with fewer than two objectives.
    """
    return _inverse_cv(np.asarray(objective_means, dtype=np.float64))


def icv_samples(rewards: np.ndarray) -> float:
    """``mean / std (ddof=1)`` over samples of each sample's mean reward (concentration of the distribution).

    +inf when every sample scores the same (to float rounding): a policy collapsed onto one sequence. Unbounded,
    so never average it over seeds: intervals and paired tests use its inverse, :func:`cv_samples`.
    """
    return _inverse_cv(np.asarray(rewards, dtype=np.float64).mean(axis=1))


def cv_samples(rewards: np.ndarray) -> float:
    """Coefficient of variation over samples of each sample's mean reward: ``std (ddof=1) / mean``.

    The inverse of :func:`icv_samples` (lower is more concentrated): 0 for a collapsed policy, where the ICV is
    infinite, so it stays finite and can be averaged over seeds. NaN with fewer than two samples or a non-positive
    mean.
    """
    per_sample = np.asarray(rewards, dtype=np.float64).mean(axis=1)
    if per_sample.size < 2:
        return float("nan")
    mean, std = _spread(per_sample)
    return std / mean if mean > 0 else float("nan")


# -- intervals over seeds --------------------------------------------------------------------------------------
def _normal_quantile(p: float) -> float:
    """Inverse standard normal CDF by bisection on ``erf`` (exact to ~1e-12)."""
    low, high = -40.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _student_t_central(t: float, dof: int) -> float:
    """``P(|T| <= t)`` for Student's t with integer ``dof`` (closed form, Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(dof))
    c2 = math.cos(theta) ** 2
    if dof % 2 == 1:
        total, term = 0.0, math.cos(theta)
        if dof > 1:
            total = term
            for j in range(3, dof - 1, 2):  # cos + (2/3) cos^3 + (2.4/3.5) cos^5 + ... up to cos^(dof-2)
                term *= c2 * (j - 1) / j
                total += term
        return (2 / math.pi) * (theta + math.sin(theta) * total)
    total, term = 1.0, 1.0
    for j in range(2, dof - 1, 2):  # 1 + (1/2) cos^2 + (1.3/2.4) cos^4 + ... up to cos^(dof-2)
        term *= c2 * (j - 1) / j
        total += term
    return math.sin(theta) * total


@functools.lru_cache(maxsize=256)
def student_t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t distribution with integer ``dof >= 1`` degrees of freedom."""
    if not 0.5 < p < 1 or int(dof) != dof or dof < 1:
        raise ValueError(f"need 0.5 < p < 1 and an integer dof >= 1, got p={p}, dof={dof}")
    target = 2 * p - 1
    low, high = 0.0, 1.0
    while _student_t_central(high, int(dof)) < target:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if _student_t_central(mid, int(dof)) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (seeds): ``mean -/+ t_{n-1} s / sqrt(n)``; NaN for < 2 values.

    Non-finite values are dropped. Exact coverage for normally distributed values, also with 3-5 seeds (the
    percentile bootstrap covers the mean about 76% of the time at nominal 95% with 3 seeds).
    """
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if x.size < 2:
        return float("nan"), float("nan")
    half = student_t_quantile(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def paired_t_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Seed-paired comparison: ``(mean_diff, low, high)`` of ``d_s = a_s - b_s`` (same seeds, same order).

    The interval is :func:`t_interval` of the differences: it excludes 0 when ``a`` and ``b`` differ at the
    given confidence. Pairs with a non-finite member are dropped; NaN bounds with fewer than 2 pairs.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths (one per shared seed), got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True) if _finite_number(x) and _finite_number(y)]
    mean = float(np.mean(diffs)) if diffs else float("nan")
    low, high = t_interval(diffs, confidence)
    return mean, low, high


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores sharing their average rank); NaN if one class."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))
