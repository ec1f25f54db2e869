"""morbench/CNS-v0: offline construction, the env contract, asset checks, the parallel cached oracle, bad input."""

from __future__ import annotations

import json
import operator
import pickle
import shutil
import time

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import morbench
from morbench.envs.cns.bbb import load_bbb_model
from morbench.envs.cns.env import ASSETS_DIR, ORACLE_MODEL, TRAIN_SMILES, CNSEnv, CNSOracle
from morbench.envs.cns.featurize import SimulatedHang
from morbench.errors import AssetError, OracleTimeoutError
from morbench.models import CONDITIONING_SLACK
from morbench.utils import check_env

ENV_ID = "morbench/CNS-v0"
REBUILD = "morbench build-assets cns"
DRUGS = [
    "CN1CCC[C@H]1c1cccnc1",  # nicotine
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",  # diazepam
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    "CN1CCN(CC1)C1=Nc2cc(Cl)ccc2Nc2ccccc21",  # clozapine
    "OC(=O)CCCCCCCCCCCCCCC",  # palmitic acid
]


@pytest.fixture(scope="module")
def env():
    environment = morbench.make(ENV_ID)
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def model():
    return load_bbb_model(ASSETS_DIR, ORACLE_MODEL)


def test_make_offline_and_check_env(env):
    task = env.unwrapped
    assert isinstance(task, CNSEnv)
    assert task.objective_names == ("qed", "sa", "bbb")
    assert task.judge is not None and task.judge is not task.oracle
    assert task.prior_path.is_dir() and (task.prior_path / "model.safetensors").is_file()
    assert task.preference_grid.shape == (10, 3)
    assert np.array_equal(task.reference_point, np.zeros(3))
    assert task.rebuild_command == REBUILD
    check_env(env)


def test_prior_tokenizer_round_trips_training_molecules(env):
    tokenizer = env.unwrapped.tokenizer
    for smiles in DRUGS[:3]:
        ids = tokenizer(smiles, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, clean_up_tokenization_spaces=False) == smiles


def test_episode_reward_matches_score(env):
    task = env.unwrapped
    smiles = DRUGS[1]
    ids = task.tokenizer(smiles, add_special_tokens=False)["input_ids"] + [task.eos_token_id]
    env.reset(seed=0)
    for token in ids:
        _, reward, terminated, truncated, info = env.step(token)
    assert terminated and not truncated
    assert info["valid"] and info["reason"] is None
    assert info["canonical"] == task.oracle.canonicalize(smiles)
    assert np.allclose(reward, task.score([smiles]).rewards[0], atol=0)
    assert reward.min() > 0.0 and reward.max() < 1.0
    assert info["properties"]["sa_score"] == pytest.approx(10 - 9 * reward[1], abs=1e-5)


def test_known_molecules_are_ranked_sensibly(env):
    result = env.unwrapped.score(DRUGS)
    assert result.valid.all()
    by_name = dict(zip(["nicotine", "diazepam", "aspirin", "clozapine", "palmitic"], result.rewards, strict=True))
    # CNS drugs cross the barrier; a long fatty acid is not drug-like
    assert by_name["diazepam"][2] > 0.5 and by_name["nicotine"][2] > 0.5 and by_name["clozapine"][2] > 0.5
    assert by_name["palmitic"][0] < by_name["diazepam"][0]
    judged = env.unwrapped.judge_score(DRUGS)
    assert np.array_equal(judged.rewards[:, :2], result.rewards[:, :2])  # QED and SA are exact and shared
    assert not np.array_equal(judged.rewards[:, 2], result.rewards[:, 2])  # an independently trained BBB model


def test_vector_env(env):
    venv = morbench.make_vec(ENV_ID, num_envs=3, autoreset_mode=AutoresetMode.DISABLED, workers=1)
    try:
        task = env.unwrapped
        rows = [task.tokenizer(s, add_special_tokens=False)["input_ids"] + [task.eos_token_id] for s in DRUGS[:3]]
        width = max(len(r) for r in rows)
        plan = np.full((3, width), task.eos_token_id, dtype=np.int64)
        for i, row in enumerate(rows):
            plan[i, : len(row)] = row
        venv.reset(seed=0)
        total = np.zeros((3, 3), dtype=np.float32)
        for t in range(width):
            _, rewards, _, _, _ = venv.step(plan[:, t])
            total += rewards
        assert venv.finished.all()
        assert np.allclose(total, task.score(DRUGS[:3]).rewards, atol=1e-6)
    finally:
        venv.close()


