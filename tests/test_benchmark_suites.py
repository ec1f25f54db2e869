"""The suites' budgets follow the budget rules: 5 seeds, budgets every method can fill to 90-100%, fair MORLHF."""

import pytest

from morbench.baselines import build_config
from morbench.benchmark import SUITES, suite_jobs
from morbench.errors import ConfigError
from morbench.registry import make

PPO_METHODS = ("iterative_rs", "rewarded_soups", "morlhf")


@pytest.mark.parametrize("suite", ["quick", "small", "standard"])
def test_ranked_suites_have_five_seeds(suite):
    assert all(entry.seeds == (0, 1, 2, 3, 4) for entry in SUITES[suite])


@pytest.mark.parametrize("suite", sorted(set(SUITES) - {"smoke"}))  # smoke: seconds, for the tests, not ranked
def test_every_budget_leaves_at_most_10_percent_unspent(suite):
    """A PPO run stops when the next worst-case iteration no longer fits; IterativeRS gives the K experts of a round
    equal iterations, so it may leave up to K worst-case iterations: the budget must hold at least 10 times that."""
    for entry in SUITES[suite]:
        task = make(entry.env_id, **entry.env_kwargs).unwrapped
        for method in set(entry.methods) & set(PPO_METHODS):
            config = build_config(method, entry.overrides.get(method, {}))
            worst = config.ppo.batch_size * task.max_length
            unit = worst * (task.reward_dim if method == "iterative_rs" else 1)
            assert entry.sampled_tokens >= 10 * unit, (suite, entry.env_id, method, entry.sampled_tokens / unit)
        if "rewards_in_context" in entry.methods:  # budget-filling: no fixed number of online rounds
            config = build_config("rewards_in_context", entry.overrides.get("rewards_in_context", {}))
            assert config.online_iterations is None
            assert entry.sampled_tokens >= 10 * config.batch_size * task.max_length
        if "morlhf" in entry.methods:  # the headline MORLHF splits its budget over K + 1 trained preferences
            assert build_config("morlhf", entry.overrides.get("morlhf", {})).preferences == "anchors"


def test_the_compute_convention_is_a_suite_option(tmp_path):
    assert {job.convention for job in suite_jobs("quick", tmp_path)} == {"total"}
    jobs = suite_jobs("quick", tmp_path, convention="per_expert")
    assert {job.convention for job in jobs} == {"per_expert"}
    with pytest.raises(ConfigError, match="convention"):
        suite_jobs("quick", tmp_path, convention="per_policy")
