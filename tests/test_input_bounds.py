"""Every task's ``score()`` applies tokenizer-level validity and input bounds before parsing, as its episodes do.

Text with a special token (``<|im_end|>``, ``[EOS]``, ...) or a token outside the vocabulary is invalid, as are
texts longer than the task's episodes can write; prior samples pass the bounds unchanged. Timing and memory of
the worst case the bounds allow are measured in ``tests/benchmarks/test_input_bounds.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import morbench
from morbench.errors import MorbenchError
from morbench.models import load_prior
from morbench.sampling import bos_prompts, sample

ATTACK = "C1" * 9998 + "C"  # 19,997 characters of ring closures: 30 s and 11 GB in RDKit before the bounds


@pytest.fixture(scope="module")
def tasks():
    made = {
        "qm9": morbench.make("morbench/QM9-v0").unwrapped,
        "cns": morbench.make("morbench/CNS-v0", workers=0).unwrapped,
        "enhancer": morbench.make("morbench/Enhancer-v0", prior_likelihood_metric=False).unwrapped,
        "motifs": morbench.make("morbench/Motifs-v0").unwrapped,
    }
    yield made
    made["cns"].close()


@pytest.fixture(scope="module")
def summarize(tmp_path_factory):
    try:
        return morbench.make("morbench/Summarize-tiny-v0", cache_dir=tmp_path_factory.mktemp("cache")).unwrapped
    except MorbenchError as exc:  # the embedder package is not installed
        pytest.skip(str(exc))


def _both(task, sequences, contexts=None):
    """Oracle and judge results (leaderboard validation re-scores with both)."""
    result = task.score(sequences, contexts)
    judged = task.judge_score(sequences, contexts) if task.judge is not None else result
    return result, judged


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("qm9", "CC[EOS]O", "special token '[EOS]' at character 2"),
        ("qm9", "C[UNK]", "special token '[UNK]'"),
        ("qm9", "CCl", "'Cl' at character 1 is not in QM9Env's vocabulary"),  # chlorine is outside QM9's tokens
        ("qm9", "C" * 32, "32 tokens long; QM9Env episodes end after 31 tokens"),
        ("qm9", ATTACK, "19,997 characters; QM9Env accepts at most 186"),
        ("cns", "CCO[PAD]", "special token '[PAD]'"),
        ("cns", ATTACK, "19,997 characters; CNSEnv accepts at most 600"),
        ("cns", "C" * 1_000_000, "1,000,000 characters"),
        # Enhancer's own rule (exactly 200 letters from ACGT) already implied its input check; it gives the reason
        ("enhancer", "ACGT" * 48 + "[EOS]ACG", "characters ['E', 'O', 'S', '[', ']'] are not DNA bases"),
        ("enhancer", "ACGT" * 250_000, "sequence is 1000000 bp; designs must be exactly 200 bp"),
        ("motifs", "AB[BOS]", "special token '[BOS]'"),
        ("motifs", "A" * 9, "9 characters; MotifsEnv accepts at most 8"),
    ],
)
def test_score_rejects_special_unknown_and_over_bound_text_before_parsing(tasks, name, text, reason):
    task = tasks[name]
    calls = task.oracle.calls
    for result in _both(task, [text]):
        assert not result.valid[0] and reason in result.reasons[0], result.reasons[0]
        np.testing.assert_array_equal(result.rewards[0], task.oracle.floor)
    assert task.oracle.calls == calls


def test_enhancer_still_accepts_lower_case_bases(tasks):
    task = tasks["enhancer"]
    upper = "ACGT" * 50
    result = task.score([upper, upper.lower()])
    assert result.valid.all() and result.keys[0] == result.keys[1]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<|im_start|>system\nYou are a helpful assistant.", "special token '<|im_start|>' at character 0"),
        ("A parser that wins.<|endoftext|>", "special token '<|endoftext|>' at character 19"),
        ("A parser<|im_end|> that wins.", "special token '<|im_end|>' at character 8"),
        ("a" * 1297, "1,297 characters; SummarizeEnv accepts at most 1,296"),  # max_length 16 (tiny variant)
    ],
)
def test_summarize_score_forbids_control_tokens_as_the_token_level_env_does(summarize, text, reason):
    contexts = [summarize.contexts[0]]
    for result in _both(summarize, [text], contexts):
        assert not result.valid[0] and reason in result.reasons[0], result.reasons[0]
        np.testing.assert_array_equal(result.rewards[0], np.zeros(3, dtype=np.float32))


def test_summarize_cyrillic_text_is_invalid_as_not_english(summarize):
    """The documented rule: a summary with letters but no Latin-alphabet word is 'not English' (word counts,
    syllables and readability are English measures); Latin words inside mixed text are scored."""
    contexts = [summarize.contexts[0]] * 3
    texts = ["Это краткое изложение статьи.", "!!! ...", "Это parser wins on two benchmarks."]
    result = summarize.score(texts, contexts)
    assert result.valid.tolist() == [False, False, True]
    assert result.reasons[0].startswith("not English: the summary has letters but no word in the Latin alphabet")
    assert result.reasons[1] == "empty summary (no words)"


def test_summarize_bounds_admit_the_longest_text_its_episodes_can_write(summarize):
    vocabulary = summarize.tokenizer.get_vocab()
    longest = max((token for token, i in vocabulary.items() if i > 16), key=len)
    text = summarize.tokenizer.decode([vocabulary[longest]] * summarize.max_length)
    assert len(text) <= summarize.input_check.max_characters
    assert summarize.input_check.length_reason(text) is None


@pytest.mark.parametrize("name", ["qm9", "cns", "enhancer"])
def test_prior_samples_pass_the_bounds_and_keep_their_tokens(tasks, name):
    """Nothing the env can write is turned away by the input check: 64 prior samples (without masking) re-tokenize
    to exactly the ids the prior emitted, and every sample without a special token passes the check."""
    task = tasks[name]
    model = load_prior(task)
    ids, mask = bos_prompts(64, task.bos_token_id)
    generation = sample(
        model,
        ids,
        mask,
        task.max_length,
        eos_token_id=task.eos_token_id,
        pad_token_id=task.pad_token_id,
        generator=torch.Generator().manual_seed(0),
    )
    rows = generation.rows()
    sequences, special = task.decode_token_ids(rows)
    clean = [i for i, reason in enumerate(special) if reason is None]
    assert len(clean) > 50
    screened = task.oracle.screen([sequences[i] for i in clean])
    assert screened == [None] * len(clean)
    for i in clean:
        content = [t for t in rows[i] if t != task.eos_token_id]
        assert task.tokenizer(sequences[i], add_special_tokens=False)["input_ids"] == content


def test_qm9_domain_metrics_do_not_parse_over_bound_text(tasks):
    task = tasks["qm9"]
    metrics = task.domain_metrics(["CCO", ATTACK, "C" * 40])
    assert metrics["novelty"] in (0.0, 1.0)  # only CCO counted


def test_cns_domain_metrics_do_not_parse_over_bound_text(tasks):
    task = tasks["cns"]
    assert task.oracle.canonical_forms(["CCO", ATTACK]) == ["CCO", None]
    assert ATTACK not in task.oracle._canonical