@pytest.mark.parametrize(
    ("smiles", "reason"),
    [
        ("", "empty"),
        ("C1CC", "cannot parse"),
        ("c1cccc1", "cannot parse"),  # cannot be kekulized
        ("CC(C", "cannot parse"),
        # text the tokenizer cannot spell (the env can never write it) is rejected before RDKit parses it
        ("CCO.Cl", "'.' at character 3 is not in CNSEnv's vocabulary"),
        ("*CC", "'*' at character 0 is not in"),
        ("C[Xx]", "'[Xx]' at character 1 is not in"),
        ("C(C)(C)(C)(C)C", "cannot parse"),  # pentavalent carbon fails sanitization
        ("hello world", "is not in CNSEnv's vocabulary"),
        ("CC[EOS]O", "special token '[EOS]' at character 2"),
        ("C" * 101, "101 tokens long; CNSEnv episodes end after 100 tokens"),
        ("C" * 601, "601 characters; CNSEnv accepts at most 600"),
    ],
)
def test_bad_input_gets_floor_reward(env, smiles, reason):
    result = env.unwrapped.score([smiles])
    assert not result.valid[0]
    assert reason in result.reasons[0]
    assert np.array_equal(result.rewards[0], np.zeros(3, dtype=np.float32))
    assert all(np.isnan(v[0]) for v in result.properties.values())


def test_special_token_inside_a_sequence_is_invalid(env):
    task = env.unwrapped
    ids = [*task.tokenizer("CCO", add_special_tokens=False)["input_ids"], task.bos_token_id, task.eos_token_id]
    result = task.score_token_ids([ids])
    assert not result.valid[0] and "special token" in result.reasons[0]
    assert np.array_equal(result.rewards[0], np.zeros(3, dtype=np.float32))


def test_non_string_and_invalid_cost_no_oracle_call(env):
    oracle = env.unwrapped.oracle
    calls = oracle.calls
    result = oracle([None, "C1CC", ""])  # type: ignore[list-item]
    assert not result.valid.any() and oracle.calls == calls


def test_oracle_determinism_batch_and_cache(model):
    first = CNSOracle(model, workers=2)
    second = CNSOracle(model, workers=0)  # in-process path
    try:
        batch = first(DRUGS)
        assert first.calls == len(DRUGS)
        single = np.stack([first(["c1ccccc1"]).rewards[0], *[second([s]).rewards[0] for s in DRUGS]])
        assert np.allclose(single[1:], batch.rewards, atol=1e-5)
        again = first([*DRUGS, DRUGS[0]])
        assert np.array_equal(again.rewards[:-1], batch.rewards)
        assert first.calls == len(DRUGS) + 1  # only benzene was new
        # another spelling of the same molecule is the same cache key
        spelled = first(["OC(=O)c1ccccc1OC(C)=O"])
        assert spelled.keys[0] == batch.keys[2] and first.calls == len(DRUGS) + 1
        assert np.array_equal(spelled.rewards[0], batch.rewards[2])
    finally:
        first.close()
        second.close()


def test_cache_hits_are_free(model):
    oracle = CNSOracle(model, workers=1)
    try:
        smiles = [f"C{'C' * n}N" for n in range(40)]
        start = time.perf_counter()
        oracle(smiles)
        first = time.perf_counter() - start
        calls = oracle.calls
        start = time.perf_counter()
        oracle(smiles)
        again = time.perf_counter() - start
        assert oracle.calls == calls
        assert again < 0.2 * first
    finally:
        oracle.close()


def test_hanging_molecule_raises_and_leaves_no_verdict(model):
    hang = SimulatedHang(frozenset({"CCCC"}))
    oracle = CNSOracle(
        model, workers=1, chunk_timeout=0.5, molecule_timeout=0.5, hang_timeout=1.0, molecule_function=hang
    )
    try:
        assert oracle(["CCO", "c1ccccc1"]).valid.all()
        calls = oracle.calls
        with pytest.raises(OracleTimeoutError, match=r"'CCCC' did not finish within 1 s even alone"):
            oracle(["CCN", "CCCC"])
        assert oracle.pool.restarts >= 1
        assert oracle.calls == calls  # nothing charged, nothing cached: no verdict about either string
        assert "CCCC" not in oracle._canonical and len(oracle.state_dict()["cache"]) == calls
    finally:
        oracle.close()
    assert not oracle.pool.running


