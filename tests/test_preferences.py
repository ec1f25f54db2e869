import numpy as np
import pytest

from morbench.errors import InvalidPreferenceError
from morbench.preferences import preference_key, simplex_lattice, uniform_preference, validate_preference


def test_simplex_lattice_points_and_order():
    grid = simplex_lattice(2, 4)
    np.testing.assert_allclose(grid, [[0, 1], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1, 0]])
    assert simplex_lattice(3, 3).shape == (10, 3)
    assert simplex_lattice(3, 10).shape == (66, 3)
    np.testing.assert_allclose(simplex_lattice(3, 6).sum(axis=1), 1.0)
    assert any(np.allclose(w, uniform_preference(3)) for w in simplex_lattice(3, 3))


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [
        ([0.5, 0.5], "expected 3 weights"),
        ([0.5, 0.6, -0.1], "negative"),
        ([0.2, 0.2, 0.2], "sums to 0.6"),
        ([np.nan, 0.5, 0.5], "NaN"),
        ("abc", "not a vector of numbers"),
    ],
)
def test_validate_preference_names_the_bad_value(weights, fragment):
    with pytest.raises(InvalidPreferenceError, match=fragment):
        validate_preference(weights, 3)


def test_validate_preference_accepts_and_key():
    w = validate_preference([0.25, 0.75], 2)
    assert w.dtype == np.float64
    assert preference_key(w) == "0.25_0.75"
