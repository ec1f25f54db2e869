"""QM9: shipped assets load offline and verify, bad molecules get the floor reward, the oracle is deterministic."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import morbench
from morbench.envs.qm9.env import ASSETS_DIR, REBUILD_COMMAND, QM9Env, QM9PropertyOracle
from morbench.envs.qm9.molecules import (
    DESCRIPTOR_NAMES,
    FINGERPRINT_BITS,
    canonical_qm9_smiles,
    composition,
    fingerprint_features,
    split_of,
)
from morbench.envs.qm9.predictors import HARTREE_TO_EV
from morbench.errors import AssetError
from morbench.models import load_prior
from morbench.sampling import bos_prompts, sample
from morbench.utils import check_env

README = Path(__file__).resolve().parents[2] / "envs" / "qm9" / "README.md"
REPORT = json.loads((ASSETS_DIR / "build_report.json").read_text())

# QM9 test-split molecules with their DFT labels from qm9pack (alpha bohr^3, gap eV, U0 hartree)
TEST_MOLECULES = {
    "CC1NC12CN(C)C2": (77.13, 0.2883 * HARTREE_TO_EV, -345.13384),
    "CNc1cocc1OC": (75.79, 0.2262 * HARTREE_TO_EV, -439.083802),
    "CC1(C(N)=O)CCO1": (63.84, 0.2648 * HARTREE_TO_EV, -401.024646),
    "CCC(O)C(=O)N(C)C": (80.89, 0.2685 * HARTREE_TO_EV, -441.518582),
    "O=C1CN2C3CC=C1C32": (74.54, 0.1842 * HARTREE_TO_EV, -400.697723),
}


@pytest.fixture(scope="module")
def env() -> QM9Env:
    return QM9Env()


def fresh_oracle(env: QM9Env) -> QM9PropertyOracle:
    return QM9PropertyOracle(env.oracle.predictor, env.oracle.transform)


def test_make_works_offline_and_check_env_passes():
    env = morbench.make("morbench/QM9-v0")
    task = env.unwrapped
    assert isinstance(task, QM9Env)
    assert task.objective_names == ("alpha", "gap", "u0")
    assert task.reward_dim == 3 and task.preference_grid.shape == (10, 3)
    np.testing.assert_array_equal(task.reference_point, np.zeros(3))
    assert task.max_length == REPORT["prior"]["max_length"]
    assert task.protocol.samples_per_preference == 1024 and task.protocol.seeds == (0, 1, 2)
    check_env(env)


def test_assets_verify_and_match_the_build_report():
    from morbench.assets import verify_manifest

    verify_manifest(ASSETS_DIR, REBUILD_COMMAND)
    sizes = REPORT["data"]["split_sizes"]
    assert sizes["train"] > 100_000 and sizes["valid"] > 12_000 and sizes["test"] > 12_000
    total = sum(p.stat().st_size for p in ASSETS_DIR.rglob("*") if p.is_file())
    assert total < 12 * 2**20, f"assets take {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", ["oracle_mlp.safetensors", "prior/model.safetensors", "reward_transforms.json"])
def test_corrupted_asset_raises_naming_file_and_rebuild_command(tmp_path, name):
    copy = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR, copy)
    path = copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AssetError, match=re.escape(str(path))) as info:
        QM9Env(assets_dir=copy)
    assert REBUILD_COMMAND in str(info.value) and "corrupt" in str(info.value)


@pytest.mark.parametrize("name", ["judge_gnn.json", "train_smiles.txt.gz", "MANIFEST.sha256"])
def test_missing_asset_raises_naming_file_and_rebuild_command(tmp_path, name):
    copy = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR, copy)
    (copy / name).unlink()
    with pytest.raises(AssetError, match=re.escape(name)) as info:
        QM9Env(assets_dir=copy)
    assert REBUILD_COMMAND in str(info.value)


def test_oracle_is_deterministic_batch_consistent_and_cached(env):
    molecules = ["CC(=O)OC1CC1", "c1ccoc1C#N", "OCC(F)(F)C=O", "CC1=CC(=O)NC1=O", "C#CC(C)(O)CN"]
    first, second = fresh_oracle(env)(molecules), fresh_oracle(env)(molecules)
    assert first.valid.all()
    np.testing.assert_array_equal(first.rewards, second.rewards)
    single = np.concatenate([fresh_oracle(env)([m]).rewards for m in molecules])
    np.testing.assert_allclose(single, first.rewards, atol=1e-5)
    oracle = fresh_oracle(env)
    oracle(molecules)
    assert oracle.calls == len(molecules)
    again = oracle([*reversed(molecules), "O=C(C)OC1CC1"])  # a different SMILES of the first molecule
    assert oracle.calls == len(molecules)
    np.testing.assert_array_equal(again.rewards[-1], first.rewards[0])


def test_predictions_are_close_to_dft_labels_of_test_molecules(env):
    assert all(split_of(canonical_qm9_smiles(s)) == "test" for s in TEST_MOLECULES)
    truth = np.array(list(TEST_MOLECULES.values()))
    for scorer in (env.oracle, env.judge):
        result = scorer(list(TEST_MOLECULES))
        predicted = np.stack([result.properties[n] for n in ("alpha_bohr3", "gap_ev", "u0_hartree")], axis=1)
        np.testing.assert_allclose(predicted[:, 0], truth[:, 0], atol=4.0)  # bohr^3
        np.testing.assert_allclose(predicted[:, 1], truth[:, 1], atol=0.8)  # eV
        np.testing.assert_allclose(predicted[:, 2], truth[:, 2], atol=0.05)  # hartree


# the oracle's descriptor columns of four molecules that exercise every count (charges, spiro and 7+ rings, sp
# atoms, aromatic bonds), written out by hand from their structures: a faster featurizer must give exactly these
KNOWN_DESCRIPTORS = {
    "[NH3+]CC(=O)[O-]": dict(count_C=2, count_N=1, count_O=2, count_H=5, heavy_atoms=5, positive_atoms=1,
                             negative_atoms=1, single_bonds=3, double_bonds=1, sp2_atoms=3, sp3_atoms=2,
                             rotatable_bonds=1, fraction_csp3=0.5),
    "C1CC2(C1)CC2": dict(count_C=6, count_H=10, heavy_atoms=6, rings=2, ring_size_3=1, ring_size_4=1, single_bonds=7,
                         sp3_atoms=6, ring_atoms=6, spiro_atoms=1, fraction_csp3=1.0),
    "N#Cc1ccoc1": dict(count_C=5, count_N=1, count_O=1, count_H=3, heavy_atoms=7, rings=1, aromatic_rings=1,
                       ring_size_5=1, single_bonds=1, triple_bonds=1, aromatic_bonds=5, sp_atoms=2, sp2_atoms=5,
                       ring_atoms=5),
    "C1CCCCCCC1": dict(count_C=8, count_H=16, heavy_atoms=8, rings=1, ring_size_7_plus=1, single_bonds=8, sp3_atoms=8,
                       ring_atoms=8, fraction_csp3=1.0),
}  # fmt: skip


def test_oracle_descriptors_of_known_molecules_are_exact():
    from rdkit import Chem

    mols = [Chem.MolFromSmiles(smiles) for smiles in KNOWN_DESCRIPTORS]
    features = fingerprint_features(mols)
    for row, (smiles, nonzero) in zip(features, KNOWN_DESCRIPTORS.items(), strict=True):
        expected = [float(nonzero.get(name, 0)) for name in DESCRIPTOR_NAMES]
        assert row[FINGERPRINT_BITS:].tolist() == expected, smiles
        assert row[:FINGERPRINT_BITS].min() >= 0 and row[:FINGERPRINT_BITS].max() > 0, smiles  # log1p of counts
    np.testing.assert_array_equal(composition(mols), features[:, FINGERPRINT_BITS : FINGERPRINT_BITS + 5])
    assert composition([]).shape == (0, 5)
    assert fingerprint_features([]).shape == (0, FINGERPRINT_BITS + len(DESCRIPTOR_NAMES))


def test_reward_transforms_point_the_documented_way(env):
    transform = env.oracle.transform
    alpha = transform(np.array([[50.0, 5.0, -400.0], [90.0, 5.0, -400.0]]))[:, 0]
    assert alpha[1] > alpha[0]
    u0 = transform(np.array([[75.0, 5.0, -300.0], [75.0, 5.0, -500.0]]))[:, 2]
    assert u0[1] > u0[0]
    gap = transform(np.array([[75.0, g, -400.0] for g in (3.0, 4.0, 5.0, 6.0, 7.0)]))[:, 1]
    np.testing.assert_allclose(gap, np.exp(-0.5 * np.array([4.0, 1.0, 0.0, 1.0, 4.0])), rtol=1e-9)
    shifted = QM9Env(gap_target_ev=7.0).oracle.transform
    assert shifted(np.array([[75.0, 7.0, -400.0]]))[0, 1] == pytest.approx(1.0)


BAD_MOLECULES = {
    "unparsable": ("C1CC(", "cannot parse"),
    "empty": ("", "empty"),
    "fragments": ("CCO.O", "fragments"),
    "sulfur": ("CCS", "element"),
    "chlorine": ("CCCl", "element"),
    "too many heavy atoms": ("CCCCCCCCCC", "heavy atoms"),
    "radical": ("[CH3]", "radical"),
    "net charge": ("C[NH3+]", "net charge"),
    "isotope": ("[13CH4]", "isotope"),
    "no heavy atom": ("[H][H]", "no heavy atom"),
}


@pytest.mark.parametrize("case", sorted(BAD_MOLECULES))
def test_bad_molecules_get_the_floor_reward_and_a_reason(env, case):
    smiles, reason = BAD_MOLECULES[case]
    oracle = fresh_oracle(env)
    result = oracle([smiles])
    assert not result.valid[0]
    np.testing.assert_array_equal(result.rewards[0], np.zeros(3, dtype=np.float32))
    assert reason in result.reasons[0]
    assert oracle.calls == 0
    assert all(np.isnan(v[0]) for v in result.properties.values())


def test_zwitterions_and_nine_heavy_atoms_are_valid(env):
    result = fresh_oracle(env)(["[NH3+]CC(=O)[O-]", "CCCCCCCCC"])
    assert result.valid.all()


def test_special_token_inside_an_episode_is_invalid(env):
    tokenizer = env.tokenizer
    ids = tokenizer("CC", add_special_tokens=False)["input_ids"] + [env.bos_token_id, env.eos_token_id]
    env.reset(seed=0)
    for token in ids:
        _, reward, terminated, truncated, info = env.step(token)
    assert terminated and not info["valid"] and "special token" in info["reason"]
    np.testing.assert_array_equal(reward, np.zeros(3, dtype=np.float32))


def test_episode_reward_matches_sequence_score(env):
    smiles = "OC1COC1C#N"
    env.reset(seed=0)
    for token in [*env.tokenizer(smiles, add_special_tokens=False)["input_ids"], env.eos_token_id]:
        _, reward, terminated, _, info = env.step(token)
    assert terminated and info["valid"] and info["sequence"] == smiles
    np.testing.assert_allclose(reward, env.score([smiles]).rewards[0])
    assert set(info["properties"]) == {"alpha_bohr3", "gap_ev", "u0_hartree"}


def test_vector_env_scores_finished_rows_together():
    venv = morbench.make_vec("morbench/QM9-v0", num_envs=3, autoreset_mode="Disabled")
    task = venv.unwrapped
    plans = [task.tokenizer(s, add_special_tokens=False)["input_ids"] for s in ("CCO", "C1CC1", "N#CC")]
    width = max(map(len, plans)) + 1
    actions = np.full((3, width), task.eos_token_id)
    for i, plan in enumerate(plans):
        actions[i, : len(plan)] = plan
    venv.reset(seed=0)
    total = np.zeros((3, 3), dtype=np.float32)
    for t in range(width):
        _, rewards, _, _, _ = venv.step(actions[:, t])
        total += rewards
    assert venv.finished.all()
    np.testing.assert_allclose(total, task.score(["CCO", "C1CC1", "N#CC"]).rewards, atol=1e-6)


def test_domain_metrics_measure_novelty_and_diversity(env):
    train = sorted(env.train_smiles)[:50]
    metrics = env.domain_metrics([*train, "not a molecule", ""])
    assert metrics["novelty"] == 0.0
    assert 0.0 < metrics["internal_diversity"] < 1.0
    novel = ["N#CC(F)(F)C(F)(F)F", "OC(F)(F)C(F)(F)F"]  # not in QM9 at all
    assert not {canonical_qm9_smiles(s) for s in novel} & env.train_smiles
    assert env.domain_metrics(novel)["novelty"] == 1.0
    assert env.domain_metrics([*novel, "CC(C)(C)C(C)(C)C"])["novelty"] == pytest.approx(2 / 3)
    assert np.isnan(env.domain_metrics(["C1CC("])["novelty"])


@pytest.fixture
def one_thread():
    """Small-batch sampling is much slower with 2 threads on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_prior_samples_mostly_valid_molecules(env, one_thread):
    model = load_prior(env)
    prompts, mask = bos_prompts(200, env.bos_token_id)
    generation = sample(
        model,
        prompts,
        mask,
        env.max_length,
        eos_token_id=env.eos_token_id,
        pad_token_id=env.pad_token_id,
        generator=torch.Generator().manual_seed(0),
    )
    result = env.score_token_ids(generation.rows())
    assert result.valid.mean() >= 0.8


