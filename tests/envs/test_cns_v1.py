"""morbench/CNS-v1 and morbench/CNS-MPO-v1: exact objectives checked against RDKit called directly, the judge
trained on other molecules than the oracle, the conflict the objectives were chosen for, the prior's validity,
the card's figures tied to the build report, and CNS-v0 left bit-identical."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import QED, AllChem, Crippen, Descriptors, Lipinski
from rdkit.Contrib.SA_Score import sascorer

import morbench
from morbench.envs.cns.env import ASSETS_DIR, V1_ASSETS_DIR, CNSEnv
from morbench.errors import ConfigError
from morbench.preferences import simplex_lattice

REPORT = json.loads((V1_ASSETS_DIR / "build_report.json").read_text())
README = Path(__file__).resolve().parents[2] / "envs" / "cns" / "README.md"
# sha256 of CNS-v0's MANIFEST.sha256 as committed before CNS-v1 existed (bb7f59b): v0's assets stay bit-identical
V0_MANIFEST_SHA256 = "ccefafbeaf1af4e40cac3173ed5243d1132c41db6b167c905973952a818b71b0"
IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"
MOLECULES = [
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",  # diazepam
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    IMATINIB,
    "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN1CCC(CC1)C(O)(c1ccccc1)c1ccccc1",  # fexofenadine
    "OCC(O)CO",  # glycerol: ESOL log S above 0, solubility clipped to 1
]
MPO = ("qed", "sa", "bbb", "solubility", "imatinib_likeness")


@pytest.fixture(scope="module")
def v1():
    env = morbench.make("morbench/CNS-v1", workers=0)
    yield env.unwrapped
    env.close()


@pytest.fixture(scope="module")
def mpo():
    env = morbench.make("morbench/CNS-MPO-v1", workers=0)
    yield env
    env.close()


def rdkit_reference(smiles: str) -> dict[str, float]:
    """Every exact objective computed here from RDKit directly (other fingerprint API, own ESOL arithmetic)."""
    mol = Chem.MolFromSmiles(smiles)
    aromatic = sum(atom.GetIsAromatic() for atom in mol.GetAtoms()) / mol.GetNumHeavyAtoms()
    log_s = (
        0.16
        - 0.63 * Crippen.MolLogP(mol)
        - 0.0062 * Descriptors.MolWt(mol)
        + 0.066 * Lipinski.NumRotatableBonds(mol)
        - 0.74 * aromatic
    )
    fp = AllChem.GetMorganFingerprintAsBitVect(mol, 2, nBits=2048)
    ref = AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(IMATINIB), 2, nBits=2048)
    tanimoto = DataStructs.TanimotoSimilarity(fp, ref)
    return {
        "qed": QED.qed(mol),
        "sa": min(1.0, max(0.0, (10 - sascorer.calculateScore(mol)) / 9)),
        "solubility": min(1.0, max(0.0, (log_s + 6) / 6)),
        "imatinib_likeness": min(1.0, tanimoto / 0.5),
        "esol_log_s": log_s,
        "sim_imatinib": tanimoto,
    }


def test_v0_assets_are_untouched_and_v0_keeps_its_objectives():
    assert hashlib.sha256((ASSETS_DIR / "MANIFEST.sha256").read_bytes()).hexdigest() == V0_MANIFEST_SHA256
    with pytest.raises(ConfigError, match="task_version=1"):
        CNSEnv(workers=0, objectives=("qed",))
    with pytest.raises(ConfigError, match="task_version must be 0"):
        CNSEnv(workers=0, task_version=2)


def test_v1_ids_objectives_grids_and_check_env(v1, mpo):
    assert v1.objective_names == ("bbb", "solubility", "imatinib_likeness")
    assert v1.preference_grid.shape == (10, 3) and v1.assets_dir == V1_ASSETS_DIR
    task = mpo.unwrapped
    assert task.objective_names == MPO
    # the simplex lattice with 2 divisions (C(6, 4) = 15 preferences) and the uniform preference, which scoring needs
    assert task.preference_grid.shape == (16, 5)
    assert np.allclose(task.preference_grid[-1], 0.2) and np.array_equal(
        task.preference_grid[:15], simplex_lattice(5, 2)
    )
    assert np.array_equal(task.reference_point, np.zeros(5))
    assert task.judge.objective_names == MPO
    with pytest.raises(ConfigError, match="objectives must be distinct names"):
        CNSEnv(workers=0, task_version=1, objectives=("bbb", "logp"))


def test_exact_objectives_match_rdkit_called_directly(mpo):
    result = mpo.unwrapped.score(MOLECULES)
    assert result.valid.all()
    for i, smiles in enumerate(MOLECULES):
        expected = rdkit_reference(smiles)
        for k, name in enumerate(MPO):
            if name != "bbb":
                assert result.rewards[i, k] == pytest.approx(expected[name], abs=1e-6), (smiles, name)
        for name in ("esol_log_s", "sim_imatinib"):
            assert result.properties[name][i] == pytest.approx(expected[name], abs=1e-9), (smiles, name)
    assert result.rewards[MOLECULES.index(IMATINIB), MPO.index("imatinib_likeness")] == 1.0
    assert result.rewards[MOLECULES.index("OCC(O)CO"), MPO.index("solubility")] == 1.0


def test_judge_shares_the_exact_objectives_and_replaces_bbb(mpo):
    task = mpo.unwrapped
    oracle, judge = task.oracle.with_model(task.oracle.model), task.judge
    ours, theirs = oracle(MOLECULES), judge(MOLECULES)
    exact = [MPO.index(n) for n in MPO if n != "bbb"]
    assert np.array_equal(ours.rewards[:, exact], theirs.rewards[:, exact])
    assert not np.allclose(ours.rewards[:, MPO.index("bbb")], theirs.rewards[:, MPO.index("bbb")])
    oracle.close()


def test_bbb_oracle_and_judge_are_trained_on_disjoint_molecules():
    """CNS-v0's oracle and judge learned from the same 6,236 B3DB molecules (test errors correlate at 0.90);
    v1 halves the training scaffolds between them, and the judge agrees less with the oracle on prior samples."""
    bbb = REPORT["bbb"]
    assert bbb["shared_training_molecules"] == 0
    assert bbb["oracle_train_molecules"] + bbb["judge_train_molecules"] == 6236
    for name in ("bbb_oracle", "bbb_judge"):
        shipped = json.loads((V1_ASSETS_DIR / f"{name}.json").read_text())["training"]
        assert shipped["train_molecules"] == bbb[f"{name.split('_')[1]}_train_molecules"]
    v0_prior = json.loads((ASSETS_DIR / "build_report.json").read_text())["prior_samples"]["oracle_vs_judge_bbb"]
    assert REPORT["prior_samples"]["oracle_vs_judge_bbb"]["pearson"] < v0_prior["pearson"]
    errors = bbb["test_error_correlation"]
    assert errors["v1"]["error_pearson"] < errors["v0"]["error_pearson"]


def test_objectives_conflict_on_prior_samples():
    """CNS-v0's three objectives correlate positively on prior samples; CNS-v1's have two negative pairs."""
    v0 = json.loads((ASSETS_DIR / "build_report.json").read_text())["prior_samples"]["objective_correlations"]
    assert min(v0["pearson"].values()) > 0
    matrix = REPORT["prior_samples"]["correlations"]["pearson"]
    names = ("bbb", "solubility", "imatinib_likeness")
    pairs = [matrix[a][b] for i, a in enumerate(names) for b in names[i + 1 :]]
    assert sum(r < 0 for r in pairs) >= 2


@pytest.mark.parametrize("label", ["CNS-v1", "CNS-MPO-v1"])
def test_preference_specific_selection_serves_the_grid_better_than_uniform_at_the_same_budget(label):
    """Best-of-n per preference against best-of-n at the uniform preference on the same samples: on the v1 ids
    the specific selection serves each preference clearly better than on CNS-v0's objectives, and beats every
    uniform pick on part of the grid."""
    v0_rows = {row["n_per_preference"]: row for row in REPORT["conflict_check"]["CNS-v0 set (qed, sa, bbb)"]["results"]}
    rows = REPORT["conflict_check"][label]["results"]
    assert [row["n_per_preference"] for row in rows] == [16, 64, 256]
    for row in rows:
        gain = row["served_specific"]["mean"] - row["served_uniform"]["mean"]
        v0 = v0_rows[row["n_per_preference"]]
        assert gain > 2 * (v0["served_specific"]["mean"] - v0["served_uniform"]["mean"]) > 0
        assert row["dominated_preferences"]["mean"] > 0.1
        assert row["specific_not_dominated_by_uniform"]["mean"] > 0.5
    assert np.mean([row["dominated_preferences"]["mean"] for row in rows]) > 0.2


def test_conflict_check_counts_a_pick_that_only_a_preference_can_find():
    from morbench.envs.cns.build_v1 import conflict_check

    weights = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    # batch 0 holds a sample best for objective 0 alone, which the uniform utility ranks second
    batch = np.array([[0.9, 0.05], [0.5, 0.5]])
    rewards = np.concatenate([batch, batch, batch[::-1]])
    row = conflict_check(rewards, weights, n=2)
    assert row["repetitions"] == 1 and row["dominated_preferences"]["mean"] == pytest.approx(1 / 3)
    assert row["hv_specific"]["mean"] > row["hv_uniform"]["mean"]


def test_prior_report_figures():
    samples = REPORT["prior_samples"]
    assert samples["strings"] == 10_000
    prior = json.loads((V1_ASSETS_DIR / "prior" / "pretrain.json").read_text())
    assert prior == REPORT["prior"]
    assert prior["valid_nll"] < prior["base"]["valid_nll"]
    v0_validity = json.loads((ASSETS_DIR / "build_report.json").read_text())["prior_samples"]["validity"]
    assert samples["validity"] > v0_validity


def test_card_states_the_report_figures():
    card = README.read_text()
    samples, prior = REPORT["prior_samples"], REPORT["prior"]
    assert f"| validity | 81.8% | {100 * samples['validity']:.1f}% |" in card
    assert f"Validation NLL {prior['base']['valid_nll']:.3f} -> {prior['valid_nll']:.3f}" in card
    for label in ("CNS-v1", "CNS-MPO-v1"):
        for row in REPORT["conflict_check"][label]["results"]:
            served = f"{row['served_specific']['mean']:.3f} / {row['served_uniform']['mean']:.3f}"
            assert f"| {label} | {row['n_per_preference']} ({row['repetitions']}) |" in card and served in card
    errors = REPORT["bbb"]["test_error_correlation"]
    assert (
        f"correlate at {errors['v1']['error_pearson']:.2f} (CNS-v0's pair: {errors['v0']['error_pearson']:.2f})" in card
    )


# every registered method, at the smallest settings that still train (as tests/baselines/test_cli_short_runs.py)
TINY = {
    "iterative_rs": ["iterations=1", "merge_every=1"],
    "rewarded_soups": ["iterations=1"],
    "morlhf": ["iterations=1"],
    "morlhf_uniform": ["iterations=1"],
    "rewards_in_context": [
        "offline_samples=32",
        "online_samples=16",
        "offline_epochs=1",
        "online_iterations=1",
        "online_epochs=1",
        "batch_size=16",
    ],
    "prior": [],
    "best_of_n": ["n=2"],
}
PPO = ["ppo.batch_size=8", "ppo.minibatch_size=8", "ppo.ppo_epochs=1"]
PPO_METHODS = ("iterative_rs", "rewarded_soups", "morlhf", "morlhf_uniform")


def test_every_method_is_registered_here():
    from morbench.baselines import METHODS

    assert set(TINY) == set(METHODS)


@pytest.mark.parametrize("method", sorted(TINY))
def test_many_objective_id_runs_every_method_from_the_cli(method, tmp_path, capsys):
    from morbench.cli import main
    from morbench.scoring import score_run

    argv = ["train", method, "--env", "morbench/CNS-MPO-v1", "--seed", "1", "--out", str(tmp_path)]
    argv += ["--eval-samples", "2", "--quiet", "--env-kwarg", "workers=0"]
    for item in TINY[method] + (PPO if method in PPO_METHODS else []):
        argv += ["--set", item]
    assert main(argv) == 0
    assert "run written to" in capsys.readouterr().out
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "complete" and record["env"]["id"] == "morbench/CNS-MPO-v1"
    result = score_run(tmp_path)
    assert len(result["per_preference"]) == 16 and "judge_gap" in result


def test_morbench_check_passes_on_the_many_objective_id():
    from morbench.cli import main

    assert main(["check", "morbench/CNS-MPO-v1"]) == 0


def test_prior_builder_trains_a_wider_model_from_scratch_and_resumes(tmp_path):
    """``prior_v1 --n-embd/--n-layer/--n-head``: a fresh model of that size with v0's vocabulary, resumable."""
    from morbench.envs.cns.data import read_smiles_gz
    from morbench.envs.cns.prior_v1 import V0_PRIOR, ContinueConfig, continue_prior
    from morbench.models import load_causal_lm

    smiles = read_smiles_gz(V0_PRIOR.parent / "zinc_train_smiles.txt.gz")[:48]
    config = ContinueConfig(
        batch_size=8, max_steps=4, checkpoint_every=2, valid_size=8, n_embd=32, n_layer=1, n_head=2, warmup_steps=1
    )
    report = continue_prior(smiles[:40], smiles[40:], config, tmp_path / "prior", tmp_path / "ckpt", progress=False)
    model, v0 = load_causal_lm(tmp_path / "prior"), load_causal_lm(V0_PRIOR)
    assert (model.config.n_embd, model.config.n_layer, model.config.n_head) == (32, 1, 2)
    assert model.config.vocab_size == v0.config.vocab_size and model.config.n_positions == v0.config.n_positions
    assert report["steps"] == 4 and "fresh, wider model" in report["base"]["directory"]
    assert report["num_parameters"] == sum(p.numel() for p in model.parameters())
    again = continue_prior(smiles[:40], smiles[40:], config, tmp_path / "prior2", tmp_path / "ckpt", progress=False)
    assert again["resumed_from_checkpoint"] == 1 and again["valid_nll"] == report["valid_nll"]
    assert not ContinueConfig().fresh  # the default continues v0's weights; the shipped CNS-v1 prior is wider:
    from morbench.envs.cns.prior_v1 import SHIPPED

    shipped = json.loads((V1_ASSETS_DIR / "prior" / "pretrain.json").read_text())["config"]
    assert shipped == SHIPPED.to_dict() and SHIPPED.fresh