def test_slow_molecule_on_a_loaded_machine_is_scored_not_cached_as_invalid(model):
    """A molecule that misses every pool deadline (here: 4 s of work against 0.3 s deadlines, as on a machine
    loaded by other jobs) gets the verdict RDKit computes, the same as on an idle machine; a wall-clock timeout
    used to mark it invalid and cache that."""
    slow = SimulatedHang(frozenset({"CCCC"}), seconds=4.0)
    oracle = CNSOracle(model, workers=1, chunk_timeout=0.3, molecule_timeout=0.3, molecule_function=slow)
    reference = CNSOracle(model, workers=0)
    try:
        oracle(["N"])  # start the pool, so its start-up time does not extend the deadlines below
        result = oracle(["CCO", "CCCC", "c1ccccc1"])
        assert result.valid.tolist() == [True, True, True], result.reasons
        assert oracle.pool.restarts >= 1  # the deadlines did fire
        np.testing.assert_array_equal(result.rewards, reference(["CCO", "CCCC", "c1ccccc1"]).rewards)
        assert oracle._canonical["CCCC"] == ("CCCC", None)  # what is remembered is the real verdict
    finally:
        oracle.close()


def test_worker_exceptions_do_not_escape(model):
    oracle = CNSOracle(model, workers=1, molecule_function=operator.getitem)  # raises TypeError in the worker
    try:
        result = oracle(["CCO", "CCN"])
        assert not result.valid.any()
        assert all("oracle worker failed" in reason for reason in result.reasons)
    finally:
        oracle.close()


def test_pool_is_lazy_not_pickled_and_closed(model):
    oracle = CNSOracle(model, workers=1)
    assert getattr(oracle, "_pool", None) is None  # nothing started at construction
    oracle(["CCO"])
    assert oracle.pool.running
    clone = pickle.loads(pickle.dumps(oracle))
    assert getattr(clone, "_pool", None) is None
    assert np.array_equal(clone(["CCO"]).rewards, oracle(["CCO"]).rewards)
    assert clone.calls == oracle.calls  # the cache travelled with the pickle
    oracle.close()
    clone.close()
    assert not oracle.pool.running


def test_env_close_stops_workers():
    environment = morbench.make(ENV_ID, workers=1)
    task = environment.unwrapped
    task.score(["CCO"])
    assert task.oracle.pool.running
    environment.close()
    assert not task.oracle.pool.running


def test_domain_metrics(env):
    task = env.unwrapped
    training = sorted(task.train_smiles)[:3]
    metrics = task.domain_metrics([*training, "not a molecule"])
    assert metrics["novelty"] == 0.0
    assert 0.0 < metrics["internal_diversity"] <= 1.0
    metrics = task.domain_metrics(["CCO", "CCO", "C1CC"])  # ethanol is not in ZINC250k's training subset
    assert metrics["novelty"] == 1.0 and np.isnan(metrics["internal_diversity"])
    assert np.isnan(task.domain_metrics(["", "C1CC"])["novelty"])


def _copy_assets(tmp_path):
    target = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR, target)
    return target


def test_corrupted_asset_is_named(tmp_path):
    assets = _copy_assets(tmp_path)
    path = assets / f"{ORACLE_MODEL}.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AssetError, match=rf"{ORACLE_MODEL}\.safetensors.*corrupt.*{REBUILD}"):
        CNSEnv(assets_dir=assets)


@pytest.mark.parametrize("name", [TRAIN_SMILES, "prior/model.safetensors", "MANIFEST.sha256"])
def test_missing_asset_is_named(tmp_path, name):
    assets = _copy_assets(tmp_path)
    (assets / name).unlink()
    with pytest.raises(AssetError, match=rf"{name.split('/')[-1]}.*missing.*{REBUILD}"):
        CNSEnv(assets_dir=assets)


@pytest.mark.parametrize("max_length", [0, 112, 500])
def test_max_length_is_checked(max_length):
    with pytest.raises(morbench.ConfigError, match="max_length"):
        CNSEnv(max_length=max_length)


def test_prior_context_holds_conditioning_tokens(env):
    """Rewards-in-Context needs [BOS] + K reward tokens + max_length positions; the prior keeps 16 spare."""
    task = env.unwrapped
    n_positions = json.loads((task.prior_path / "config.json").read_text())["n_positions"]
    assert task.max_length == 100
    assert task.max_length + 1 + CONDITIONING_SLACK <= n_positions
    assert task.max_prompt_length + 1 + task.reward_dim + task.max_length <= n_positions


