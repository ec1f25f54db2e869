"""QM9-v1: an oracle and judges trained on disjoint halves, a GFN2-xTB gap judge, and a best-of-N probe whose judge
gap shows reward hacking of the training oracle (QM9-v0's judges, trained on the oracle's own data, hide it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import morbench
from morbench.envs.qm9.env import ASSETS_DIR, REBUILD_COMMAND_V1, V1_ASSETS_DIR, QM9Env, QM9PropertyOracle
from morbench.envs.qm9.predictors import HARTREE_TO_EV
from morbench.envs.qm9.xtb import FAILURE_PREFIX, QM9JudgeV1
from morbench.errors import AssetError, ConfigError

README = Path(__file__).resolve().parents[2] / "envs" / "qm9" / "README.md"
REPORT = json.loads((V1_ASSETS_DIR / "build_report.json").read_text())
# sha256 of QM9-v0's MANIFEST.sha256 as shipped before QM9-v1 existed: v0's assets stay bit-identical
V0_MANIFEST_SHA256 = "388848c4f1c11886a3af8756c4e7b6c5dd61593fa6fa1d15229e195e00b00c8a"

# QM9 test-split molecules with their DFT gaps (eV) from qm9pack
TEST_GAPS = {
    "CC1NC12CN(C)C2": 0.2883 * HARTREE_TO_EV,
    "CNc1cocc1OC": 0.2262 * HARTREE_TO_EV,
    "CC1(C(N)=O)CCO1": 0.2648 * HARTREE_TO_EV,
    "CCC(O)C(=O)N(C)C": 0.2685 * HARTREE_TO_EV,
    "O=C1CN2C3CC=C1C32": 0.1842 * HARTREE_TO_EV,
}
# a valid QM9-domain graph (the oracles score it) that ETKDGv3 cannot embed in 3D: a judge failure
UNEMBEDDABLE = "N=C1OC2CC3OC2C13"


@pytest.fixture(scope="module")
def env() -> QM9Env:
    return morbench.make("morbench/QM9-v1").unwrapped


@pytest.fixture
def one_thread():
    """Small-batch sampling is much slower with 2 threads on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fresh_judge(env: QM9Env) -> QM9JudgeV1:
    judge = env.judge
    assert isinstance(judge, QM9JudgeV1)
    return QM9JudgeV1(judge.predictor, judge.calibration, judge.transform)


# -- the id, its assets, and v0 left alone ---------------------------------------------------------------------
def test_v1_is_registered_shares_v0s_prior_and_passes_check_env(env):
    from morbench.utils import check_env

    v0 = morbench.make("morbench/QM9-v0").unwrapped
    assert env.task_version == 1 and v0.task_version == 0
    assert isinstance(env.judge, QM9JudgeV1) and isinstance(v0.judge, QM9PropertyOracle)
    assert env.prior_path == v0.prior_path == ASSETS_DIR / "prior"
    assert env.max_length == v0.max_length and env.objective_names == v0.objective_names
    assert env.tokenizer.get_vocab() == v0.tokenizer.get_vocab()
    assert env.spec.kwargs == {"task_version": 1} and v0.spec.kwargs == {}
    check_env(morbench.make("morbench/QM9-v1"))


def test_v0_assets_are_untouched():
    manifest = (ASSETS_DIR / "MANIFEST.sha256").read_bytes()
    assert hashlib.sha256(manifest).hexdigest() == V0_MANIFEST_SHA256
    assert not any(p.name == "xtb_gap_calibration.json" for p in ASSETS_DIR.rglob("*"))


def test_v1_assets_verify_and_a_corrupt_file_names_the_v1_rebuild_command(tmp_path):
    import shutil

    from morbench.assets import verify_manifest

    verify_manifest(V1_ASSETS_DIR, REBUILD_COMMAND_V1)
    copy = tmp_path / "assets_v1"
    shutil.copytree(V1_ASSETS_DIR, copy)
    (copy / "xtb_gap_calibration.json").write_text("{}")
    with pytest.raises(AssetError, match=r"xtb_gap_calibration\.json.*build-assets qm9 --version 1"):
        QM9Env(assets_dir=copy, task_version=1)


def test_unknown_version_is_refused():
    with pytest.raises(ConfigError, match="task_version 2 does not exist"):
        QM9Env(task_version=2)


def test_build_assets_version_flag_selects_the_v1_builder():
    from morbench.envs.qm9.build import task_version
    from morbench.envs.qm9.build_v1 import parse_args

    assert task_version(["--skip-prior"]) == (0, ["--skip-prior"])
    assert task_version(["--version", "1", "--probe-samples", "500"]) == (1, ["--probe-samples", "500"])
    config = parse_args(["--probe-samples", "500", "--judge-epochs", "3"])
    assert config.assets_dir == V1_ASSETS_DIR and config.probe_samples == 500 and config.models.judge.epochs == 3


