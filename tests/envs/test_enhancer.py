"""Enhancer: offline construction, asset integrity, oracle determinism, bad inputs, metrics on hand-computed cases."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import morbench
from morbench.envs.enhancer import metrics
from morbench.envs.enhancer.env import ASSETS_DIR, CELL_TYPES, EnhancerEnv
from morbench.envs.enhancer.motifs import Motif, MotifSet, motif_enrichment
from morbench.envs.enhancer.sequences import build_dna_tokenizer, encode, reverse_complement, sequence_problem
from morbench.errors import AssetError
from morbench.metrics import auroc
from morbench.utils import check_env

REBUILD = "morbench build-assets enhancer"


@pytest.fixture(scope="module")
def env() -> EnhancerEnv:
    return morbench.make("morbench/Enhancer-v0").unwrapped


def _random_dna(count: int, seed: int = 0, length: int = 200) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(count)]


def _kmer_ids(env: EnhancerEnv, sequence: str) -> list[int]:
    return env.tokenizer(sequence, add_special_tokens=False)["input_ids"]


# -- construction and contract ---------------------------------------------------------------------------------
def test_make_works_offline_and_passes_check_env(env):
    check_env(morbench.make("morbench/Enhancer-v0"))
    assert env.objective_names == CELL_TYPES
    assert env.vocab_size == 260 and env.max_length == 51
    assert env.preference_grid.shape == (10, 3)
    np.testing.assert_array_equal(env.reference_point, np.zeros(3))
    assert env.judge is not None and env.judge is not env.oracle
    assert (env.prior_path / "model.safetensors").is_file()
    assert env.rebuild_command == REBUILD


def test_tokenizer_round_trips_a_200bp_sequence_as_50_kmers(env):
    sequence = _random_dna(1)[0]
    ids = _kmer_ids(env, sequence)
    assert len(ids) == 50 and min(ids) >= 4
    assert env.tokenizer.decode(ids) == sequence
    assert env.tokenizer.convert_ids_to_tokens([4, 5, 259]) == ["AAAA", "AAAC", "TTTT"]
    nucleotide = build_dna_tokenizer("nucleotide")
    assert (
        len(nucleotide) == 8
        and nucleotide.decode(nucleotide(sequence, add_special_tokens=False)["input_ids"]) == sequence
    )


def test_episode_with_50_kmers_then_eos_is_valid_and_matches_score(env):
    sequence = _random_dna(1, seed=3)[0]
    env.reset(seed=0)
    for token in _kmer_ids(env, sequence):
        _, reward, terminated, truncated, _ = env.step(token)
        assert not (terminated or truncated) and not reward.any()
    _, reward, terminated, truncated, info = env.step(env.eos_token_id)
    assert terminated and not truncated and info["valid"] and info["sequence"] == sequence
    assert reward.dtype == np.float32 and np.all((reward >= 0) & (reward <= 1))
    np.testing.assert_allclose(reward, env.score([sequence]).rewards[0], atol=1e-6)
    assert set(info["properties"]) == {f"{cell}_logit" for cell in CELL_TYPES}


def test_truncation_after_51_kmers_and_early_eos_are_invalid(env):
    sequence = _random_dna(1, seed=4)[0] + "ACGT"
    env.reset(seed=0)
    for token in _kmer_ids(env, sequence):
        _, reward, terminated, truncated, info = env.step(token)
    assert truncated and not terminated and not info["valid"] and "204 bp" in info["reason"]
    np.testing.assert_array_equal(reward, np.zeros(3, dtype=np.float32))

    env.reset(seed=0)
    env.step(_kmer_ids(env, "ACGT")[0])
    _, reward, terminated, _, info = env.step(env.eos_token_id)
    assert terminated and not info["valid"] and "4 bp" in info["reason"]
    np.testing.assert_array_equal(reward, np.zeros(3, dtype=np.float32))


def test_special_token_inside_a_sequence_is_invalid(env):
    env.reset(seed=0)
    env.step(env.bos_token_id)
    for _ in range(49):
        env.step(4)
    _, reward, _, _, info = env.step(env.eos_token_id)
    assert not info["valid"] and "[BOS]" in info["reason"]
    np.testing.assert_array_equal(reward, np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize(
    ("sequence", "fragment"),
    [
        ("", "empty"),
        ("ACGT" * 49 + "ACG", "199 bp"),
        ("ACGT" * 51, "204 bp"),
        ("ACGN" * 50, "not DNA bases"),
        ("ACGU" * 50, "not DNA bases"),
        ("ACG-" * 50, "not DNA bases"),
        ("ACGé" * 50, "not DNA bases"),
    ],
)
def test_bad_inputs_get_the_floor_reward_and_a_reason(env, sequence, fragment):
    calls = env.oracle.calls
    result = env.score([sequence])
    assert not result.valid[0] and fragment in result.reasons[0]
    np.testing.assert_array_equal(result.rewards[0], np.zeros(3, dtype=np.float32))
    assert env.oracle.calls == calls  # invalid sequences cost no oracle call


def test_non_string_input_is_invalid_not_an_exception(env):
    result = env.score([None, 42])  # type: ignore[list-item]
    assert not result.valid.any() and all("string" in r for r in result.reasons)


# -- oracle and judge ------------------------------------------------------------------------------------------
def test_oracle_is_deterministic_batch_invariant_and_cached(env):
    sequences = _random_dna(9, seed=11)
    fresh = EnhancerEnv(prior_likelihood_metric=False)
    batch = fresh.score(sequences).rewards
    calls = fresh.oracle.calls
    assert calls == 9
    again = fresh.score(sequences).rewards
    np.testing.assert_array_equal(batch, again)
    assert fresh.oracle.calls == calls  # cache hits are free
    other = EnhancerEnv(prior_likelihood_metric=False)
    singles = np.concatenate([other.score([s]).rewards for s in sequences])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    lower = other.score([sequences[0].lower()])
    np.testing.assert_array_equal(lower.rewards[0], singles[0])  # lower case is the same canonical design
    assert other.oracle.calls == 9


def test_oracle_is_strand_symmetric_and_judge_is_a_different_model(env):
    sequences = _random_dna(4, seed=5)
    rc = ["".join("ACGT"[i] for i in row) for row in reverse_complement(encode(sequences))]
    np.testing.assert_allclose(env.oracle.logits(sequences), env.oracle.logits(rc), atol=1e-4)
    judge = env.judge_score(sequences).rewards
    assert judge.shape == (4, 3) and not np.allclose(judge, env.score(sequences).rewards, atol=1e-3)


def test_loaded_networks_hold_no_subnormal_weights_and_score_as_the_raw_files(env):
    # a third of the oracle's trained weights are subnormal floats, which made its convolutions ~5x slower on CPU;
    # the loader zeroes them: the committed files are unchanged and the logits are bit-identical to the raw files'
    from safetensors.torch import load_file

    from morbench.envs.enhancer.networks import ARCHITECTURES, predict_logits

    codes = encode(_random_dna(64, seed=3), 200)
    for name, oracle in (("oracle", env.oracle), ("judge", env.judge)):
        network = oracle.network
        tiny = torch.finfo(torch.float32).tiny
        assert all(int(((p != 0) & (p.abs() < tiny)).sum()) == 0 for p in network.parameters()), name
        record = json.loads((ASSETS_DIR / f"{name}.json").read_text())
        cls, config_cls = ARCHITECTURES[record["architecture"]]
        raw = cls(config_cls(**record["config"]))
        raw.load_state_dict(load_file(str(ASSETS_DIR / f"{name}.safetensors")))
        assert np.array_equal(predict_logits(raw, codes), predict_logits(network, codes)), name


def test_flush_subnormal_weights_zeroes_only_subnormals():
    from morbench.models import flush_subnormal_weights

    layer = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1e-39, -1e-40, 1e-30, 0.5]]))
    assert flush_subnormal_weights(layer) == 2
    assert layer.weight.tolist() == [[0.0, 0.0, pytest.approx(1e-30), 0.5]]


def test_vector_env_scores_finished_rows(env):
    venv = morbench.make_vec("morbench/Enhancer-v0", num_envs=3, autoreset_mode=AutoresetMode.DISABLED)
    venv.reset(seed=0)
    sequences = _random_dna(3, seed=8)
    plans = np.array([[*_kmer_ids(env, s), env.eos_token_id] for s in sequences])
    plans[2, 10] = env.eos_token_id  # the third row ends early: invalid
    total = np.zeros((3, 3), dtype=np.float32)
    for t in range(plans.shape[1]):
        _, rewards, _, _, _ = venv.step(plans[:, t])
        total += rewards
    assert venv.finished.all()
    np.testing.assert_allclose(total[:2], env.score(sequences[:2]).rewards, atol=1e-6)
    np.testing.assert_array_equal(total[2], np.zeros(3, dtype=np.float32))
    venv.close()


# -- assets ----------------------------------------------------------------------------------------------------
@pytest.fixture()
def assets_copy(tmp_path, env):
    target = tmp_path / "assets"
    shutil.copytree(env.assets_dir, target)
    return target


@pytest.mark.parametrize("name", ["oracle.safetensors", "judge.safetensors", "motifs.json", "prior/model.safetensors"])
def test_corrupted_asset_raises_asset_error_naming_file_and_command(assets_copy, name):
    path = assets_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AssetError) as error:
        EnhancerEnv(assets_dir=assets_copy)
    assert name.split("/")[-1] in str(error.value) and REBUILD in str(error.value)


@pytest.mark.parametrize("name", ["oracle.json", "reference.json", "MANIFEST.sha256", "prior/config.json"])
def test_missing_asset_raises_asset_error_naming_file_and_command(assets_copy, name):
    (assets_copy / name).unlink()
    with pytest.raises(AssetError) as error:
        EnhancerEnv(assets_dir=assets_copy)
    assert name.split("/")[-1] in str(error.value) and REBUILD in str(error.value)


def test_missing_assets_dir_raises_asset_error(tmp_path):
    with pytest.raises(AssetError, match="build-assets enhancer"):
        EnhancerEnv(assets_dir=tmp_path / "nowhere")


# -- metrics on hand-computed examples -------------------------------------------------------------------------
def test_sequence_problem_accepts_only_200bp_acgt():
    assert sequence_problem("acgt" * 50) is None
    assert sequence_problem("ACGT" * 50) is None
    assert "empty" in sequence_problem("")
    assert "not DNA bases" in sequence_problem("ACGT" * 49 + "ACGN")


def test_kmer_counts_and_spectrum_correlation():
    counts = metrics.kmer_counts(["AAAC", "ACNAC"], k=2)
    # AAAC: AA, AA, AC; ACNAC: AC, (CN, NA skipped), AC
    expected = np.zeros(16, dtype=np.int64)
    expected[0] = 2  # AA
    expected[1] = 3  # AC
    np.testing.assert_array_equal(counts, expected)
    assert metrics.kmer_counts(["A"], k=3).sum() == 0
    reference = metrics.kmer_counts(["ACGTACGTAC"], k=3)
    assert metrics.kmer_spectrum_correlation(["ACGTACGTAC"], reference) == pytest.approx(1.0)
    assert np.isnan(metrics.kmer_spectrum_correlation([], reference))
    with pytest.raises(ValueError, match="shape"):
        metrics.kmer_spectrum_correlation(["ACGT"], np.ones(16))


def test_gc_content_and_longest_homopolymer():
    np.testing.assert_allclose(metrics.gc_content(["GGCC", "ATGC", "AAAA", "GCNN"]), [1.0, 0.5, 0.0, 1.0])
    np.testing.assert_array_equal(
        metrics.longest_homopolymer(["ACGT", "AAACCCCG", "TTTT", "ANAAT", "", "GGTTTAAA"]), [1, 4, 4, 2, 0, 3]
    )


def test_median_pairwise_hamming():
    # pairs: (AAAA, AAAT)=1, (AAAA, TTTT)=4, (AAAT, TTTT)=3 -> median 3
    assert metrics.median_pairwise_hamming(["AAAA", "AAAT", "TTTT"]) == 3.0
    assert metrics.median_pairwise_hamming(["ACGT", "ACGT"]) == 0.0
    assert np.isnan(metrics.median_pairwise_hamming(["ACGT"]))
    with pytest.raises(ValueError, match="equal-length"):
        metrics.median_pairwise_hamming(["ACGT", "ACG"])


def test_prior_log_likelihood_matches_a_manual_sum():
    from morbench.models import build_gpt2

    tokenizer = build_dna_tokenizer("kmer4")
    model = build_gpt2(len(tokenizer), 52, seed=3)
    sequences = ["ACGTTTGA", "CCCCAAAAGGGGTTTT"]
    values = metrics.prior_log_likelihood_per_bp(model, tokenizer, [*sequences, "ACGN"])
    assert np.isnan(values[2])
    for sequence, value in zip(sequences, values[:2], strict=True):
        ids = [
            tokenizer.bos_token_id,
            *tokenizer(sequence, add_special_tokens=False)["input_ids"],
            tokenizer.eos_token_id,
        ]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], dim=-1)
        manual = sum(float(logp[t, ids[t + 1]]) for t in range(len(ids) - 1)) / len(sequence)
        assert value == pytest.approx(manual, abs=1e-5)


def test_motif_hits_on_both_strands_and_enrichment():
    # a 3-bp motif "ACG": +1 per matching base, -1 otherwise; threshold 3 = perfect match only
    log_odds = np.where(np.eye(4)[[0, 1, 2]] > 0, 1.0, -1.0)
    motif = Motif("X1", "ACGish", "HepG2", log_odds, threshold=3.0)
    codes = encode(["ACGAAA", "AAACGT", "TTTTTT", "CGTAAA"]).astype(np.int64)
    # "ACGAAA": forward ACG at 0; "AAACGT": forward ACG at 2 and reverse (CGT = revcomp ACG) at 3; "CGTAAA": reverse
    np.testing.assert_array_equal(motif.count_hits(codes), [1, 2, 0, 1])
    motif_set = MotifSet((motif,), {"HepG2": 0.5})
    assert motif_set.cell_type_hits(["ACGAAA", "TTTTTT"])["HepG2"].tolist() == [1, 0]
    # top 50% by score = the two highest-scoring sequences, with 2 and 0 hits -> mean 1 / background 0.5 = 2
    assert motif_enrichment(np.array([2, 0, 5, 1]), np.array([0.9, 0.8, 0.1, 0.2]), 0.5, top_fraction=0.5) == 2.0
    assert np.isnan(motif_enrichment(np.array([]), np.array([]), 1.0))


def test_shipped_motifs_are_enriched_in_sequences_built_from_their_consensus(env):
    motif_set = env.motif_set
    assert {m.cell_type for m in motif_set.motifs} == set(CELL_TYPES)
    for motif in motif_set.motifs:
        consensus = "".join("ACGT"[i] for i in motif.log_odds.argmax(axis=1))
        sequence = ("T" * 20 + consensus)[:40].ljust(40, "T")
        assert motif.count_hits(encode([sequence]).astype(np.int64))[0] >= 1, motif.name


def test_auroc_hand_computed():
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(auroc(np.array([1, 1]), np.array([0.1, 0.2])))


# -- domain metrics --------------------------------------------------------------------------------------------
def test_domain_metrics_on_prior_samples_and_random_dna(env):
    from morbench.sampling import bos_prompts, sample

    generation = sample(
        env.prior,
        *bos_prompts(32, env.bos_token_id),
        env.max_length,
        eos_token_id=env.eos_token_id,
        pad_token_id=env.pad_token_id,
        generator=torch.Generator().manual_seed(0),
        forbid_token_ids=[env.pad_token_id, env.bos_token_id, 3],
    )
    samples, reasons = env.decode_token_ids(generation.tokens.numpy())
    valid = [s for s in samples if sequence_problem(s) is None]
    assert len(valid) >= 28  # the prior ends at 200 bp almost always
    calls = env.oracle.calls
    prior_metrics = env.domain_metrics([*valid, "ACGN", ""])
    random_metrics = env.domain_metrics(_random_dna(32, seed=9))
    assert env.oracle.calls == calls  # metrics do not spend oracle calls
    assert prior_metrics["num_valid"] == len(valid)
    expected = {"kmer3_pearson", "gc_content", "longest_homopolymer", "median_pairwise_hamming", "prior_loglik_per_bp"}
    expected |= {f"motif_{kind}_{cell}" for kind, cell in itertools.product(("hits", "enrichment"), CELL_TYPES)}
    assert expected <= set(prior_metrics)
    assert all(np.isfinite(v) for v in prior_metrics.values())
    assert prior_metrics["prior_loglik_per_bp"] > random_metrics["prior_loglik_per_bp"]
    assert 100 < random_metrics["median_pairwise_hamming"] <= 200
    empty = env.domain_metrics(["ACGN"])
    assert empty["num_valid"] == 0 and np.isnan(empty["kmer3_pearson"])


def test_env_pickles_without_the_loaded_prior(env):
    import pickle

    assert env.prior is not None  # loads it
    clone = pickle.loads(pickle.dumps(env))
    assert "prior" not in clone.__dict__
    sequence = _random_dna(1, seed=21)
    np.testing.assert_array_equal(clone.score(sequence).rewards, env.score(sequence).rewards)
