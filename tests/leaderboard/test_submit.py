"""``morbench submit``: gathering run directories, consistency checks, refusal to overwrite, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from morbench.cli import main
from morbench.errors import InvalidRunError, SubmissionError, SubmissionNameError
from morbench.leaderboard.schema import MAX_FILE_BYTES, SCHEMA_VERSION, read_submission
from morbench.leaderboard.submit import collect_runs, submit
from morbench.runs import RUN_FILE

from .conftest import ENV_ID


def test_submission_contents(base_file: Path) -> None:
    submission = read_submission(base_file)
    assert base_file.name == "random-letters.json.gz" and base_file.parent.name == "morbench_Motifs-2obj-v0"
    assert 0 < base_file.stat().st_size < MAX_FILE_BYTES
    assert submission["schema_version"] == SCHEMA_VERSION
    assert submission["env"]["id"] == ENV_ID and submission["env"]["version"] == 0
    assert submission["method"] == "random_letters"
    assert submission["config"] == {"letters": "A-L", "length": [1, 6]}
    assert [s["seed"] for s in submission["seeds"]] == [0, 1, 2]
    seed = submission["seeds"][0]
    assert set(seed["compute"]) >= {"oracle_calls", "sampled_tokens", "wall_seconds"}
    assert seed["hardware"]["morbench"] == submission["morbench"]["version"]
    entry = seed["preferences"][0]
    assert len(entry["sequences"]) == len(entry["rewards"]) == len(entry["valid"]) == 128
    assert entry["prior_logprobs"] is not None and entry["contexts"] is None


def test_submit_is_deterministic(run_root: Path, base_file: Path, tmp_path: Path) -> None:
    again = submit(run_root, "Random letters", tmp_path, description="uniform random strings")
    assert again.read_bytes() == base_file.read_bytes()


def test_refuses_to_overwrite_without_force(run_root: Path, tmp_path: Path) -> None:
    first = submit(run_root, "Mine", tmp_path)
    before = first.read_bytes()
    with pytest.raises(SubmissionError, match=r"already exists.*--force"):
        submit(run_root, "mine", tmp_path, description="changed")  # same name, case-insensitively
    assert first.read_bytes() == before
    second = submit(run_root, "Mine", tmp_path, description="changed", force=True)
    assert second == first and read_submission(second)["description"] == "changed"


def test_a_single_seed_run_directory(run_root: Path, tmp_path: Path) -> None:
    path = submit(run_root / "seed_1", "One seed", tmp_path)
    assert [s["seed"] for s in read_submission(path)["seeds"]] == [1]


def test_several_groups_need_a_choice(run_root: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(run_root, mixed / "a")
    shutil.copytree(run_root, mixed / "b")
    record = json.loads((mixed / "b" / "seed_0" / RUN_FILE).read_text())
    record["method"] = "other"
    (mixed / "b" / "seed_0" / RUN_FILE).write_text(json.dumps(record))
    with pytest.raises(SubmissionError, match=r"several .* groups match.*random_letters"):
        collect_runs(mixed)
    assert collect_runs(mixed, method="other") == [mixed / "b" / "seed_0"]
    with pytest.raises(SubmissionError, match="nothing matches"):
        collect_runs(mixed, env_id="morbench/QM9-v0")


def test_repeated_seed_is_refused(run_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(run_root, runs)
    shutil.copytree(runs / "seed_0", runs / "seed_0_again")
    with pytest.raises(SubmissionError, match="both seed 0"):
        submit(runs, "Repeated", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_inconsistent_config_is_refused(run_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(run_root, runs)
    record = json.loads((runs / "seed_2" / RUN_FILE).read_text())
    record["config"]["letters"] = "A-F"
    (runs / "seed_2" / RUN_FILE).write_text(json.dumps(record))
    with pytest.raises(SubmissionError, match="different config"):
        submit(runs, "Mixed", tmp_path / "out")


def test_incomplete_run_is_refused_and_nothing_is_written(run_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(run_root, runs)
    record = json.loads((runs / "seed_1" / RUN_FILE).read_text())
    record["status"] = "running"
    (runs / "seed_1" / RUN_FILE).write_text(json.dumps(record))
    with pytest.raises(InvalidRunError, match="did not complete"):
        submit(runs, "Partial", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tampered_rewards_fail_before_anything_is_written(
    run_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import morbench.leaderboard.submit as submit_module

    original = submit_module.make_submission

    def tampered(*args, **kwargs):
        submission = original(*args, **kwargs)
        submission["seeds"][0]["preferences"][0]["rewards"][0] = [1.0, 1.0]
        return submission

    monkeypatch.setattr(submit_module, "make_submission", tampered)
    with pytest.raises(SubmissionError, match="do not match re-scoring"):
        submit(run_root, "Tampered", tmp_path)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_cli_submit(run_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["submit", str(run_root), "--name", "CLI run", "--out-dir", str(tmp_path), "--code-url", "https://x.org/c"]
    assert main(args) == 0
    assert "submission written" in capsys.readouterr().out
    path = tmp_path / "morbench_Motifs-2obj-v0" / "cli-run.json.gz"
    assert read_submission(path)["code_url"] == "https://x.org/c"
    assert main(args) == 2  # exists: refused with a clear error, exit code 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


# -- names and output paths (issue 13 item 8, issue 14 item 9) ------------------------------------------------------
def _no_rescoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ``submit`` reaches the expensive part (reading evaluations, re-scoring)."""
    import morbench.leaderboard.submit as submit_module

    def expensive(*args, **kwargs):
        raise AssertionError("the runs were read and re-scored before the output path was checked")

    monkeypatch.setattr(submit_module, "make_submission", expensive)
    monkeypatch.setattr(submit_module, "validate_submission", expensive)