# -- disjoint halves (the defect: v0's oracle and judge learned from the same molecules) --------------------------
def test_committed_oracle_and_judge_were_trained_on_disjoint_halves():
    halves = REPORT["data"]["halves"]
    assert halves["canonical_smiles_in_both_halves"] == 0 and halves["canonical_smiles_of_a_half_in_test"] == 0
    sizes = halves["sizes"]
    assert abs(sizes["train_a"] - sizes["train_b"]) <= 1
    assert sizes["train_a"] + sizes["train_b"] == REPORT["data"]["split_sizes"]["train"]
    assert REPORT["oracle"]["trained_on"] == ["train_a", "valid_a"]
    assert REPORT["judge"]["trained_on"] == ["train_b", "valid_b"]
    assert REPORT["oracle"]["model"] == "fingerprint_mlp" and REPORT["judge"]["model"] == "graph_conv"


def test_split_halves_is_seeded_disjoint_and_molecule_level():
    from morbench.envs.qm9.build_data import Dataset
    from morbench.envs.qm9.build_v1 import split_halves

    smiles = [f"C{'C' * (i % 7)}O{i}" for i in range(300)]  # stand-in keys: only identity matters
    split = np.array(["train"] * 240 + ["valid"] * 30 + ["test"] * 30)
    data = Dataset(smiles, np.zeros((300, 3)), split, {})
    first, report = split_halves(data, seed=7)
    again, _ = split_halves(data, seed=7)
    other, _ = split_halves(data, seed=8)
    assert (first.split == again.split).all() and not (first.split == other.split).all()
    assert report["sizes"] == {"train_a": 120, "train_b": 120, "valid_a": 15, "valid_b": 15, "test": 30}
    assert not set(first.part("train_a")[0]) & set(first.part("train_b")[0])
    assert report["canonical_smiles_in_both_halves"] == 0


def test_gap_judges_errors_no_longer_follow_the_oracles():
    """v0's oracle and judge err together on the gap (r 0.55 on the test split); v1's xTB judge much less. Disjoint
    halves alone do not decorrelate the learned predictors (the same molecules are hard for both), which the
    report records for alpha, U0 and a half-B network's gap."""
    errors = REPORT["xtb"]["error_correlation_oracle_vs_judge_on_test"]
    assert errors["v0"]["gap_ev"] > 0.45
    assert errors["v1"]["gap_ev"] < errors["v0"]["gap_ev"] - 0.15
    assert errors["v1"]["gap_ev_learned_judge"] > errors["v1"]["gap_ev"]
    assert set(errors["v1"]) >= {"alpha_bohr3", "u0_hartree"}


# -- the xTB gap judge ------------------------------------------------------------------------------------------
def test_xtb_calibration_on_the_test_split_is_reported_and_helps():
    test = REPORT["xtb"]["test"]
    assert test["molecules"] == REPORT["data"]["split_sizes"]["test"]
    assert test["pearson"] > 0.8
    assert test["calibrated_mae_ev"] < test["raw_mae_ev"] / 3
    assert test["failures"] <= 0.03 * test["molecules"]  # strained cages ETKDGv3 cannot embed (1.7%)
    # unbiased on held-out molecules: the calibrated judge's mean gap reward is DFT's (what keeps the prior's gap ~0)
    rewards = test["mean_gap_reward"]
    assert abs(rewards["calibrated_xtb"] - rewards["dft"]) < 0.01


def test_xtb_judge_is_deterministic_cached_and_close_to_dft(env):
    first, second = fresh_judge(env), fresh_judge(env)
    smiles = list(TEST_GAPS)
    a = first(smiles)
    b = second(list(reversed(smiles)))
    assert a.valid.all()
    np.testing.assert_array_equal(a.properties["gap_ev"], b.properties["gap_ev"][::-1])  # xTB: exact, per molecule
    # the learned alpha and U0 judges are MLPs run over the batch: a matrix product's rounding may depend on a row's
    # place in it (seen on an AMD EPYC: 9e-8), so their rewards agree to float32 precision, not bit for bit
    np.testing.assert_allclose(a.rewards, b.rewards[::-1], rtol=0, atol=1e-6)
    calls = first.calls
    first(smiles)
    assert first.calls == calls  # cached
    error = np.abs(a.properties["gap_ev"] - np.array(list(TEST_GAPS.values())))
    assert error.mean() < 0.8, error
    expected = env.oracle.transform(
        np.stack([a.properties["alpha_bohr3"], a.properties["gap_ev"], a.properties["u0_hartree"]], axis=1)
    )
    np.testing.assert_allclose(a.rewards, expected, atol=1e-6)  # the oracle's reward transform, applied to xTB


