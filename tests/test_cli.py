"""The command line: every bad value is refused before any work starts, as `morbench: error: ...` with exit code 2."""

import os
import signal
import subprocess
import sys
import time

import pytest

from morbench import cli
from morbench.errors import ConfigError
from morbench.runs import RunLock

ENV = "morbench/Motifs-2obj-v0"
TRAIN = ["train", "morlhf", "--env", ENV, "--quiet"]


def _run(argv, capsys):
    """(exit code, stderr) of ``morbench argv`` run in-process; argparse errors exit with 2 as well."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


BAD_VALUES = {
    "--set iterations=1.5": (["--set", "iterations=1.5"], "iterations=1.5 (float) is not an integer"),
    "--set iterations=true": (["--set", "iterations=true"], "iterations=True (bool) is not an integer"),
    "--set ppo.batch_size=16.0": (["--set", "ppo.batch_size=16.0"], "ppo.batch_size=16.0 (float) is not an integer"),
    "--set ppo.kl_coef=Infinity": (["--set", "ppo.kl_coef=Infinity"], "ppo.kl_coef=inf (float) is not a finite"),
    "--set ppo.kl_coef=NaN": (["--set", "ppo.kl_coef=NaN"], "is not a finite number"),
    "--set ppo=5": (["--set", "ppo=5"], "ppo=5 (int) is not a PPOConfig; set its fields one by one"),
    "--set ppo.bogus=1": (["--set", "ppo.bogus=1"], "PPOConfig has no field(s) ['ppo.bogus']"),
    "--set iterations=2**70": (["--set", f"iterations={2**70}"], "magnitude below 2**63"),
    "--set preferences=3": (["--set", "preferences=3"], "preferences=3 (int) is not a string"),
    "--set noequals": (["--set", "iterations"], "must look like key=value"),
    "--eval-samples 0": (["--eval-samples", "0"], "--eval-samples: 0 must be a positive integer"),
    "--eval-samples -3": (["--eval-samples", "-3"], "--eval-samples: -3 must be a positive integer"),
    "--budget-tokens 0": (["--budget-tokens", "0"], "--budget-tokens: 0 must be a positive integer"),
    "--seed 2**70": (["--seed", str(2**70)], "is out of range; use an integer in [0, 2**32)"),
    "--seed -1": (["--seed", "-1"], "is out of range"),
    "--seed 1.5": (["--seed", "1.5"], "seed '1.5' is not an integer"),
    "--env-kwarg bogus=1": (["--env-kwarg", "bogus=1"], "no constructor argument(s) ['bogus']; valid --env-kwarg"),
    "--env-kwarg max_length=abc": (["--env-kwarg", "max_length=abc"], "max_length='abc' (str) is not an integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_train_values_are_refused_before_any_work(case, tmp_path, capsys):
    extra, message = BAD_VALUES[case]
    out = tmp_path / "run"
    code, error = _run([*TRAIN, "--out", str(out), *extra], capsys)
    assert code == 2 and message in error, error
    assert "Traceback" not in error and "error: " in error
    assert not out.exists()  # nothing was created: the check came before any work


def test_bad_output_directories_are_refused(tmp_path, capsys):
    code, error = _run([*TRAIN, "--out", ""], capsys)
    assert code == 2 and "--out: the output directory is empty" in error
    (tmp_path / "file").write_text("x")
    code, error = _run([*TRAIN, "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "is an existing file, not a directory" in error
    code, error = _run(["benchmark", "--suite", "smoke", "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "is an existing file" in error


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_benchmark_workers_must_be_positive(workers, tmp_path, capsys):
    code, error = _run(["benchmark", "--suite", "smoke", "--out", str(tmp_path), "--workers", workers], capsys)
    assert code == 2 and "--workers" in error and "Traceback" not in error


def test_unknown_env_id_is_a_one_line_error_and_debug_shows_the_traceback(tmp_path, capsys):
    argv = ["train", "prior", "--env", "morbench/QM9-v9", "--out", str(tmp_path / "run")]
    code, error = _run(argv, capsys)
    assert code == 2 and error.startswith("morbench: error: unknown environment id 'morbench/QM9-v9'")
    assert "did you mean 'morbench/QM9-v1', 'morbench/QM9-v0'" in error and not (tmp_path / "run").exists()
    with pytest.raises(cli.MorbenchError):
        cli.main(["--debug", *argv])
    with pytest.raises(cli.MorbenchError):
        cli.main([*argv, "--debug"])


def test_benchmark_writes_to_results_of_its_suite_by_default(tmp_path, monkeypatch, capsys):
    import morbench.benchmark

    calls = []

    def fake_run_benchmark(suite, out, **kwargs):
        calls.append((suite, out))
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "results.md"), "w") as handle:
            handle.write("table\n")
        return {"failed": []}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(morbench.benchmark, "run_benchmark", fake_run_benchmark)
    assert cli.main(["benchmark", "--suite", "small", "--quiet"]) == 0
    assert calls == [("small", "results/small")] and "results/small/results.md" in capsys.readouterr().out


def test_parse_assignments_keeps_strings_and_parses_json():
    assert cli._parse_assignments(["a=1", "b=x", "c=[1, 2]", "d="], "--set") == {"a": 1, "b": "x", "c": [1, 2], "d": ""}
    with pytest.raises(ConfigError, match="key=value"):
        cli._parse_assignments(["=1"], "--set")


def test_two_trainers_started_at_once_on_one_out_the_second_fails_at_once(tmp_path):
    out = tmp_path / "run"
    argv = [*TRAIN, "--out", str(out), "--set", "iterations=500", "--set", "ppo.batch_size=32"]
    argv += ["--set", "ppo.minibatch_size=16", "--set", "checkpoint_every=1", "--eval-samples", "8"]
    command = [sys.executable, "-m", "morbench.cli", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    trainers = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        deadline = time.time() + 300
        while all(t.poll() is None for t in trainers):  # one of them must stop: the one without the lock
            assert time.time() < deadline, "neither trainer stopped: the second was not refused"
            time.sleep(0.05)
        loser = next(t for t in trainers if t.poll() is not None)
        winner = next(t for t in trainers if t is not loser)
        error = loser.stderr.read()
        assert loser.returncode == 2, error
        assert "morbench: error: another morbench process is writing to" in error and "Traceback" not in error
        assert winner.poll() is None  # the first one was not disturbed
    finally:
        for trainer in trainers:
            trainer.send_signal(signal.SIGKILL)
            trainer.wait()
    with RunLock(out):  # kill -9 left no stale lock: the run can be resumed at once
        pass
