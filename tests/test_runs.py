"""The run directory format: file modes, run.json and evaluation validation on read, run identity, the run lock."""

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from morbench.baselines import run_method
from morbench.errors import InvalidRunError, MorbenchError, RunLockedError
from morbench.runs import (
    LOCK_FILE,
    RunLock,
    atomic_write_bytes,
    atomic_write_json,
    identity_difference,
    read_evaluation,
    read_run,
    run_identity,
)
from morbench.scoring import score_run

ENV = "morbench/Motifs-2obj-v0"


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "prior"
    run_method("prior", ENV, out, eval_samples=8, progress=False)
    return out


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_and_run_files_are_world_readable(prior_run, tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_json(tmp_path / "b.json", {"a": 1})
    assert _mode(tmp_path / "a.bin") == 0o644 and _mode(tmp_path / "b.json") == 0o644
    for name in ("run.json", "evaluation.json.gz"):
        assert _mode(prior_run / name) == 0o644, name


def _copy_with(prior_run, tmp_path, edit_run=None, edit_evaluation=None):
    target = tmp_path / "run"
    shutil.copytree(prior_run, target)
    if edit_run is not None:
        record = json.loads((target / "run.json").read_text())
        edit_run(record)
        (target / "run.json").write_text(json.dumps(record))
    if edit_evaluation is not None:
        path = target / "evaluation.json.gz"
        evaluation = json.loads(gzip.decompress(path.read_bytes()))
        edit_evaluation(evaluation)
        path.write_bytes(gzip.compress(json.dumps(evaluation).encode()))
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("env"), "'env' must be an object"),
        (lambda r: r["compute"].__setitem__("oracle_calls", -5), "oracle_calls = -5 must be a non-negative integer"),
        (lambda r: r["compute"].__setitem__("sampled_tokens", 1.5), "sampled_tokens = 1.5"),
        (lambda r: r["compute"].__setitem__("wall_seconds", "fast"), "wall_seconds = 'fast'"),
        (lambda r: r.__setitem__("seed", "0"), "'seed' must be an integer"),
    ],
)
def test_run_json_fields_are_validated_on_read(prior_run, tmp_path, edit, message):
    target = _copy_with(prior_run, tmp_path, edit_run=edit)
    with pytest.raises(InvalidRunError, match=message) as info:
        score_run(target)
    assert "run.json" in str(info.value)


def _set_reward(value):
    def edit(evaluation):
        evaluation["preferences"][0]["rewards"][0][0] = value

    return edit


def _mark_invalid_as_valid(evaluation):
    entry = evaluation["preferences"][0]
    entry["sequences"][0] = "%%%"  # not in the alphabet: the task scores it invalid
    entry["valid"][0] = True


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_reward(5.0), "outside the task's reward space"),
        (_set_reward(-3.0), "outside the task's reward space"),
        (_set_reward(1e308), "outside the task's reward space"),
        (_mark_invalid_as_valid, r"1 sample\(s\) do not match re-scoring"),
        (lambda e: e["preferences"].pop(), "of the task's grid are missing"),
        (lambda e: e["preferences"][0].__setitem__("weights", [0.3, 0.7]), "not on the task's preference grid"),
        (lambda e: e["preferences"][1].__setitem__("weights", e["preferences"][0]["weights"]), "appears twice"),
        (lambda e: e["preferences"][0].__setitem__("logprobs", ["-1.0"] * 8), "logprobs must hold numbers"),
        (lambda e: e.pop("env"), "missing key 'env'"),
        (lambda e: e["preferences"][0]["sequences"].__setitem__(0, "A\ud800"), "is not valid Unicode text"),
    ],
)
def test_evaluation_files_are_checked_against_the_task_and_rescored(prior_run, tmp_path, edit, message):
    target = _copy_with(prior_run, tmp_path, edit_evaluation=edit)
    with pytest.raises(InvalidRunError, match=message) as info:
        score_run(target)
    assert "evaluation.json.gz" in str(info.value)


def test_a_reward_edited_within_the_reward_space_is_caught_and_the_row_named(prior_run, tmp_path):
    original = read_evaluation(prior_run)["preferences"][0]["rewards"][3][1]
    target = _copy_with(prior_run, tmp_path, edit_evaluation=_set_reward_row(3, 1, 1.0 - original))
    with pytest.raises(InvalidRunError, match=r"index=3 .*claimed .* vs recomputed"):
        read_evaluation(target)


def _set_reward_row(i, j, value):
    def edit(evaluation):
        evaluation["preferences"][0]["rewards"][i][j] = value

    return edit