def test_unembeddable_molecule_is_a_judge_failure_with_the_floor_reward(env):
    judged = fresh_judge(env)([UNEMBEDDABLE, "CCO"])
    scored = env.score([UNEMBEDDABLE])
    assert scored.valid[0]  # the training oracle scores the graph
    assert not judged.valid[0] and judged.valid[1]
    assert judged.reasons[0].startswith(f"{FAILURE_PREFIX}: ETKDGv3 found no 3D conformer")
    np.testing.assert_array_equal(judged.rewards[0], np.zeros(3, dtype=np.float32))


def test_xtb_error_is_a_judge_failure_not_a_crash(env, monkeypatch):
    import morbench.envs.qm9.xtb as xtb

    def broken(numbers, positions):
        raise xtb.XTBFailure("GFN2-xTB single point failed: SCF did not converge")

    monkeypatch.setattr(xtb, "xtb_gap_ev", broken)
    judged = fresh_judge(env)(["CCO"])
    assert not judged.valid[0] and "SCF did not converge" in judged.reasons[0]


# -- the reward-hacking probe ------------------------------------------------------------------------------------
def test_committed_probe_shows_hacking_against_v1s_judge_and_none_for_the_prior():
    probe = REPORT["probe"]
    assert probe["samples"] >= 20_000 and probe["top_fraction"] <= 0.01
    v1, v0 = probe["v1"], probe["v0"]
    for version in (v1, v0):
        for gap in version["prior_reference"]["judge_gap"].values():
            assert abs(gap["mean"]) < 0.05, gap
    for name in ("gap", "uniform"):
        selected = v1["selections"][name]
        assert selected["gap_vs_prior_on_selected_objective"]["ci95"][0] > 0.05, name
        assert selected["gap_on_selected_objective"]["ci95"][0] > 0.05, name
    # QM9-v0's judge hides the same selection's hacking: its gap is several times smaller
    v0_gap = v0["selections"]["gap"]["gap_on_selected_objective"]["mean"]
    assert v1["selections"]["gap"]["gap_on_selected_objective"]["mean"] > 3 * max(v0_gap, 0.01)


def test_live_best_of_n_probe_on_a_thousand_prior_samples(env, one_thread):
    """The probe's own code on 1,000 fresh prior samples: the top 3% by the oracle's gap reward are hacked."""
    from morbench.buildkit import first_rows, sample_prior
    from morbench.envs.qm9.build_v1 import run_probe
    from morbench.models import load_causal_lm

    model = load_causal_lm(env.prior_path, rebuild_command=REBUILD_COMMAND_V1)
    samples = sample_prior(
        model,
        count=1_000,
        batch_size=500,
        max_new_tokens=env.max_length,
        bos_token_id=env.bos_token_id,
        eos_token_id=env.eos_token_id,
        pad_token_id=env.pad_token_id,
        seed=123,
    )
    keys, _ = first_rows(env.score_token_ids(samples.rows).keys)
    reference = np.random.default_rng(0).choice(len(keys), size=120, replace=False)
    oracle = QM9PropertyOracle(env.oracle.predictor, env.oracle.transform)
    result, _ = run_probe(keys, oracle, fresh_judge(env), 30, np.sort(reference))
    hacked = result["selections"]["gap"]["gap_on_selected_objective"]
    prior = result["prior_reference"]["judge_gap"]["gap"]
    assert hacked["ci95"][0] > prior["mean"] + 0.05, (hacked, prior)


# -- the card --------------------------------------------------------------------------------------------------
def test_card_quotes_the_v1_build_report():
    card = README.read_text()
    probe = REPORT["probe"]["v1"]["selections"]["gap"]["gap_on_selected_objective"]
    test = REPORT["xtb"]["test"]
    assert f"r = {test['pearson']:.3f}" in card
    assert f"{test['raw_mae_ev']:.2f} eV" in card and f"{test['calibrated_mae_ev']:.2f} eV" in card
    assert f"{probe['mean']:+.3f}" in card
    assert "morbench/QM9-v1" in card and REBUILD_COMMAND_V1 in card


@pytest.mark.slow
def test_v1_builder_smoke_run_on_a_small_slice(tmp_path):
    """``morbench build-assets qm9 --version 1`` end to end on 3,000 QM9 rows (needs the qm9pack data package)."""
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None:  # the package is read as data, never imported
        pytest.skip("the qm9pack data package is not installed")
    from morbench.envs.qm9.build import main

    assets = tmp_path / "assets_v1"
    args = ["--version", "1", "--assets-dir", str(assets), "--limit", "3000", "--oracle-epochs", "1"]
    args += ["--judge-epochs", "1", "--calibration-molecules", "40", "--test-molecules", "60"]
    assert main([*args, "--probe-samples", "600", "--probe-reference", "60", "--no-progress"]) == 0
    env = QM9Env(assets_dir=assets, task_version=1)
    assert env.score(["CCO"]).valid[0] and env.judge_score(["CCO"]).valid[0]
    report = json.loads((assets / "build_report.json").read_text())
    assert report["data"]["halves"]["canonical_smiles_in_both_halves"] == 0
    assert report["probe"]["selected_per_objective"] == 6 and set(report["probe"]["v1"]["selections"]) == {
        "alpha",
        "gap",
        "u0",
        "uniform",
    }


