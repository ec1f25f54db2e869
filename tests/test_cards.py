"""Env cards: each env class's docstring is the single source; its README.md is generated from it byte for byte,
its ``>>>`` example runs as a doctest, and its Arguments table lists exactly the constructor's arguments."""

import doctest
import inspect
import os
import subprocess
import sys

import pytest

from morbench.cards import SECTIONS, arguments_table, card_classes, card_path, render_card
from morbench.cli import main

CARDS = card_classes()
IDS = [cls.__name__ for cls in CARDS]


def test_every_registered_id_has_a_card_class():
    import morbench

    assert sorted(env_id for ids in CARDS.values() for env_id in ids) == morbench.list_envs()
    assert set(IDS) == {"QM9Env", "CNSEnv", "EnhancerEnv", "SummarizeEnv", "MotifsEnv"}


@pytest.mark.parametrize("cls", CARDS, ids=IDS)
def test_committed_readme_is_the_generated_card(cls):
    expected = render_card(cls, CARDS[cls])
    actual = card_path(cls).read_text()
    assert actual == expected, (
        f"{card_path(cls)} differs from the docstring of {cls.__qualname__}: edit the docstring and run "
        "`morbench card --write`"
    )


@pytest.mark.parametrize("cls", CARDS, ids=IDS)
def test_card_has_the_fixed_sections_in_order(cls):
    headings = [line[3:] for line in inspect.getdoc(cls).splitlines() if line.startswith("## ")]
    assert [h for h in headings if h in SECTIONS] == list(SECTIONS)


@pytest.mark.parametrize("cls", CARDS, ids=IDS)
def test_arguments_table_lists_every_constructor_argument_with_its_type_and_default(cls):
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    rows = arguments_table(inspect.getdoc(cls))
    assert [row["argument"] for row in rows] == [p.name for p in parameters]
    for row, parameter in zip(rows, parameters, strict=True):
        assert row["type"].replace("`", "").replace(" or ", " | ") == parameter.annotation, row
        assert row["default"] == f"`{parameter.default!r}`", row
        assert row["meaning"], row


@pytest.mark.parametrize("cls", CARDS, ids=IDS)
def test_card_example_runs_as_a_doctest(cls):
    tests = [t for t in doctest.DocTestFinder().find(cls, cls.__qualname__) if t.name == cls.__qualname__]
    assert tests and tests[0].examples, f"{cls.__qualname__}'s docstring has no >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{cls.__qualname__}'s example failed (see the captured output above)"


def test_render_card_fences_examples_and_names_every_id():
    class Fake:
        """Do one thing.

        >>> 1 + 1
        2

        ## Description
        Text.
        """

    text = render_card(Fake, ["morbench/Motifs-v0", "morbench/Motifs-2obj-v0"])
    assert text.splitlines()[1] == "# Motifs (`morbench/Motifs-v0`, `morbench/Motifs-2obj-v0`)"
    assert "```pycon\n>>> 1 + 1\n2\n```\n\n## Description\nText.\n" in text
    assert text.startswith("<!-- Generated from the docstring of") and "edit the docstring" in text


def test_render_card_puts_the_task_quality_section_before_the_version_history():
    class Fake:
        """Do one thing.

        ## Description
        Text.

        ## Version History
        * v0: initial version.
        """

    text = render_card(Fake, ["morbench/Motifs-v0"], reports={"morbench/Motifs-v0": None})
    assert text.index("## Task quality") < text.index("## Version History")
    assert "`morbench/Motifs-v0`: no report committed yet" in text
    assert text.endswith("## Version History\n* v0: initial version.\n")


def test_card_command_check_and_write(tmp_path, monkeypatch, capsys):
    """``morbench card --check`` fails on a stale README, ``--write`` regenerates it, printing is the default."""
    import morbench.cards as cards

    motifs = next(cls for cls in CARDS if cls.__name__ == "MotifsEnv")
    monkeypatch.setattr(cards, "card_path", lambda cls: tmp_path / f"{cls.__name__}.md")
    (tmp_path / "MotifsEnv.md").write_text("stale\n")
    assert main(["card", "morbench/Motifs-v0", "--check"]) == 1
    assert "MotifsEnv.md differs" in capsys.readouterr().err
    assert main(["card", "morbench/Motifs-v0", "--write"]) == 0
    assert (tmp_path / "MotifsEnv.md").read_text() == render_card(motifs, CARDS[motifs])
    assert main(["card", "morbench/Motifs-v0", "--check"]) == 0
    capsys.readouterr()
    assert main(["card", "morbench/Motifs-2obj-v0"]) == 0
    assert capsys.readouterr().out == render_card(motifs, CARDS[motifs])
    assert main(["card", "morbench/Motif-v0"]) == 2  # unknown id: the usual error with suggestions


def test_morbench_card_check_passes_on_the_committed_readmes():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "morbench", "card", "--check"], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
