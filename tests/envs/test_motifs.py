"""Motifs: the exact Pareto front is reachable and nothing reachable dominates it (checked by brute force)."""

import itertools

import numpy as np

import morbench
from morbench.envs.motifs.env import MotifsEnv


def _non_dominated(points: np.ndarray) -> np.ndarray:
    keep = [p for p in points if not any(np.all(q >= p) and np.any(q > p) for q in points)]
    return np.unique(np.asarray(keep), axis=0)


def test_front_equals_brute_force_non_dominated_set():
    env = MotifsEnv(num_motifs=2, motif_length=3, max_length=4, num_distractors=1)
    alphabet = env.oracle.alphabet
    sequences = ["".join(s) for n in range(1, 5) for s in itertools.product(alphabet, repeat=n)]
    rewards = env.score(sequences).rewards.astype(np.float64)
    np.testing.assert_allclose(_non_dominated(rewards), env.pareto_front())


def test_every_front_point_is_reached_by_its_example_sequence():
    env = morbench.make("morbench/Motifs-v0").unwrapped
    front = env.pareto_front()
    assert front.shape == (15, 3)
    np.testing.assert_allclose(front.sum(axis=1), 2.0)  # 8 letters / motif length 4
    for point in front:
        sequence = env.oracle.example_sequence((point * env.motif_length).round().astype(int))
        np.testing.assert_allclose(env.score([sequence]).rewards[0], point)


def test_motifs_are_seeded_and_disjoint():
    a, b, c = MotifsEnv(seed=0), MotifsEnv(seed=0), MotifsEnv(seed=1)
    assert a.motifs == b.motifs != c.motifs
    letters = "".join(a.motifs)
    assert len(set(letters)) == len(letters)


def test_front_is_a_single_point_when_the_budget_fits_every_motif():
    env = MotifsEnv(num_motifs=2, motif_length=3, max_length=6)
    np.testing.assert_array_equal(env.pareto_front(), [[1.0, 1.0]])
