"""The oracle contract: batched, cached by canonical key, PMO call counting, floor reward, budgets, isolation."""

import re

import numpy as np
import pytest

import morbench
from morbench.core import InputCheck, InvalidSequence, Oracle, OracleEvaluation
from morbench.errors import ConfigError, OracleBudgetExhausted, OracleStateError, OracleTimeoutError
from morbench.tokenization import build_word_level_tokenizer


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


# -- budgets cannot be bypassed ----------------------------------------------------------------------------------
def test_budget_is_read_only_after_construction():
    oracle = LengthOracle(budget=2)
    with pytest.raises(ConfigError, match=r"oracle\.budget is fixed"):
        oracle.budget = None
    with pytest.raises(ConfigError, match=r"oracle\.budget is fixed"):
        oracle.budget = 10**9
    assert oracle.budget == 2
    oracle(["a", "b"])
    with pytest.raises(OracleBudgetExhausted):
        oracle(["c"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"calls": -100}, "calls=-100"),
        ({"calls": 1.5}, "calls=1.5"),
        ({"calls": "1"}, "calls='1'"),
        ({"calls": True}, "calls=True"),
        ({"requests": -1}, "requests=-1"),
        ({"budget": None}, "saved with budget None"),
        ({"budget": 10**6}, "saved with budget 1000000"),
        ({"calls": 3, "requests": 9}, "calls must be"),  # more calls than the budget of 2
        ({"requests": 0}, "calls must be"),  # fewer requests than calls
        ({"cache": [["a", [0.1], {}, None]]}, "entry 0"),  # a reward row of the wrong width
        ({"cache": "x"}, "cache must be a list"),
    ],
)
def test_load_state_dict_rejects_bad_counters_and_a_replaced_budget(change, message):
    source = LengthOracle(budget=2)
    source(["a", "b"])
    state = {**source.state_dict(), **change}
    oracle = LengthOracle(budget=2)
    with pytest.raises(OracleStateError, match=re.escape(message)):
        oracle.load_state_dict(state)
    assert (oracle.calls, oracle.requests, oracle.budget, len(oracle.state_dict()["cache"])) == (
        0,
        0,
        2,
        0,
    )  # nothing restored


def test_load_state_dict_round_trips_and_rejects_a_non_dict():
    source = LengthOracle(budget=5)
    source(["a", "bb", "a"])
    oracle = LengthOracle(budget=5)
    oracle.load_state_dict(source.state_dict())
    assert (oracle.calls, oracle.requests, len(oracle.state_dict()["cache"])) == (2, 3, 2)
    with pytest.raises(OracleStateError, match="must be a dict"):
        oracle.load_state_dict([])


def test_morbench_errors_from_an_oracle_are_raised_not_cached_as_invalid():
    class TimingOut(LengthOracle):
        def evaluate(self, keys, contexts):
            raise OracleTimeoutError("did not finish")

    oracle = TimingOut()
    with pytest.raises(OracleTimeoutError):
        oracle(["abc"])
    assert oracle.calls == 0 and len(oracle.state_dict()["cache"]) == 0


# -- the input check: bounds and tokenizer-level validity before parsing -----------------------------------------
def test_input_check_rejects_long_text_and_special_or_unknown_tokens_before_canonicalize():
    tokenizer = build_word_level_tokenizer(list("ab"), ".")
    oracle = LengthOracle()
    seen = []
    original = oracle.canonicalize
    oracle.canonicalize = lambda s, c=None: seen.append(s) or original(s, c)
    oracle.input_check = InputCheck(tokenizer, [0, 1, 2, 3], max_characters=7, max_tokens=4, task="Demo")
    result = oracle(["ab", "a" * 8, "ab[EOS]", "a[PAD]", "abz", "aaaaa", "", 7])
    assert result.valid.tolist() == [True] + [False] * 7
    assert "8 characters; Demo accepts at most 7" in result.reasons[1]
    assert "special token '[EOS]' at character 2" in result.reasons[2]
    assert "special token '[PAD]'" in result.reasons[3]
    assert "'z' at character 2 is not in Demo's vocabulary" in result.reasons[4]
    assert "5 tokens long; Demo episodes end after 4 tokens" in result.reasons[5]
    assert result.reasons[6] == "empty sequence" and "expected a string" in result.reasons[7]
    assert seen == ["ab", ""]  # nothing over the bounds or with a forbidden token reached the oracle


def test_env_input_bounds_admit_every_sequence_its_episodes_can_write():
    task = morbench.make("morbench/Motifs-v0").unwrapped
    letters = [i for i in range(task.vocab_size) if i not in task.forbidden_token_ids and i != task.eos_token_id]
    rng = np.random.default_rng(0)
    rows = [rng.choice(letters, size=rng.integers(1, task.max_length + 1)) for _ in range(200)]
    sequences, reasons = task.decode_token_ids(rows)
    assert all(reason is None for reason in reasons)
    assert all(reason is None for reason in task.oracle.screen(sequences))
    assert task.oracle.input_check is task.input_check


def test_input_check_turns_a_lone_surrogate_into_a_reason():
    task = morbench.make("morbench/Motifs-v0").unwrapped
    result = task.score(["A\ud800B"])  # JSON can carry "\ud800": evaluation files and submissions reach score()
    assert not result.valid[0]
    assert result.reasons[0] == "the text is not valid Unicode: lone surrogate U+D800 at character 1"