def test_verified_evaluation_holds_the_recomputed_rewards_in_grid_order(prior_run, tmp_path):
    def shuffle_and_nudge(evaluation):
        evaluation["preferences"].reverse()
        evaluation["preferences"][0]["rewards"][0][0] += 5e-5  # inside the tolerance

    target = _copy_with(prior_run, tmp_path, edit_evaluation=shuffle_and_nudge)
    verified = read_evaluation(target)
    clean = read_evaluation(prior_run)
    assert [e["weights"] for e in verified["preferences"]] == [e["weights"] for e in clean["preferences"]]
    assert verified["preferences"][-1]["rewards"] == clean["preferences"][-1]["rewards"]


def test_run_identity_is_stable_and_names_what_changed():
    a = run_identity("morlhf", ENV, 0, {}, {"iterations": 8}, {"sampled_tokens": 100}, 0, 16)
    b = run_identity("morlhf", ENV, 0, {}, {"iterations": 8}, {"sampled_tokens": 100}, 0, 16)
    c = run_identity("morlhf", ENV, 0, {}, {"iterations": 9}, {"sampled_tokens": 100}, 0, 32)
    assert a == b and len(a["hash"]) == 16 and a["hash"] != c["hash"]
    difference = identity_difference(a, c)
    assert "config" in difference and "eval_samples: 16 -> 32" in difference and "seed" not in difference
    assert "older morbench" in identity_difference(None, c)


def test_the_finished_run_records_its_identity(prior_run):
    record = read_run(prior_run)
    assert record["identity"]["fields"]["method"] == "prior" and record["identity"]["fields"]["eval_samples"] == 8


def test_resuming_a_finished_run_with_other_settings_is_refused(prior_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(prior_run, target)
    assert run_method("prior", ENV, target, eval_samples=8, resume=True, progress=False) == target / "run.json"
    with pytest.raises(InvalidRunError, match="eval_samples: 8 -> 16"):
        run_method("prior", ENV, target, eval_samples=16, resume=True, progress=False)


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from morbench.runs import RunLock
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_second_process_on_a_locked_run_directory_fails_at_once(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        with pytest.raises(RunLockedError, match="another morbench process is writing to") as info, RunLock(tmp_path):
            pass
        assert time.perf_counter() - started < 1.0 and LOCK_FILE in str(info.value)
        assert isinstance(info.value, MorbenchError)
    finally:
        holder.kill()  # SIGKILL: the OS releases the lock, nothing is left stale
        holder.wait()
    with RunLock(tmp_path):
        pass


def test_the_lock_refuses_a_file_as_run_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidRunError, match="existing file"), RunLock(tmp_path / "file"):
        pass


def test_benchmark_refuses_to_reuse_runs_of_other_settings_and_reports_each_run(tmp_path, monkeypatch, capsys):
    import dataclasses

    from morbench.benchmark import SUITES, run_benchmark
    from morbench.errors import ConfigError

    payload = run_benchmark("smoke", tmp_path, methods=["prior"], workers=1, threads=1, progress=True, plots=False)
    assert not payload["failed"]
    err = capsys.readouterr().err
    assert "[1/1] ok" in err and f"{ENV} prior seed=0" in err and " s" in err  # a line per finished run
    recorded = read_run(next(tmp_path.glob("runs/*/prior/seed_0")))["identity"]["fields"]
    assert recorded["eval_samples"] == SUITES["smoke"][0].eval_samples and recorded["method"] == "prior"
    before = (tmp_path / "benchmark.json").read_bytes()
    n = SUITES["smoke"][0].eval_samples
    monkeypatch.setitem(SUITES, "smoke", [dataclasses.replace(SUITES["smoke"][0], eval_samples=n + 1)])
    with pytest.raises(ConfigError, match=rf"(?s)made with other settings.*eval_samples: {n} -> {n + 1}"):
        run_benchmark("smoke", tmp_path, methods=["prior"], workers=1, threads=1, progress=False, plots=False)
    assert (tmp_path / "benchmark.json").read_bytes() == before  # refused before any work


def test_the_recorded_commit_is_read_once_and_says_when_the_tree_differs(tmp_path, monkeypatch):
    """A study ran for hours while its checkout took new commits: its runs recorded whatever HEAD was when each
    finished, not the code they ran. The commit is read once per process; uncommitted changes add ``-dirty``."""
    import subprocess

    from morbench import runs

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "one")
    (tmp_path / "f.py").write_text("x = 1\n")
    head = runs.describe_checkout(tmp_path)
    assert head is not None and len(head) == 40  # an untracked file is not a change to the recorded code
    git("add", "f.py")
    assert runs.describe_checkout(tmp_path) == f"{head}-dirty"
    assert runs.describe_checkout(tmp_path / "..") in (None, runs.describe_checkout(tmp_path / ".."))  # no crash

    first = runs.git_commit()

    real_run = subprocess.run

    def moved_on(command, *args, **kwargs):
        assert command[0] != "git", "git was asked again"
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", moved_on)
    assert runs.git_commit() == first
    assert runs.write_run(tmp_path / "run", {"status": "complete"}).exists()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["commit"] == first