def _prior_rollout(venv, seed: int):
    """Sample one synchronized batch of the prior through ``venv`` (deferred scoring); returns the token rows."""
    import torch

    from morbench.models import load_prior
    from morbench.sampling import prompt_tensors, sample

    task = venv.env
    venv.reset(seed=seed)

    def on_step(tokens):
        _, _, terminated, truncated, _ = venv.step(tokens)
        return terminated | truncated

    with torch.no_grad():
        generation = sample(
            load_prior(venv).eval(),
            *prompt_tensors(task, venv.current_contexts),
            task.max_length,
            eos_token_id=task.eos_token_id,
            pad_token_id=task.pad_token_id,
            generator=torch.Generator().manual_seed(seed),
            on_step=on_step,
            forbid_token_ids=list(task.forbidden_token_ids),
        )
    return [row[: int(n)] for row, n in zip(generation.tokens.numpy(), generation.lengths, strict=True)]


def test_a_deferred_rollout_prefetches_in_the_pool_and_scores_exactly_as_in_process():
    """With deferred scoring, each step hands the rows that finished to the oracle's pool (their RDKit work
    overlaps the next steps' sampling); score_finished then collects it. Rewards, verdicts, properties and the
    oracle's counters equal those of an oracle that scores the same strings in this process, at the end."""
    venv = morbench.make_vec(ENV_ID, num_envs=24, autoreset_mode=AutoresetMode.DISABLED, defer_scoring=True, workers=1)
    reference = morbench.make(ENV_ID, workers=0).unwrapped
    oracle = venv.env.oracle
    submitted, mapped = [], []
    submit, pool_map = oracle.pool.submit, oracle.pool.map
    oracle.pool.submit = lambda smiles: submitted.append(list(smiles)) or submit(smiles)
    oracle.pool.map = lambda smiles: mapped.extend(smiles) or pool_map(smiles)
    try:
        assert oracle.prefetches and not reference.oracle.prefetches
        assert not CNSOracle(reference.oracle.model, workers=1, prefetch=False).prefetches  # the switch
        for seed in (0, 1):  # the second batch repeats strings the first one cached
            tokens = _prior_rollout(venv, seed)
            pending = dict(oracle._prefetched)
            rewards, info = venv.score_finished()
            expected = reference.score_token_ids(tokens)
            assert pending and set(pending) <= set(expected.sequences)  # every prefetched string was asked for
            assert not oracle._prefetched  # ... and collected: none was parsed again at the end
            assert not set(pending) & set(mapped) and oracle.pool.restarts == 0
            np.testing.assert_array_equal(rewards, expected.rewards)
            np.testing.assert_array_equal(info["valid"], expected.valid)
            for name, values in expected.properties.items():
                np.testing.assert_array_equal(info["properties"][name], values)
            assert (oracle.calls, oracle.requests) == (reference.oracle.calls, reference.oracle.requests)
        assert len(submitted) >= 4  # several steps' worth of background tasks, not one call at the end
        assert not (~np.asarray(info["valid"])).all()
    finally:
        venv.close()
        reference.close()


def test_a_lost_or_late_background_job_is_rescored_with_the_same_verdict(model):
    """A prefetched job whose pool stopped since, or that misses its deadline (a molecule slower than the chunk
    deadline on a loaded machine), is scored again by the pool's normal path: same records, nothing lost."""
    reference = CNSOracle(model, workers=0)
    slow = SimulatedHang(frozenset({"CCCC"}), seconds=2.0)
    oracle = CNSOracle(model, workers=1, chunk_timeout=0.3, molecule_timeout=0.3, molecule_function=slow)
    try:
        oracle.prefetch(["CCO", "C1CC", "c1ccccc1"])  # C1CC: an unclosed ring, invalid
        oracle.pool.close()  # the job's processes are gone: it can never finish
        result = oracle(["CCO", "C1CC", "c1ccccc1"])
        expected = reference(["CCO", "C1CC", "c1ccccc1"])
        np.testing.assert_array_equal(result.rewards, expected.rewards)
        assert result.reasons == expected.reasons and not oracle._prefetched
        restarts = oracle.pool.restarts
        oracle.prefetch(["CCCC", "CCN"])  # CCCC takes 2 s against a 0.3 s deadline
        result = oracle(["CCN", "CCCC"])
        assert oracle.pool.restarts > restarts  # the deadline fired ...
        np.testing.assert_array_equal(result.rewards, reference(["CCN", "CCCC"]).rewards)  # ... and decided nothing
        assert result.valid.all() and not oracle._prefetched
        clone = pickle.loads(pickle.dumps(oracle))  # a copy carries no background job along
        assert "_prefetched" not in clone.__dict__
        clone.close()
    finally:
        oracle.close()