def test_env_card_has_every_section():
    card = README.read_text()
    for section in (
        "Description",
        "Observation Space",
        "Action Space",
        "Rewards",
        "Episode End",
        "Arguments",
        "Provenance & licenses",
        "Measured figures",
        "Version History",
    ):
        assert f"## {section}" in card and f"## {section}" in QM9Env.__doc__


def test_shipped_training_smiles_are_canonical_and_hash_to_train(env):
    train = sorted(env.train_smiles)
    assert len(train) == REPORT["data"]["split_sizes"]["train"]
    for smiles in train[::997]:
        assert canonical_qm9_smiles(smiles) == smiles and split_of(smiles) == "train"


def test_prepare_dataset_canonicalizes_merges_duplicates_and_counts_failures():
    import pandas as pd

    from morbench.envs.qm9.build import prepare_dataset

    table = pd.DataFrame(
        {
            "smiles": ["OCC", "CCO", "C1=CC=CC=C1", "CCCl", "C1CC("],
            "alpha_bohr3": [30.0, 32.0, 60.0, 40.0, 1.0],
            "gap_hartree": [0.3, 0.3, 0.25, 0.3, 0.1],
            "u0_hartree": [-155.0, -155.2, -232.0, -500.0, -1.0],
        }
    )
    data = prepare_dataset(table)
    assert data.smiles == ["CCO", "c1ccccc1"]
    np.testing.assert_allclose(data.properties[0], [31.0, 0.3 * HARTREE_TO_EV, -155.1])
    assert data.report["canonicalization_failures"] == 2 and data.report["duplicate_rows_merged"] == 1
    assert list(data.split) == [split_of("CCO"), split_of("c1ccccc1")]


