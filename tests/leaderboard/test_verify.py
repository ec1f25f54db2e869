"""``morbench leaderboard verify`` and the verified ranking: only samples the leaderboard re-produced are ranked.

The fixtures are real Rewarded Soups runs on Motifs-2obj-v0 (one PPO iteration per expert): a small entry (2
seeds, 128 samples) for the bit-exact checks, and a rankable one (5 seeds at the protocol's 512 samples) verified
once from its saved experts, whose board the tests copy and tamper with.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from morbench.cli import main
from morbench.leaderboard.build import build_boards, build_leaderboard, difference_interval, rank_groups
from morbench.leaderboard.render import LeaderboardEntry, md
from morbench.leaderboard.schema import content_sha256, read_submission
from morbench.leaderboard.validate import validate_files
from morbench.leaderboard.verify import read_ledger, verify_file

from .conftest import ENV_ID, rescored, write_submission

STEM = ENV_ID.replace("/", "_")


def copy_board(ranked_board: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    board, runs = ranked_board
    target = tmp_path / "board"
    shutil.copytree(board, target)
    return target, runs


def board_rows(board: Path) -> tuple[str, str]:
    """(ranked part, unranked part) of the built README."""
    build_leaderboard(board / "submissions", board)
    readme = (board / "README.md").read_text()
    ranked, _, rest = readme.partition("### Unranked")
    return ranked, rest.split("### Submissions")[0]


def soup(board: Path) -> dict[str, Any]:
    return copy.deepcopy(read_submission(board / "submissions" / STEM / "soup.json.gz"))


# -- re-producing a baseline entry ----------------------------------------------------------------------------
def test_verify_reproduces_a_baseline_bit_exactly_by_retraining(small_baseline: tuple[Path, Path]) -> None:
    _, path = small_baseline
    outcome = verify_file(path, retrain=True, ledger=path.parent / "ledger.json")
    assert outcome.ok and outcome.how == "retrain", outcome.record
    record = read_ledger(path.parent / "ledger.json")[content_sha256(path.read_bytes())]
    assert record["verdict"] == "verified" and record["kind"] == "baseline" and sorted(record["seeds"]) == ["0", "1"]
    seed = record["seeds"]["0"]
    assert seed["compute"]["oracle_calls"] > 0 and seed["kl_to_prior"] is not None  # measured, recomputed


def test_verify_from_saved_models_and_a_changed_model_file(small_baseline: tuple[Path, Path], tmp_path: Path) -> None:
    runs, path = small_baseline
    ledger = tmp_path / "ledger.json"
    assert verify_file(path, artifacts=runs, ledger=ledger).how == "artifacts"
    assert read_ledger(ledger)[content_sha256(path.read_bytes())]["verdict"] == "verified"
    changed = tmp_path / "runs"
    shutil.copytree(runs, changed)
    weights = changed / "seed_0" / "experts" / "motif_1" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    outcome = verify_file(path, artifacts=changed, ledger=ledger)
    assert not outcome.ok and "experts/motif_1/model.safetensors" in outcome.record["message"]
    assert read_ledger(ledger)[content_sha256(path.read_bytes())]["verdict"] == "failed"


def test_one_changed_sequence_fails_verification(small_baseline: tuple[Path, Path], tmp_path: Path) -> None:
    runs, path = small_baseline
    submission = copy.deepcopy(read_submission(path))
    entry = submission["seeds"][0]["preferences"][2]
    entry["sequences"][5] = "AAAA" if entry["sequences"][5] != "AAAA" else "BBBB"
    tampered = write_submission(tmp_path / "submissions", rescored(submission))  # claims re-scored: it validates
    assert validate_files([tampered]).ok
    outcome = verify_file(tampered, artifacts=runs)
    assert not outcome.ok and "index 5: submitted 'AAAA'" in outcome.record["message"].replace("'BBBB'", "'AAAA'")
    assert read_ledger(tmp_path / "verified.json")[content_sha256(tampered.read_bytes())]["verdict"] == "failed"


def test_a_changed_reward_fails_verification(small_baseline: tuple[Path, Path], tmp_path: Path) -> None:
    runs, path = small_baseline
    submission = copy.deepcopy(read_submission(path))
    submission["seeds"][1]["preferences"][0]["rewards"][3][0] += 0.5
    tampered = write_submission(tmp_path / "submissions", submission)
    outcome = verify_file(tampered, artifacts=runs)
    assert not outcome.ok and "do not match re-scoring" in outcome.record["message"]


def test_cli_verify(small_baseline: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs, path = small_baseline
    ledger = tmp_path / "v.json"
    assert main(["leaderboard", "verify", str(path), "--artifacts", str(runs), "--ledger", str(ledger)]) == 0
    assert "1 verified, 0 failed" in capsys.readouterr().out
    assert main(["leaderboard", "verify", str(path), "--ledger", str(ledger), "--artifacts", str(tmp_path)]) == 1
    assert "no run directory" in capsys.readouterr().err


def test_submit_records_the_baseline_provenance(small_baseline: tuple[Path, Path]) -> None:
    runs, path = small_baseline
    provenance = read_submission(path)["provenance"]
    assert provenance["kind"] == "baseline" and provenance["method"] == "rewarded_soups"
    assert provenance["eval_samples"] == 128 and provenance["config"]["iterations"] == 1
    files = {a["seed"]: a["files"] for a in provenance["artifacts"]}
    assert sorted(files) == [0, 1] and "experts/motif_1/model.safetensors" in files[0]
    assert all(name.startswith("experts/") for name in files[1])  # the run's records are not artifacts


# -- policy artifacts -------------------------------------------------------------------------------------------
def test_policy_artifacts_are_verified_by_resampling(small_baseline: tuple[Path, Path], tmp_path: Path) -> None:
    """An external policy (here: the soup's experts, interpolated) evaluated with morbench.evaluate verifies."""
    import morbench
    from morbench.leaderboard.submit import submit
    from morbench.registry import make
    from morbench.serving import folder_digests, policy_from_provenance

    runs, _ = small_baseline
    artifacts = runs / "seed_0"
    provenance = {
        "kind": "policy",
        "models": [
            {"path": f"experts/{n}", "sha256": folder_digests(artifacts / "experts" / n)}
            for n in ("motif_1", "motif_2")
        ],
        "serving": "interpolate",
        "decoding": {"temperature": 1.0, "top_p": 1.0},
    }
    task = make(ENV_ID).unwrapped
    policy = policy_from_provenance(provenance, artifacts, task, 0)
    morbench.evaluate(
        policy,
        ENV_ID,
        seeds=[0, 1],
        out=tmp_path / "mine",
        method="soup_policy",
        samples_per_preference=128,
        progress=False,
    )
    path = submit(tmp_path / "mine", "Soup policy", tmp_path / "board" / "submissions", provenance=provenance)
    outcome = verify_file(path, artifacts=artifacts)
    assert outcome.ok and outcome.how == "artifacts", outcome.record
    bad = copy.deepcopy(provenance)
    bad["models"][0]["sha256"]["model.safetensors"] = "0" * 64  # another model than the one in the folder
    other = submit(tmp_path / "mine", "Soup policy 2", tmp_path / "board" / "submissions", provenance=bad)
    outcome = verify_file(other, artifacts=artifacts)
    assert not outcome.ok and "changed ['model.safetensors']" in outcome.record["message"]


# -- the verified ranking ---------------------------------------------------------------------------------------
def test_a_verified_entry_with_five_seeds_is_ranked(ranked_board: tuple[Path, Path], tmp_path: Path) -> None:
    board, _ = copy_board(ranked_board, tmp_path)
    ranked, unranked = board_rows(board)
    row = next(line for line in ranked.splitlines() if "**Soup**" in line)
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[0] == "1" and cells[1] == "1" and cells[-1] == "artifacts"  # rank, group, how verified
    assert "[" in cells[4] and cells[5] == "leader"  # a t-interval; the leader row
    assert "**Soup**" not in unranked
    assert "(self-reported)" not in cells[13]  # KL recomputed by the verifier


def test_editing_a_verified_file_or_borrowing_a_record_does_not_rank(
    ranked_board: tuple[Path, Path], tmp_path: Path
) -> None:
    """A passing record is bound to the exact bytes it verified: an edited file, or a hand-picked file next to a
    record for other content, is unranked."""
    board, _ = copy_board(ranked_board, tmp_path)
    edited = soup(board)
    edited["name"] = "Soup edited"
    edited["description"] = "edited after verification"
    write_submission(board / "submissions", edited)
    picked = soup(board)
    picked["name"] = "Hand picked"
    for seed in picked["seeds"]:
        for entry in seed["preferences"]:
            entry["sequences"] = ["ABCDEF"] * len(entry["sequences"])  # both motifs, hand-written
    path = write_submission(board / "submissions", rescored(picked))
    ledger = json.loads((board / "verified.json").read_text())
    (record,) = ledger["entries"].values()
    ledger["entries"]["0" * 64] = dict(record, file=path.name, name="Hand picked")  # a record of other content
    (board / "verified.json").write_text(json.dumps(ledger))
    ranked, unranked = board_rows(board)
    assert "**Soup**" in ranked
    for name in ("Soup edited", "Hand picked"):
        assert f"**{name}**" in unranked and f"**{name}**" not in ranked
    assert unranked.count("| not verified |") == 2


def test_cheating_submissions_cannot_enter_the_ranked_table(ranked_board: tuple[Path, Path], tmp_path: Path) -> None:
    """Hand-picked strings, the best sample repeated, the best 128 of 512 real samples, or samples only: none is
    ranked, whatever provenance it claims (re-sampling does not give its samples)."""
    board, runs = copy_board(ranked_board, tmp_path)
    reasons = {}
    for cheat in ("hand_picked", "duplicated_best", "cherry_picked", "samples_only"):
        submission = soup(board)
        submission["name"] = f"Cheat {cheat}"
        for seed in submission["seeds"]:
            for entry in seed["preferences"]:
                rewards = np.asarray(entry["rewards"]) @ np.asarray(entry["weights"])
                order = np.argsort(-rewards, kind="stable")
                if cheat in ("hand_picked", "samples_only"):
                    entry["sequences"] = ["ABCDEF", "EFGHAB"] * (len(entry["sequences"]) // 2)
                elif cheat == "duplicated_best":
                    entry["sequences"] = [entry["sequences"][order[0]]] * len(entry["sequences"])
                else:  # the best 128 of the 512 real samples
                    for field in ("sequences", "rewards", "valid", "logprobs", "prior_logprobs"):
                        if entry.get(field) is not None:
                            entry[field] = [entry[field][i] for i in sorted(order[:128])]
        if cheat == "samples_only":
            submission["provenance"] = {"kind": "samples"}
        if cheat == "cherry_picked":
            submission["provenance"]["eval_samples"] = 128
        path = write_submission(board / "submissions", rescored(submission))
        outcome = verify_file(path, artifacts=runs)
        assert not outcome.ok
        reasons[cheat] = outcome.record["message"]
    assert "differ from the re-produced ones" in reasons["hand_picked"]
    assert "differ from the re-produced ones" in reasons["duplicated_best"]
    assert "differ from the re-produced ones" in reasons["cherry_picked"]
    assert "samples alone cannot be re-produced" in reasons["samples_only"]
    ranked, unranked = board_rows(board)
    assert "Cheat" not in ranked and "**Soup**" in ranked
    rows = {line.split(" | ")[0]: line for line in unranked.splitlines() if line.startswith("| **Cheat")}
    assert "verification failed" in rows["| **Cheat hand\\_picked**"]
    assert "verification failed" in rows["| **Cheat duplicated\\_best**"]
    assert md("not at the protocol's sample count (128 of 512 per preference)") in rows["| **Cheat cherry\\_picked**"]
    assert "samples only" in rows["| **Cheat samples\\_only**"]


def test_schema_v1_files_load_as_unverified(base: dict[str, Any], tmp_path: Path) -> None:
    base["schema_version"] = 1
    del base["provenance"]
    path = write_submission(tmp_path / "submissions", base)
    report = validate_files([path])
    assert report.ok and report.valid[0].kind == "legacy"
    (board,) = build_boards(report.valid, {})
    assert not board.ranked and "schema v1" in board.unranked[0].reason


# -- statistics -------------------------------------------------------------------------------------------------
def _entry(name: str, values: dict[int, float]) -> LeaderboardEntry:
    from morbench.leaderboard.build import t_interval

    low, high = t_interval(list(values.values()))
    results = [{"seed": s, "hypervolume": v} for s, v in values.items()]
    mean = float(np.mean(list(values.values())))
    return LeaderboardEntry(
        {"name": name},
        results,
        {"hypervolume": {"mean": mean}},
        512,
        name,
        intervals={"hypervolume": {"mean": mean, "low": low, "high": high}},
    )


def test_rank_groups_and_the_paired_comparison() -> None:
    a = _entry("a", {0: 0.50, 1: 0.52, 2: 0.51, 3: 0.53, 4: 0.49})
    b = _entry("b", {0: 0.49, 1: 0.515, 2: 0.50, 3: 0.52, 4: 0.48})  # overlaps a
    c = _entry("c", {0: 0.30, 1: 0.31, 2: 0.29, 3: 0.30, 4: 0.32})
    d = _entry("d", {0: 0.29, 1: 0.31, 2: 0.30, 3: 0.30, 4: 0.31})
    entries = [a, b, c, d]
    rank_groups(entries)
    assert [e.group for e in entries] == [1, 1, 2, 2]
    paired = difference_interval(
        {s: r["hypervolume"] for s, r in zip(range(5), b.results, strict=True)},
        {s: r["hypervolume"] for s, r in zip(range(5), a.results, strict=True)},
    )
    assert paired["paired"] and paired["diff"] == pytest.approx(-0.009)
    assert paired["high"] < 0  # b is consistently below a, seed by seed, although the intervals overlap
    unpaired = difference_interval({5: 0.5, 6: 0.6}, {0: 0.5, 1: 0.52})
    assert unpaired is not None and not unpaired["paired"]


def test_nearest_serving_breaks_morlhf_anchor_ties_by_training_order() -> None:
    """MORLHF's anchors on a 3-objective grid leave L1 ties (e.g. (0, 1/3, 2/3) is as near to (0, 0, 1) as to the
    uniform point). MORLHF trains and verify re-serves with the same rule (``serving.nearest_policy``): from the
    trained preferences as run.json stores them (a JSON round trip), every grid point gets the model of the exact
    float64 L1 argmin (the first in training order on an exact tie)."""
    import numpy as np
    import torch

    from morbench.baselines.morlhf import trained_preferences
    from morbench.preferences import preference_key
    from morbench.registry import make
    from morbench.serving import nearest_policy

    task = make("morbench/QM9-v0").unwrapped
    points = trained_preferences(task, "anchors")
    keys = [preference_key(w) for w in points]
    models = {key: torch.nn.Identity() for key in keys}
    served = nearest_policy(models, task, points=json.loads(json.dumps(points.tolist())))  # as run.json stores them
    ties = 0
    for weights in task.preference_grid:
        distances = np.abs(points - weights).sum(axis=1)
        ties += int(np.isclose(distances, distances.min()).sum() > 1)
        assert served.model_for(weights) is models[keys[int(np.argmin(distances))]], weights
    assert ties > 0  # near-ties occur on this grid: the exact float64 distances decide, as in training


def test_concurrent_verifiers_keep_every_ledger_record(tmp_path):
    """Two verifiers finishing at once must not drop each other's record (read-modify-write under a lock)."""
    import threading

    from morbench.leaderboard.verify import read_ledger, record_in_ledger

    ledger = tmp_path / "verified.json"

    def write(prefix: str) -> None:
        for i in range(25):
            record_in_ledger(ledger, f"{prefix}{i:062d}", {"verdict": "verified", "file": f"{prefix}{i}"})

    threads = [threading.Thread(target=write, args=(p,)) for p in ("aa", "bb", "cc")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(read_ledger(ledger)) == 75


# -- scoring verified bytes from their claims -------------------------------------------------------------------
def test_verified_bytes_are_scored_from_their_claims_and_everything_else_is_rescored(
    ranked_board: tuple[Path, Path], tmp_path: Path
) -> None:
    """The builder re-scores once per file's bytes: the verifier's record (claims within TRUSTED_CLAIM_ERROR of its
    re-scoring) lets build take the claims; an edited file, or one without such a record, is re-scored."""
    from morbench.leaderboard.validate import TRUSTED_CLAIM_ERROR
    from morbench.leaderboard.verify import trusted_digests

    board, _ = copy_board(ranked_board, tmp_path)
    path = board / "submissions" / STEM / "soup.json.gz"
    sha = content_sha256(path.read_bytes())
    ledger = read_ledger(board / "verified.json")
    assert 0 <= ledger[sha]["claims_max_error"] <= TRUSTED_CLAIM_ERROR  # `morbench submit` rounds to 6 decimals
    assert trusted_digests(ledger) == {sha}
    edited = soup(board)
    edited["name"] = "Soup edited"
    write_submission(board / "submissions", edited)
    paths = sorted((board / "submissions").rglob("*.json.gz"))
    trusted = validate_files(paths, trusted=trusted_digests(ledger))
    rescored_all = validate_files(paths)
    assert trusted.ok and rescored_all.ok
    by_name = {v.name: v for v in trusted.valid}
    assert by_name["Soup"].claims_error is None  # claims taken
    assert by_name["Soup edited"].claims_error is not None  # other bytes: re-scored
    # the claims differ from the re-scoring by the 6-decimal rounding only: the board's numbers agree to that
    full = {v.name: v for v in rescored_all.valid}["Soup"]
    for a, b in zip(by_name["Soup"].evaluations, full.evaluations, strict=True):
        for pa, pb in zip(a["preferences"], b["preferences"], strict=True):
            assert pa["sequences"] == pb["sequences"] and pa["valid"] == pb["valid"]
            np.testing.assert_allclose(pa["rewards"], pb["rewards"], atol=TRUSTED_CLAIM_ERROR)
    assert build_leaderboard(board / "submissions", board).rescored == 1
    assert build_leaderboard(board / "submissions", board, rescore=True).rescored == 2


def test_claims_shifted_within_the_tolerance_are_rescored_not_trusted(
    ranked_board: tuple[Path, Path], tmp_path: Path
) -> None:
    """A verified submitter who nudges every claimed reward up by less than the validation tolerance (1e-4) gets
    no credit for it: verification measures the error, so the builder re-scores those bytes."""
    from morbench.leaderboard.verify import trusted_digests

    board, runs = copy_board(ranked_board, tmp_path)
    nudged = soup(board)
    nudged["name"] = "Soup nudged"
    for seed in nudged["seeds"]:
        for entry in seed["preferences"]:
            entry["rewards"] = [[min(1.0, v + 5e-5) for v in row] for row in entry["rewards"]]
    path = write_submission(board / "submissions", nudged)
    outcome = verify_file(path, artifacts=runs, ledger=board / "verified.json")
    assert outcome.ok, outcome.record  # the samples are re-produced; the claims pass the 1e-4 tolerance
    assert outcome.record["claims_max_error"] > 4e-5
    assert content_sha256(path.read_bytes()) not in trusted_digests(read_ledger(board / "verified.json"))
    (nudged_result,) = validate_files([path], trusted=trusted_digests(read_ledger(board / "verified.json"))).valid
    assert nudged_result.claims_error is not None  # re-scored: the board scores the recomputed rewards
    claimed = sum(np.sum(entry["rewards"]) for entry in nudged["seeds"][0]["preferences"])
    scored = sum(np.sum(entry["rewards"]) for entry in nudged_result.evaluations[0]["preferences"])
    assert scored < claimed


def test_entries_of_different_budgets_are_never_ranked_against_each_other(
    ranked_board: tuple[Path, Path], tmp_path: Path
) -> None:
    """A verified baseline trained on ten times the budget must not top the table of the others: each budget
    (sampled tokens, oracle calls, convention) is ranked on its own; a single-budget board renders as before."""
    from morbench.leaderboard.cache import CachedEntry
    from morbench.leaderboard.render import render_html, render_markdown

    board, _ = copy_board(ranked_board, tmp_path)
    report = validate_files(sorted((board / "submissions").rglob("*.json.gz")))
    ledger = read_ledger(board / "verified.json")
    (single,) = build_boards(report.valid, ledger)
    assert len(single.tracks) == 1 and single.ranked[0].rank == 1
    assert "### Budget" not in render_markdown([single]) and "Budget:" not in render_html([single])

    soup_entry = single.ranked[0]
    bigger = copy.deepcopy(soup_entry)
    bigger.submission["name"] = "Soup on ten times the tokens"
    bigger.submission["provenance"]["budget"] = {"sampled_tokens": 1_000_000, "oracle_calls": None}
    for result in bigger.results:
        result["hypervolume"] += 1.0  # better by far: it would lead a single table
    bigger.summary["hypervolume"] = {**bigger.summary["hypervolume"], "mean": soup_entry.mean("hypervolume") + 1.0}
    policy = copy.deepcopy(soup_entry)
    policy.submission["name"] = "A policy"
    policy.submission["provenance"] = {"kind": "policy", "models": [{"path": "m"}], "serving": "single"}
    cached = [CachedEntry("x", e.name, ENV_ID, e) for e in (bigger, policy)]
    (board_of_three,) = build_boards(report.valid, ledger, cached=cached)
    labels = [label for label, _ in board_of_three.tracks]
    assert labels == [  # from the smallest budget up; unknown last
        "1,000,000 sampled tokens (total convention)",
        "no budget limit (total convention)",
        "not a baseline: training budget not known",
    ]
    assert [[(e.name, e.rank, e.group) for e in entries] for _, entries in board_of_three.tracks] == [
        [("Soup on ten times the tokens", 1, 1)],
        [("Soup", 1, 1)],
        [("A policy", 1, 1)],
    ]
    assert all(e.vs_leader is None for e in board_of_three.ranked)  # every one leads its own table
    text = render_markdown([board_of_three])
    assert text.count("### Budget: ") == 3 and "never ranked against each other" in text
    assert render_html([board_of_three]).count("<h3>Budget: ") == 3
