"""Every metric against a hand computation (and the 3-objective hypervolume against an independent one)."""

import itertools

import numpy as np
import pytest

from morbench import metrics


def test_non_dominated_and_cardinality():
    points = np.array([[1, 0], [0, 1], [0.5, 0.5], [0.4, 0.4], [1, 0], [0.5, 0.2]])
    np.testing.assert_array_equal(metrics.non_dominated(points), [[0, 1], [0.5, 0.5], [1, 0]])
    assert metrics.cardinality(points) == 3


def test_hypervolume_2d_by_hand():
    # staircase: [0,1]x[0,3] U [0,2]x[0,2] U [0,3]x[0,1] = 3 + 4 + 3 - 2 - 1 - 1 ... = 6
    points = np.array([[1, 3], [2, 2], [3, 1]])
    assert metrics.hypervolume(points, [0, 0]) == pytest.approx(6.0)
    assert metrics.hypervolume(points, [1, 1]) == pytest.approx(1.0 * 1 + 1 * 0)  # only (2,2) adds area 1x1
    assert metrics.hypervolume(points[:1], [0, 0]) == pytest.approx(3.0)
    assert metrics.hypervolume(np.array([[-1, 5]]), [0, 0]) == 0.0  # does not dominate the reference point


def _grid_hypervolume(points, ref):
    """Independent check: sum the volumes of grid cells (cut at every coordinate) dominated by some point."""
    points = np.asarray(points, float)
    axes = [np.unique(np.concatenate([[ref[d]], points[:, d]])) for d in range(points.shape[1])]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lower = np.array([axes[d][i] for d, i in enumerate(cell)])
        upper = np.array([axes[d][i + 1] for d, i in enumerate(cell)])
        if np.any(np.all(points >= upper, axis=1)):
            total += float(np.prod(upper - lower))
    return total


def test_hypervolume_3d_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    for _ in range(5):
        points = rng.random((12, 3))
        ref = np.array([0.1, 0.05, 0.0])
        assert metrics.hypervolume(points, ref) == pytest.approx(
            _grid_hypervolume(points[np.all(points > ref, 1)], ref)
        )
    # hand value: two boxes [0,1]x[0,1]x[0,2] and [0,2]x[0,2]x[0,1] overlap in [0,1]^3: 2 + 4 - 1 = 5
    assert metrics.hypervolume([[1, 1, 2], [2, 2, 1]], [0, 0, 0]) == pytest.approx(5.0)


def test_expected_utility_igd_and_mul_by_hand():
    front = np.array([[1.0, 0.0], [0.0, 1.0]])
    weights = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    # utilities: w1 -> max(1, 0) = 1; w2 -> 0.5; w3 -> 1  => mean 2.5 / 3
    assert metrics.expected_utility(front, weights) == pytest.approx(2.5 / 3)
    approx = np.array([[0.5, 0.5]])
    true = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.igd(approx, true) == pytest.approx(np.sqrt(0.5))
    # MUL: w=(1,0): 1 - 0.5; w=(.5,.5): .5 - .5; w=(0,1): 1 - .5  => 0.5
    assert metrics.maximum_utility_loss(approx, true, weights) == pytest.approx(0.5)
    assert metrics.igd(true, true) == 0.0 and metrics.maximum_utility_loss(true, true, weights) == 0.0


def test_icv_definitions_by_hand():
    # per-objective means (0.2, 0.4, 0.6): mean 0.4, std (ddof=1) 0.2 -> 2.0
    assert metrics.icv([0.2, 0.4, 0.6]) == pytest.approx(2.0)
    assert metrics.icv([0.5, 0.5]) == float("inf")
    assert np.isnan(metrics.icv([0.3]))
    rewards = np.array([[0.0, 0.2], [0.4, 0.4], [0.6, 0.8]])  # sample means 0.1, 0.4, 0.7: mean .4, std .3
    assert metrics.icv_samples(rewards) == pytest.approx(0.4 / 0.3)


def test_bootstrap_interval_is_reproducible_and_brackets_the_mean():
    values = [0.1, 0.2, 0.3, 0.4]
    low, high = metrics.bootstrap_interval(values)
    assert low <= 0.25 <= high and (low, high) == metrics.bootstrap_interval(values)
    assert low >= 0.1 and high <= 0.4
    assert all(np.isnan(metrics.bootstrap_interval([1.0])))
