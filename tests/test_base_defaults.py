"""What the base classes carry so that envs do not restate it: reward bounds, protocol defaults, pareto_front,
close(), the asset-verification helper, and the pool handling that lives in the CNS oracle, not in core."""

import functools
import pickle

import numpy as np
import pytest

import morbench
from morbench.assets import MANIFEST_NAME, asset_loading, verify_assets, write_manifest
from morbench.core import EvaluationProtocol, Oracle, OracleEvaluation, TokenEnv
from morbench.errors import AssetError, ConfigError


class LengthOracle(Oracle):
    objective_names = ("length", "twice")

    def __init__(self):
        super().__init__()
        self.closed = 0

    def evaluate(self, keys, contexts):
        lengths = np.array([len(k) for k in keys], dtype=np.float64)
        return OracleEvaluation(rewards=np.stack([lengths / 10, lengths / 5], axis=1))

    def close(self):
        self.closed += 1


def test_oracle_bounds_default_to_the_unit_interval_per_objective():
    oracle = LengthOracle()
    for bound, value in ((oracle.reward_low, 0.0), (oracle.reward_high, 1.0)):
        assert bound.dtype == np.float32 and bound.shape == (2,) and np.all(bound == value)
    np.testing.assert_array_equal(oracle.floor, [0.0, 0.0])
    # rewards are clipped to the default bounds: 8 letters give 0.8 and min(1.6, 1) = 1
    np.testing.assert_array_equal(oracle(["abcdefgh"]).rewards, np.array([[0.8, 1.0]], dtype=np.float32))


def test_oracle_bounds_set_by_a_subclass_replace_the_default():
    oracle = LengthOracle()
    oracle.reward_low = [-1.0, 0.0]
    oracle.reward_high = [2.0, 3.0]
    assert oracle.reward_low.dtype == np.float32
    np.testing.assert_array_equal(oracle.floor, [-1.0, 0.0])
    np.testing.assert_array_equal(oracle(["abcdefghijkl"]).rewards, np.array([[1.2, 2.4]], dtype=np.float32))


def test_dead_cache_size_is_gone():
    assert not hasattr(Oracle, "cache_size")


# Summarize-v0 is the same class and oracle as Summarize-tiny-v0 (whose prior is the only difference)
@pytest.mark.parametrize("env_id", [e for e in morbench.list_envs() if e != "morbench/Summarize-v0"])
def test_every_env_uses_the_default_unit_bounds_and_its_protocol(env_id):
    with morbench.make(env_id, **({"workers": 0} if "CNS" in env_id else {})) as env:
        task = env.unwrapped
        np.testing.assert_array_equal(task.reward_space.low, np.zeros(task.reward_dim, dtype=np.float32))
        np.testing.assert_array_equal(task.reward_space.high, np.ones(task.reward_dim, dtype=np.float32))
        expected = {
            "Motifs": EvaluationProtocol(samples_per_preference=512),
            "Summarize": EvaluationProtocol(samples_per_preference=100, context_split="test"),
        }.get(env_id.split("/")[1].split("-")[0], EvaluationProtocol(1024, 1.0, 1.0, (0, 1, 2), None))
        if env_id == "morbench/QM9-v1":  # its xTB judge scores the uniform preference only (about 35 molecules/s)
            expected = EvaluationProtocol(judge_preferences="uniform")
        assert task.protocol == expected


def test_pareto_front_is_declared_on_every_env_and_known_only_for_motifs():
    assert TokenEnv.pareto_front is not None
    assert morbench.make("morbench/Motifs-v0").unwrapped.pareto_front().shape == (15, 3)
    assert morbench.make("morbench/QM9-v0").unwrapped.pareto_front() is None


def test_env_close_closes_oracle_and_judge():
    task = morbench.make("morbench/Motifs-v0").unwrapped
    task.oracle, task.judge = LengthOracle(), LengthOracle()
    task.close()
    assert (task.oracle.closed, task.judge.closed) == (1, 1)


def test_oracle_base_pickles_every_attribute():
    """The base class used to drop any attribute whose name starts with ``_pool`` (a CNS detail) from every
    oracle it pickled; only the CNS oracle drops its pool now."""
    oracle = LengthOracle()
    oracle._pool_size_hint = 3
    assert pickle.loads(pickle.dumps(oracle))._pool_size_hint == 3


def _assets(tmp_path):
    directory = tmp_path / "assets"
    (directory / "prior").mkdir(parents=True)
    (directory / "task.json").write_text("{}")
    (directory / "prior" / "model.bin").write_bytes(b"weights")
    write_manifest(directory / "prior")
    write_manifest(directory, ["task.json"])
    return directory


def test_verify_assets_returns_the_directory_and_checks_nested_manifests(tmp_path):
    directory = _assets(tmp_path)
    assert verify_assets(str(directory), "build it", ["task.json", "prior/model.bin"]) == directory
    (directory / "prior" / "model.bin").write_bytes(b"Weights")
    with pytest.raises(AssetError, match=r"model\.bin is corrupt.*`build it`"):
        verify_assets(directory, "build it")


def test_verify_assets_names_a_missing_directory_or_required_file(tmp_path):
    with pytest.raises(AssetError, match=r"asset directory .*nowhere is missing.*`build it`"):
        verify_assets(tmp_path / "nowhere", "build it")
    directory = _assets(tmp_path)
    with pytest.raises(AssetError, match=r"prior/config\.json is missing.*`build it`"):
        verify_assets(directory, "build it", ["task.json", "prior/config.json"])
    (directory / MANIFEST_NAME).unlink()
    with pytest.raises(AssetError, match=r"MANIFEST\.sha256 is missing.*`build it`"):
        verify_assets(directory, "build it")


def test_asset_loading_turns_load_failures_into_asset_errors_and_keeps_ours():
    missing = r"could not load the model \(KeyError: 'n_positions'\).*`build it`"
    with pytest.raises(AssetError, match=missing), asset_loading("the model", "build it"):
        {}["n_positions"]
    with pytest.raises(ConfigError, match="as it was"), asset_loading("the model", "build it"):
        raise ConfigError("as it was")


class Loading(LengthOracle):
    not_pickled = ("model",)
    loads = 0

    @functools.cached_property
    def model(self):
        type(self).loads += 1
        return object()


def test_lazy_attributes_named_not_pickled_are_loaded_again_by_a_copy():
    oracle = Loading()
    assert oracle.model is oracle.model and Loading.loads == 1
    clone = pickle.loads(pickle.dumps(oracle))
    assert "model" not in clone.__dict__ and clone.closed == 0  # the rest of the state is copied
    assert clone.model is not oracle.model and Loading.loads == 2
