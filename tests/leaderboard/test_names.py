"""Submission names: NFKC, invisible and bidi characters, confusable skeletons (UTS #39), file slugs."""

from __future__ import annotations

import copy
import itertools
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from morbench.errors import SubmissionError, SubmissionNameError
from morbench.leaderboard import names
from morbench.leaderboard.names import (
    BIDI_CONTROLS,
    check_name,
    name_skeleton,
    names_clash,
    normalize_name,
    submission_slug,
    tr39_skeleton,
)
from morbench.leaderboard.schema import check_schema, read_submission
from morbench.leaderboard.validate import validate_files

from .conftest import write_submission

REAL = "IterativeRS (baseline)"
CYRILLIC_A = "IterativeRS (b\u0430seline)"  # U+0430 CYRILLIC SMALL LETTER A for the first "a"
RLO = "\u202e)enilesab( SRevitaretI"  # RIGHT-TO-LEFT OVERRIDE: displays as "IterativeRS (baseline)" reversed


# -- the two impersonations of issue 13, item 8 ------------------------------------------------------------------
def test_cyrillic_lookalike_is_a_duplicate_in_validation(base: dict[str, Any], tmp_path: Path) -> None:
    base["name"] = "Random letters"
    real = write_submission(tmp_path, base)
    fake_submission = copy.deepcopy(base)
    fake_submission["name"] = "R\u0430ndom letters"  # Cyrillic a: looks exactly like the real entry
    fake = write_submission(tmp_path, fake_submission)
    assert fake != real  # a different file: only the skeleton comparison can catch it
    report = validate_files([real, fake], root=tmp_path)
    assert not report.valid and len(report.errors) == 2
    message = next(e for e in report.errors if e.startswith(str(fake)))
    assert "'R\\u0430ndom letters'" in message and "'Random letters'" in message  # both names, the fake escaped
    assert "mixes Cyrillic and Latin letters" in message and "U+0430 CYRILLIC SMALL LETTER A" in message
    assert str(real) in message


def test_right_to_left_override_name_is_rejected(base: dict[str, Any]) -> None:
    base["name"] = RLO
    with pytest.raises(SubmissionNameError, match=r"U\+202E RIGHT-TO-LEFT OVERRIDE\) at position 0, a bidirectional"):
        check_schema(base, "x.json.gz")


# -- what a name may contain ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", sorted(BIDI_CONTROLS))
def test_every_bidi_control_is_rejected(code: int) -> None:
    with pytest.raises(SubmissionNameError, match=f"U\\+{code:04X}.*bidirectional control"):
        check_name(f"My{chr(code)}method", "f")


@pytest.mark.parametrize(
    "char",
    [
        "\u200b",  # ZERO WIDTH SPACE
        "\u200c",  # ZERO WIDTH NON-JOINER
        "\u200d",  # ZERO WIDTH JOINER
        "\u2060",  # WORD JOINER
        "\ufeff",  # ZERO WIDTH NO-BREAK SPACE (BOM)
        "\u00ad",  # SOFT HYPHEN
        "\u034f",  # COMBINING GRAPHEME JOINER (Mn, default-ignorable)
        "\u3164",  # HANGUL FILLER (Lo, renders as nothing)
        "\u2800",  # BRAILLE PATTERN BLANK
        "\U000e0041",  # TAG LATIN CAPITAL LETTER A
        "\ufe0f",  # VARIATION SELECTOR-16
    ],
)
def test_invisible_characters_are_rejected(char: str) -> None:
    with pytest.raises(SubmissionNameError, match=f"U\\+{ord(char):04X}.*invisible"):
        check_name(f"My{char}method", "f")


@pytest.mark.parametrize(
    ("char", "kind"),
    [
        ("\ue000", "private-use"),
        ("\u0378", "unassigned"),
        ("\u2028", "non-printable"),  # LINE SEPARATOR
        ("\t", "non-printable"),
        ("\x85", "non-printable"),  # NEXT LINE
    ],
)
def test_non_printable_characters_are_rejected(char: str, kind: str) -> None:
    with pytest.raises(SubmissionNameError, match=kind):
        check_name(f"My{char}method", "f")


def test_names_must_be_nfkc_and_trimmed() -> None:
    with pytest.raises(SubmissionNameError, match=r"not in Unicode NFKC form; write it as 'My method'"):
        check_name("\uff2dy method", "f")  # FULLWIDTH LATIN CAPITAL LETTER M
    with pytest.raises(SubmissionNameError, match="not in Unicode NFKC form"):
        check_name("My\u00a0method", "f")  # NO-BREAK SPACE
    with pytest.raises(SubmissionNameError, match="starts or ends with whitespace"):
        check_name("My method ", "f")
    assert normalize_name(" \uff2dy\u00a0method ") == "My method"
    with pytest.raises(SubmissionNameError, match="combining marks"):
        check_name("x" + "\u0301\u0300\u0302\u0303\u0304", "f")