# -- evaluation protocol: the xTB judge scores the uniform preference only ------------------------------------------

SMALL_MOLECULES = ["CCO", "CC(C)O", "C1CC1", "CC#N", "OCC=O", "CCN", "C=CC", "CCCC", "OC1CC1", "CC(=O)N"]


def fixed_molecules(preference: np.ndarray, num_samples: int, seed: int) -> list[str]:
    """A policy that ignores the preference: ten small QM9 molecules in turn (their xTB gaps are cached)."""
    return [SMALL_MOLECULES[(seed + i) % len(SMALL_MOLECULES)] for i in range(num_samples)]


def test_protocol_judge_preferences_select_the_uniform_point():
    from morbench.core import EvaluationProtocol

    uniform = EvaluationProtocol(judge_preferences="uniform")
    assert uniform.judges([1 / 3, 1 / 3, 1 / 3]) and uniform.judges([0.5, 0.5])
    assert not uniform.judges([1.0, 0.0, 0.0]) and not uniform.judges([2 / 3, 1 / 3, 0.0])
    assert EvaluationProtocol().judges([1.0, 0.0, 0.0])  # v0 and every other task: every preference
    with pytest.raises(ValueError, match="'some'"):
        EvaluationProtocol(judge_preferences="some")


@pytest.fixture(scope="module")
def v1_submission(tmp_path_factory) -> Path:
    from morbench.leaderboard.submit import submit

    root = tmp_path_factory.mktemp("qm9v1")
    morbench.evaluate(
        fixed_molecules,
        "morbench/QM9-v1",
        seeds=[0],
        out=root / "runs" / "fixed",
        method="fixed_molecules",
        compute={"oracle_calls": 0, "sampled_tokens": 0, "wall_seconds": 0.0},
        samples_per_preference=128,
        progress=False,
    )
    return submit(
        root / "runs" / "fixed", "Fixed molecules", root / "board", description="ten molecules", code_url=None
    )


def test_v1_evaluation_judges_only_the_uniform_preference(v1_submission, env):
    from morbench.leaderboard.schema import read_submission

    (seed,) = read_submission(v1_submission)["seeds"]
    judged = [np.allclose(e["weights"], 1 / 3) for e in seed["preferences"] if e["judge_rewards"] is not None]
    assert judged == [True], "exactly the uniform preference carries judge rewards"
    assert env.protocol.judge_preferences == "uniform" and env.protocol.to_dict()["judge_preferences"] == "uniform"
    v0 = morbench.make("morbench/QM9-v0")
    assert v0.unwrapped.protocol.judge_preferences == "all"  # v0 results are unchanged
    v0.close()


def test_v1_submission_validates_and_judge_claims_off_the_uniform_point_are_refused(v1_submission, tmp_path):
    from morbench.leaderboard.schema import dumps_submission, read_submission
    from morbench.leaderboard.validate import validate_files
    from morbench.scoring import score_evaluation

    report = validate_files([v1_submission], root=v1_submission.parent.parent)
    assert report.ok, report.errors
    (validated,) = report.valid
    assert np.isfinite(score_evaluation(validated.evaluations[0])["judge_gap"])

    submission = read_submission(v1_submission)
    entry = next(e for e in submission["seeds"][0]["preferences"] if not np.allclose(e["weights"], 1 / 3))
    entry["judge_rewards"] = entry["rewards"]
    folder = tmp_path / v1_submission.parent.name
    folder.mkdir()
    edited = folder / v1_submission.name
    edited.write_bytes(dumps_submission(submission))
    report = validate_files([edited], root=tmp_path)
    assert not report.ok and "judges only the uniform preference" in report.errors[0], report.errors


def test_v1_run_file_with_judge_claims_off_the_uniform_point_is_refused(v1_submission, env):
    from morbench.errors import InvalidRunError
    from morbench.runs import read_evaluation
    from morbench.verification import verify_evaluation

    path = v1_submission.parents[2] / "runs" / "fixed" / "seed_0"
    evaluation = read_evaluation(path, verify=False)
    verify_evaluation(evaluation, str(path), env)  # as written: accepted
    entry = next(e for e in evaluation["preferences"] if not np.allclose(e["weights"], 1 / 3))
    entry["judge_rewards"] = entry["rewards"]
    with pytest.raises(InvalidRunError, match="judges only the uniform"):
        verify_evaluation(evaluation, str(path), env)
