"""Preference vectors on the probability simplex: validation and standard lattices."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from morbench.errors import InvalidPreferenceError

SUM_TOLERANCE = 1e-6


def validate_preference(weights: Sequence[float] | np.ndarray, reward_dim: int) -> np.ndarray:
    """Return ``weights`` as a float64 array after checking it is a preference for ``reward_dim`` objectives.

    A preference has exactly ``reward_dim`` finite, non-negative entries that sum to 1 (within 1e-6).
    """
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidPreferenceError(f"preference {weights!r} is not a vector of numbers") from exc
    if w.ndim != 1 or w.shape[0] != reward_dim:
        raise InvalidPreferenceError(
            f"preference {w.tolist()} has shape {w.shape}; expected {reward_dim} weights, one per objective"
        )
    if not np.all(np.isfinite(w)):
        raise InvalidPreferenceError(f"preference {w.tolist()} contains NaN or infinity")
    if np.any(w < 0):
        raise InvalidPreferenceError(f"preference {w.tolist()} has negative weights; all weights must be >= 0")
    total = float(w.sum())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise InvalidPreferenceError(
            f"preference {w.tolist()} sums to {total:.6g}; weights must sum to 1 (divide by the sum to normalise)"
        )
    return w


def simplex_lattice(reward_dim: int, divisions: int) -> np.ndarray:
    """All preferences whose entries are multiples of ``1 / divisions`` (Das-Dennis lattice), in lexicographic order.

    ``simplex_lattice(2, 4)`` is ``[[0, 1], [.25, .75], [.5, .5], [.75, .25], [1, 0]]``; the lattice has
    ``C(divisions + reward_dim - 1, reward_dim - 1)`` points.
    """
    if reward_dim < 1 or divisions < 1:
        raise InvalidPreferenceError(
            f"simplex_lattice needs reward_dim >= 1 and divisions >= 1, got {reward_dim}, {divisions}"
        )
    points = [
        counts for counts in itertools.product(range(divisions + 1), repeat=reward_dim) if sum(counts) == divisions
    ]
    return np.asarray(points, dtype=np.float64) / divisions


def uniform_preference(reward_dim: int) -> np.ndarray:
    """The preference that weights every objective equally."""
    return np.full(reward_dim, 1.0 / reward_dim)


def preference_key(weights: Sequence[float] | np.ndarray) -> str:
    """A stable string key for a preference, e.g. ``"0.25_0.75"`` (used in file names and result tables)."""
    return "_".join(f"{float(x):.4g}" for x in weights)
