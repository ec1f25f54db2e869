"""``morbench submit``: gathering run directories, consistency checks, refusal to overwrite, atomic writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from morbench.cli import main
from morbench.errors import InvalidRunError, SubmissionError
from morbench.leaderboard.schema import MAX_FILE_BYTES, read_submission
from morbench.leaderboard.submit import collect_runs, submit
from morbench.runs import RUN_FILE

from .conftest import ENV_ID


def test_submission_contents(base_file: Path) -> None:
    submission = read_submission(base_file)
    assert base_file.name == "random-letters.json.gz" and base_file.parent.name == "morbench_Motifs-2obj-v0"
    assert 0 < base_file.stat().st_size < MAX_FILE_BYTES
    assert submission["schema_version"] == 1
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