def test_refuses_to_overwrite_an_unreadable_file(run_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "morbench_Motifs-2obj-v0" / "mine.json.gz"
    target.parent.mkdir()
    target.write_bytes(b"not gzip at all")  # e.g. a half-written or hand-edited file
    with pytest.raises(
        SubmissionError, match=r"mine.json.gz: a file \(not a readable submission\) already exists.*--force"
    ):
        submit(run_root, "Mine", tmp_path)
    assert target.read_bytes() == b"not gzip at all"
    assert submit(run_root, "Mine", tmp_path, force=True) == target
    assert read_submission(target)["name"] == "Mine"


def test_out_dir_that_is_a_file_fails_before_rescoring(
    run_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_rescoring(monkeypatch)
    a_file = tmp_path / "submissions.txt"
    a_file.write_text("x")
    with pytest.raises(SubmissionError, match=r"submissions.txt is a file"):
        submit(run_root, "Mine", a_file)
    with pytest.raises(SubmissionError, match=r"submissions.txt is a file"):
        submit(run_root, "Mine", a_file / "below")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "morbench_Motifs-2obj-v0").write_text("x")  # the env folder is a file
    with pytest.raises(SubmissionError, match=r"morbench_Motifs-2obj-v0: exists and is not a directory"):
        submit(run_root, "Mine", tmp_path / "out")


def test_existing_submission_fails_before_rescoring(
    run_root: Path, base_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_rescoring(monkeypatch)
    with pytest.raises(SubmissionError, match=r"'Random letters' already exists.*--force"):
        submit(run_root, "RANDOM LETTERS", base_file.parents[1])


def test_cyrillic_lookalike_of_an_existing_name_is_refused_even_with_force(
    run_root: Path, base_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_rescoring(monkeypatch)
    for force in (False, True):
        with pytest.raises(SubmissionNameError) as info:
            submit(run_root, "R\u0430ndom letters", base_file.parents[1], force=force)
        message = str(info.value)
        assert "'R\\u0430ndom letters'" in message and "'Random letters'" in message and str(base_file) in message
    assert sorted(p.name for p in base_file.parent.iterdir()) == [base_file.name]


def test_bidi_override_name_is_refused(run_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_rescoring(monkeypatch)
    with pytest.raises(SubmissionNameError, match="RIGHT-TO-LEFT OVERRIDE"):
        submit(run_root, "\u202esrettel modnaR", tmp_path)
    assert not any(tmp_path.iterdir())


def test_name_is_stored_in_nfkc_form(run_root: Path, tmp_path: Path) -> None:
    path = submit(run_root, " \uff2dine\u00a0v2 ", tmp_path)  # fullwidth M, no-break space, padding
    assert path.name == "mine-v2.json.gz" and read_submission(path)["name"] == "Mine v2"


def test_submission_file_is_world_readable(run_root: Path, tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        path = submit(run_root, "Mine", tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_unwritable_out_dir_fails_before_rescoring(
    run_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import morbench.leaderboard.submit as submit_module

    _no_rescoring(monkeypatch)
    monkeypatch.setattr(submit_module.os, "access", lambda path, mode: False)  # as a non-owner sees it
    with pytest.raises(SubmissionError, match=r"is not writable by this user"):
        submit(run_root, "Mine", tmp_path / "new" / "submissions")
