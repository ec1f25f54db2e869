"""Entries assembled from one-seed parts verified when their runs finished (morbench.leaderboard.parts).

A paper-scale study's runs lose their weights with the checkout that made them; each run's part is verified from
its models right away, and the entry merged from the parts later is ranked on the ledger's per-seed digests.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from morbench.errors import SubmissionError
from morbench.leaderboard.parts import bank_part, merge_parts, part_is_verified
from morbench.leaderboard.schema import dumps_submission, read_submission
from morbench.leaderboard.verify import read_ledger, verify_file

from .conftest import ENV_ID

STEM = ENV_ID.replace("/", "_")


@pytest.fixture
def parts(ranked_board: tuple[Path, Path], tmp_path: Path) -> tuple[Path, list[Path]]:
    """(board, the five seeds' parts verified into its ledger); the board holds no entry of its own."""
    _, runs = ranked_board
    board = tmp_path / "board"
    (board / "submissions" / STEM).mkdir(parents=True)
    ledger = board / "verified.json"
    made = []
    for seed in range(5):
        path = tmp_path / "parts" / f"seed_{seed}.json.gz"
        outcome = bank_part(runs / f"seed_{seed}", path, f"Soup seed {seed}", "one seed", ledger)
        assert outcome is not None and outcome.ok and outcome.how == "artifacts"
        assert bank_part(runs / f"seed_{seed}", path, f"Soup seed {seed}", "one seed", ledger) is None  # once
        made.append(path)
    return board, made


def test_an_entry_merged_from_verified_parts_is_ranked_without_its_runs(parts: tuple[Path, list[Path]]) -> None:
    from morbench.leaderboard.build import build_leaderboard

    board, paths = parts
    again = verify_file(paths[3], ledger=board / "verified.json")  # a part verified again replaces its record...
    assert again.ok and again.how == "parts"
    merged = merge_parts(list(reversed(paths)), "Soup from parts", "merged")
    assert [s["seed"] for s in merged["seeds"]] == [0, 1, 2, 3, 4]
    assert [a["seed"] for a in merged["provenance"]["artifacts"]] == [0, 1, 2, 3, 4]
    entry = board / "submissions" / STEM / "soup-from-parts.json.gz"
    entry.write_bytes(dumps_submission(merged))
    outcome = verify_file(entry)  # the board's ledger; no artifacts, nothing re-trained
    assert outcome.ok and outcome.how == "parts", outcome.record
    vouchers = {seed: info["part"]["how"] for seed, info in outcome.record["seeds"].items()}
    assert vouchers == {
        "0": "artifacts",
        "1": "artifacts",
        "2": "artifacts",
        "3": "parts",
        "4": "artifacts",
    }  # ...and still vouches
    assert all(seed["kl_to_prior"] is not None for seed in outcome.record["seeds"].values())
    build_leaderboard(board / "submissions", board)
    ranked = (board / "README.md").read_text().partition("### Unranked")[0]
    row = next(line for line in ranked.splitlines() if "**Soup from parts**" in line)
    assert row.rstrip(" |").endswith("parts")


def test_a_changed_seed_entry_is_not_vouched_for(parts: tuple[Path, list[Path]]) -> None:
    """Samples swapped with their claims (the file validates): not what a part re-produced, so verify re-produces
    the entry itself (re-training here) and the samples differ."""
    board, paths = parts
    merged = merge_parts(paths, "Soup swapped", "merged, then two samples swapped")
    preference = merged["seeds"][2]["preferences"][0]
    i = next(i for i, seq in enumerate(preference["sequences"]) if seq != preference["sequences"][0])
    for values in preference.values():
        if isinstance(values, list) and len(values) == len(preference["sequences"]):
            values[0], values[i] = values[i], values[0]
    entry = board / "submissions" / STEM / "soup-swapped.json.gz"
    entry.write_bytes(dumps_submission(merged))
    outcome = verify_file(entry)
    assert not outcome.ok and "differ from the re-produced ones (retrain)" in outcome.record["message"]
    ledger = board / "verified.json"
    assert len(read_ledger(ledger)) == 6  # five parts and the failed entry
    # a part whose bytes changed is not verified any more (bank_part would make and verify it again)
    assert part_is_verified(paths[0], ledger)
    paths[0].write_bytes(dumps_submission({**read_submission(paths[0]), "description": "edited"}))
    assert not part_is_verified(paths[0], ledger)


def test_parts_of_different_runs_or_the_same_seed_do_not_merge(parts: tuple[Path, list[Path]], tmp_path: Path) -> None:
    _, paths = parts
    with pytest.raises(SubmissionError, match="both hold seed 1"):
        merge_parts([paths[1], paths[1]], "Twice", "")
    other = copy.deepcopy(read_submission(paths[3]))
    other["provenance"]["budget"]["sampled_tokens"] = 1 + (other["provenance"]["budget"]["sampled_tokens"] or 0)
    odd = tmp_path / "odd.json.gz"
    odd.write_bytes(dumps_submission(other))
    with pytest.raises(SubmissionError, match="differ in env, method, config, protocol or provenance"):
        merge_parts([paths[0], odd], "Mixed", "")
    with pytest.raises(SubmissionError, match="no parts"):
        merge_parts([], "Nothing", "")


def test_the_study_command_submits_each_row_whose_every_seed_has_a_verified_part(
    parts: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`morbench study paper-qm9 --submit`: rows with every seed's part become verified entries; the rest wait."""
    import morbench.study as study_module
    from morbench.cli import main
    from morbench.study import Study, StudyRow, study_jobs

    from .conftest import SOUP

    board, paths = parts
    rows = (
        StudyRow("rewarded_soups/total", "rewarded_soups", ENV_ID, 10_000, 512, dict(SOUP)),
        StudyRow("morlhf/total", "morlhf", ENV_ID, 10_000, 512, dict(SOUP)),
        StudyRow("prior/total", "prior", ENV_ID, 10_000, 512, {}),
    )
    study = Study("paper-qm9", "paper", ENV_ID, "A stand-in for the paper study", rows)  # no full stop, as ours
    monkeypatch.setattr(study_module, "get_study", lambda name, smoke=False: study)
    out = tmp_path / "studies" / "paper-qm9"
    for job in study_jobs(study, out, ledger=board / "verified.json"):
        if job.row == "rewarded_soups/total":  # the parts land where the study's runs would have made them
            Path(job.part).parent.mkdir(parents=True, exist_ok=True)
            Path(job.part).write_bytes(paths[job.job.seed].read_bytes())
        elif job.row == "morlhf/total" and job.job.seed < 2:
            Path(job.part).parent.mkdir(parents=True, exist_ok=True)
            Path(job.part).write_bytes(b"not a verified part")
    submit = ["study", "paper-qm9", "--out", str(out), "--submit", "--board", str(board)]
    assert main(submit) == 0
    printed = capsys.readouterr().out
    assert "rewarded_soups/total: verified (parts)" in printed
    assert "morlhf/total: skipped (5 of 5 seeds lack a part)" in printed
    assert "prior/total: skipped (the untuned prior" in printed
    entry = board / "submissions" / STEM / "rewarded_soups-paper-qm9-total.json.gz"
    assert [s["seed"] for s in read_submission(entry)["seeds"]] == [0, 1, 2, 3, 4]
    assert read_submission(entry)["description"].startswith(
        "morbench study paper-qm9, row rewarded_soups/total: A stand-in for the paper study. Budget 10,000 sampled"
    )  # regression: the study's description and the budget ran together ("...study Budget")
    # submitting again as more rows' parts arrive keeps the entries already submitted byte for byte ...
    unchanged = entry.read_bytes()
    assert main(submit) == 0 and "rewarded_soups/total: verified (" in capsys.readouterr().out
    assert entry.read_bytes() == unchanged
    # ... and an entry of that name with other contents is replaced only with --force
    entry.write_bytes(b"an edited entry")
    assert main(submit) == 2 and "pass --force to replace it" in capsys.readouterr().err
    assert main([*submit, "--force"]) == 0 and entry.read_bytes() == unchanged