def test_empirical_cdf_is_monotone_and_bounded():
    from morbench.envs.qm9.rewards import EmpiricalCDF

    cdf = EmpiricalCDF.fit(np.array([1.0, 2.0, 2.0, 2.0, 3.0, 10.0]))
    values = cdf(np.array([-5.0, 1.0, 2.0, 2.5, 3.0, 9.0, 10.0, 50.0]))
    assert values[0] == 0.0 and values[-1] == 1.0 and values[-2] == 1.0
    assert np.all(np.diff(values) >= 0)


@pytest.mark.slow
def test_builder_smoke_run_on_a_small_slice(tmp_path):
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None:  # the package is read as data, never imported
        pytest.skip("the qm9pack data package is not installed")
    from morbench.envs.qm9.build import main

    assets = tmp_path / "assets"
    args = ["--assets-dir", str(assets), "--limit", "1500", "--prior-epochs", "1", "--oracle-epochs", "1"]
    assert main([*args, "--prior-samples", "200", "--no-progress"]) == 0
    env = QM9Env(assets_dir=assets)
    check_env(env)
    report = json.loads((assets / "build_report.json").read_text())
    assert report["data"]["rows"] == 1500 and report["evaluation"]["samples"] == 200


def test_training_whose_validation_error_is_never_a_number_says_so():
    from rdkit import Chem

    from morbench.envs.qm9.predictors import TrainingConfig, train_predictor

    mols = [Chem.MolFromSmiles(s) for s in ("C", "CC", "CO", "CN", "CCO", "CCN", "C=O", "CC=O")]
    targets = np.random.default_rng(0).normal(size=(len(mols), 3))
    targets[:, 0] = np.nan  # one property unknown: every validation MAE is NaN, so no epoch is ever the best
    config = TrainingConfig(epochs=2, patience=1, batch_size=4, network={"hidden": 8, "layers": 1})
    with pytest.raises(ValueError, match=r"no epoch gave a validation MAE that is a number \(1 run\)"):
        train_predictor(config, mols, targets, mols, targets, progress=False)
