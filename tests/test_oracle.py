"""The oracle contract: batched, cached by canonical key, PMO call counting, floor reward, budgets, isolation."""

import numpy as np
import pytest

from morbench.core import InvalidSequence, Oracle, OracleEvaluation
from morbench.errors import OracleBudgetExhausted


class LengthOracle(Oracle):
    """Two objectives from a lower-cased string: its length / 10 and the fraction of 'a'."""

    objective_names = ("length", "a_fraction")
    property_names = ("raw_length",)

    def __init__(self, budget=None, explode_on=None):
        super().__init__(budget=budget)
        self.reward_low = np.zeros(2, dtype=np.float32)
        self.reward_high = np.ones(2, dtype=np.float32)
        self.batches = []
        self.explode_on = explode_on

    def canonicalize(self, sequence, context=None):
        if not sequence:
            raise InvalidSequence("empty sequence")
        if sequence == "crash":
            raise RuntimeError("canonicalizer bug")
        return sequence.lower()

    def evaluate(self, keys, contexts):
        self.batches.append(list(keys))
        if self.explode_on in keys:
            raise ValueError(f"cannot score {self.explode_on}")
        lengths = np.array([len(k) for k in keys], dtype=np.float64)
        rewards = np.stack([lengths / 10, [k.count("a") / len(k) for k in keys]], axis=1)
        failures = {i: "too long" for i, k in enumerate(keys) if len(k) > 10}
        return OracleEvaluation(rewards, {"raw_length": lengths}, failures)


def test_scores_batch_caches_by_canonical_key_and_counts_unique_valid():
    oracle = LengthOracle()
    result = oracle(["Aa", "aa", "", "bbb", "AA"])
    assert result.rewards.dtype == np.float32 and result.rewards.shape == (5, 2)
    np.testing.assert_allclose(result.rewards[0], [0.2, 1.0])
    assert result.valid.tolist() == [True, True, False, True, True]
    assert result.reasons[2] == "empty sequence"
    assert result.keys == ["aa", "aa", None, "bbb", "aa"]
    np.testing.assert_array_equal(result.rewards[2], [0, 0])  # the floor
    assert np.isnan(result.properties["raw_length"][2])
    assert oracle.calls == 2  # "aa" and "bbb": repeats free, invalid free
    assert oracle.batches == [["aa", "bbb"]]  # one batched evaluate call
    again = oracle(["aA", "bbb"])
    assert oracle.calls == 2 and len(oracle.batches) == 1
    np.testing.assert_array_equal(again.rewards, result.rewards[[0, 3]])
    assert oracle.requests == 7


def test_budget_is_enforced_before_scoring():
    oracle = LengthOracle(budget=2)
    oracle(["a", "b"])
    assert oracle.remaining == 0
    oracle(["a", "B", ""])  # cached and invalid sequences are free
    with pytest.raises(OracleBudgetExhausted, match="2 of 2 calls used"):
        oracle(["c"])
    assert oracle.calls == 2


def test_exceptions_are_isolated_to_the_offending_sequence():
    oracle = LengthOracle(explode_on="bad")
    result = oracle(["ok", "bad", "crash", "x" * 12])
    assert result.valid.tolist() == [True, False, False, False]
    assert "cannot score bad" in result.reasons[1]
    assert "canonicalizer bug" in result.reasons[2]
    assert result.reasons[3] == "too long"
    np.testing.assert_array_equal(result.rewards[1:], 0)
    # failures are cached too (deterministic oracle): asking again costs nothing
    calls = oracle.calls
    oracle(["bad"])
    assert oracle.calls == calls


def test_non_string_input_is_invalid_not_a_crash():
    result = LengthOracle()([None, 3])
    assert not result.valid.any()
    assert "expected a string" in result.reasons[0]


def test_info_is_fresh_and_named():
    result = LengthOracle()(["ab"])
    a, b = result.info(0), result.info(0)
    assert a == b and a is not b and a["objectives"] is not b["objectives"]
    assert a["objectives"] == {"length": pytest.approx(0.2), "a_fraction": 0.5}
    assert a["properties"] == {"raw_length": 2.0}