@pytest.mark.parametrize(
    "name", [REAL, "Rewards-in-Context (baseline)", "Café au lait", "多目标 RL", "Ωmega-PPO", "x\u0323\u0301"]
)
def test_ordinary_names_are_accepted(name: str) -> None:
    check_name(name, "f")


def test_name_errors_are_submission_errors() -> None:
    assert issubclass(SubmissionNameError, SubmissionError)


# -- skeletons -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fake", "real"),
    [
        (CYRILLIC_A, REAL),
        ("iterativers (baseline)", REAL),  # case
        ("\u0399terativeRS (baseline)", REAL),  # GREEK CAPITAL LETTER IOTA
        ("IterativeRS (basel\u0456ne)", REAL),  # CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
        ("rnorlhf (baseline)", "MORLHF (baseline)"),  # rn for m
        ("PPO-1O", "ppo-10"),  # O for 0, 1 for l... both ways
        ("Ilya", "llya"),  # capital I for small L (hidden by case folding, so compared case-sensitively too)
        ("My  method", "My method"),  # whitespace runs render as one space in HTML
        ("My\u200bmethod", "Mymethod"),  # invisible characters of a hand-written file do not count
        ("\U0001d40c\U0001d428\U0001d42b\U0001d425\U0001d421\U0001d41f", "MORLHF"),  # MATHEMATICAL BOLD letters
    ],
)
def test_lookalikes_clash(fake: str, real: str) -> None:
    assert names_clash(fake, real) and names_clash(real, fake)


def test_distinct_names_do_not_clash() -> None:
    distinct = [
        REAL,
        "MORLHF (baseline)",
        "Best-of-N (baseline)",
        "Prior (no fine-tuning)",
        "Rewarded Soups (baseline)",
        "Rewards-in-Context (baseline)",
        "IterativeRS (ours)",
        "IterativeRS v2",
        "Café",
        "多目标 RL",
        "多目標 RL",
    ]
    for a, b in itertools.combinations(distinct, 2):
        assert not names_clash(a, b), (a, b)


def test_the_confusables_data_is_the_real_table() -> None:
    """Thousands of Unicode confusables.txt mappings, each to a prototype that maps to itself (the skeleton is
    idempotent), with known entries of the file."""
    table = names._prototypes()
    assert len(table) > 6000
    assert table["\u0430"] == "a" and table["\u03bf"] == "o" and table["m"] == "rn" and table["0"] == "O"
    assert table["\U0001d41a"] == "a"  # MATHEMATICAL BOLD SMALL A
    for source, prototype in table.items():
        assert all(table.get(c, c) == c for c in prototype), (source, prototype)
    sample = "".join(sorted(table)[::7])
    assert tr39_skeleton(tr39_skeleton(sample)) == tr39_skeleton(sample)


def test_skeleton_is_casefolded() -> None:
    assert name_skeleton("MORLHF") == name_skeleton("morlhf") == "rnorlhf"


# -- slugs ---------------------------------------------------------------------------------------------------------
def test_slugs() -> None:
    assert submission_slug("IterativeRS (ours)") == "iterativers-ours"
    assert submission_slug("Café") == "cafe"
    assert submission_slug("\uff2dine") == "mine"  # NFKC first
    a, b = submission_slug("多目标 RL"), submission_slug("多目標 RL")
    assert a != b and a.startswith("rl-") and len(a) == len("rl-") + 10
    assert submission_slug(CYRILLIC_A) != submission_slug(REAL)  # a different file: the skeleton check catches it
    assert submission_slug("!!!") == "submission"
    assert len(submission_slug("x" * 200 + "多")) <= 80


def test_committed_submissions_follow_the_name_rules() -> None:
    """Every committed name passes the rules, keeps its file name, and no two names of an env clash."""
    root = Path(__file__).resolve().parents[2] / "leaderboard" / "submissions"
    if not root.is_dir():
        pytest.skip("no leaderboard/submissions (not a source checkout)")
    by_env: dict[str, list[str]] = {}
    for path in sorted(root.glob("*/*.json.gz")):
        name = read_submission(path)["name"]
        check_name(name, str(path))
        assert unicodedata.is_normalized("NFKC", name)
        assert path.name == f"{submission_slug(name)}.json.gz"
        by_env.setdefault(path.parent.name, []).append(name)
    assert by_env
    for env_names in by_env.values():
        for a, b in itertools.combinations(env_names, 2):
            assert not names_clash(a, b), (a, b)