def test_prior_builder_length_grouping_sees_every_molecule_once_and_resumes_across_thread_counts(tmp_path):
    """``--group-by-length``: a permutation whose windows are length-sorted; ``--bf16`` trains; ``--threads`` may
    change on resume (a run killed and resumed ends with the weights of an uninterrupted one)."""
    import dataclasses

    import morbench.envs.cns.prior_v1 as prior_v1
    from morbench.envs.cns.data import read_smiles_gz
    from morbench.envs.cns.prior_v1 import V0_PRIOR, ContinueConfig, _group_by_length, continue_prior

    lengths = np.random.default_rng(0).integers(5, 70, size=101)
    order = np.random.default_rng(1).permutation(101)
    grouped = _group_by_length(order, lengths, 20)
    assert sorted(grouped.tolist()) == list(range(101))  # every molecule once
    for start in range(0, 101, 20):
        window = lengths[grouped[start : start + 20]]
        assert (np.diff(window) >= 0).all() and set(grouped[start : start + 20]) == set(order[start : start + 20])

    smiles = read_smiles_gz(V0_PRIOR.parent / "zinc_train_smiles.txt.gz")[:72]
    config = ContinueConfig(
        batch_size=8, max_steps=6, checkpoint_every=3, valid_size=8, n_embd=32, n_layer=1, n_head=2,
        warmup_steps=1, group_by_length=2, bf16=True,
    )  # fmt: skip
    whole = continue_prior(smiles[:64], smiles[64:], config, tmp_path / "whole", tmp_path / "c1", progress=False)
    assert whole["steps"] == 6 and whole["config"]["bf16"] and whole["config"]["group_by_length"] == 2

    calls = []

    def killed_at_step_4(*args):
        calls.append(1)
        if len(calls) == 4:  # after the step-3 checkpoint
            raise KeyboardInterrupt
        return loss(*args)

    loss = prior_v1._loss
    prior_v1._loss = killed_at_step_4
    try:
        with pytest.raises(KeyboardInterrupt):
            continue_prior(smiles[:64], smiles[64:], config, tmp_path / "killed", tmp_path / "c2", progress=False)
    finally:
        prior_v1._loss = loss
    resumed = dataclasses.replace(config, threads=2)
    again = continue_prior(smiles[:64], smiles[64:], resumed, tmp_path / "resumed", tmp_path / "c2", progress=False)
    # the same data order and schedule; only the thread count's summation order may differ
    assert again["resumed_from_checkpoint"] == 1 and again["valid_nll"] == pytest.approx(whole["valid_nll"], rel=1e-3)
