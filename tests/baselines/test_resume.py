"""kill -9 in the middle of training, then --resume: the run ends exactly as an uninterrupted one."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

ENV = "morbench/Motifs-2obj-v0"
ARGS = [
    "iterative_rs",
    "--env",
    ENV,
    "--seed",
    "3",
    "--eval-samples",
    "16",
    "--quiet",
    "--set",
    "iterations=8",
    "--set",
    "merge_every=2",
    "--set",
    "checkpoint_every=1",
    "--set",
    "ppo.batch_size=32",
    "--set",
    "ppo.minibatch_size=16",
    "--set",
    "ppo.learning_rate=0.003",
]


def _train(out, *extra, background=False):
    command = [sys.executable, "-m", "morbench.cli", "train", *ARGS, "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if background:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _result(run_dir):
    evaluation = json.loads(gzip.decompress((run_dir / "evaluation.json.gz").read_bytes()))
    weights = load_file(run_dir / "merged" / "model.safetensors")
    compute = json.loads((run_dir / "run.json").read_text())["compute"]
    return evaluation["preferences"], weights, compute


def test_kill_9_and_resume_matches_an_uninterrupted_run(tmp_path):
    reference = _train(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr

    killed = tmp_path / "killed"
    process = _train(killed, background=True)
    deadline = time.time() + 300
    while not (killed / "checkpoint" / "state.json").exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.01)
    time.sleep(0.3)  # let it run past the first checkpoint, possibly into the middle of the next one
    process.send_signal(signal.SIGKILL)
    process.wait()
    if (killed / "run.json").exists():
        pytest.fail("the run finished before it could be killed; make it longer")
    curve_before = (killed / "curve.jsonl").read_text().count("\n")

    resumed = _train(killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    preferences, weights, compute = _result(killed)
    ref_preferences, ref_weights, ref_compute = _result(tmp_path / "reference")
    assert preferences == ref_preferences  # same sequences, rewards, log-probs at every preference
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)
    for key in ("oracle_calls", "sampled_tokens", "gradient_steps", "ppo_iterations"):
        assert compute[key] == ref_compute[key], key
    curve = [json.loads(line) for line in (killed / "curve.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in curve] == list(range(1, len(curve) + 1)) and len(curve) >= curve_before


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    process = _train(tmp_path, background=True)
    while not (tmp_path / "checkpoint" / "state.json").exists():
        assert process.poll() is None
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    other = subprocess.run(
        [sys.executable, "-m", "morbench.cli", "train", *ARGS[:4], "4", *ARGS[5:], "--out", str(tmp_path), "--resume"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert other.returncode == 2 and "belongs to" in other.stderr
    fresh = subprocess.run(
        [sys.executable, "-m", "morbench.cli", "train", *ARGS, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert fresh.returncode == 2 and "--resume" in fresh.stderr
