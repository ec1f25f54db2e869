"""kill -9 in the middle of training, then --resume: the run ends exactly as an uninterrupted one."""

import gzip
import json
import os
import re
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
    "--checkpoint-seconds",
    "0",  # checkpoint at every checkpoint_every iterations (the default allows one per minute)
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


# -- damaged checkpoints: every corruption is a clear CheckpointError and nothing is restored or written ------
@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A run killed with SIGKILL after its first checkpoint (copied by each test before it is damaged)."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    process = _train(out, background=True)
    deadline = time.time() + 300
    while not (out / "checkpoint" / "checksums.json").exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "run.json").exists()
    return out


def _flip_low_bits(path, count=64):
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    for i in range(count):
        data[header + 4 * i] ^= 1  # the lowest mantissa bit of a little-endian float32
    path.write_bytes(bytes(data))


def _edit_a_digit(path):
    text = path.read_text()
    i = text.index('"oracle_calls"')
    j = next(k for k in range(i, len(text)) if text[k].isdigit())
    path.write_text(text[:j] + "9" + text[j:])


def _with_checksums(path, text):
    """Replace a file and recompute the checksums, as a careless tool would: structure checks still apply."""
    import hashlib

    path.write_text(text)
    sums_path = path.parent / "checksums.json"
    sums = json.loads(sums_path.read_text())
    sums["sha256"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    sums_path.write_text(json.dumps(sums))


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[5] = ord("7") if data[5] != ord("7") else ord("8")
    path.unlink()  # a hard link to the live log: edit this copy only
    path.write_bytes(bytes(data))


def _as_file(checkpoint):
    import shutil

    shutil.rmtree(checkpoint)
    checkpoint.write_text("not a checkpoint")


DAMAGE = {
    "flipped float bits": (lambda c: _flip_low_bits(c / "tensors.safetensors"), "tensors.safetensors: SHA-256"),
    "edited digit": (lambda c: _edit_a_digit(c / "state.json"), "state.json: SHA-256"),
    "truncated tensors": (
        lambda c: (c / "tensors.safetensors").write_bytes((c / "tensors.safetensors").read_bytes()[:1000]),
        "tensors.safetensors: SHA-256",
    ),
    "empty list state": (lambda c: (c / "state.json").write_text("[]"), "state.json: SHA-256"),
    "empty list state, checksums recomputed": (
        lambda c: _with_checksums(c / "state.json", "[]"),
        "holds a list, not a checkpoint state",
    ),
    "no checksums": (lambda c: (c / "checksums.json").unlink(), "checksums.json: missing"),
    "oracle cache log edited": (lambda c: _flip_a_byte(c / "oracle-cache.jsonl"), "oracle-cache.jsonl: SHA-256"),
    "oracle cache log truncated": (
        lambda c: (c / "oracle-cache.jsonl").write_bytes((c / "oracle-cache.jsonl").read_bytes()[:10]),
        "oracle-cache.jsonl: holds 10 bytes",
    ),
    "checkpoint is a file": (_as_file, "is not a directory"),
    "thread count edited, checksums recomputed": (
        lambda c: _with_checksums(
            c / "state.json", re.sub(r'"torch_threads", \d+', '"torch_threads", 0', (c / "state.json").read_text())
        ),
        "its torch thread count 0 is not a positive integer",
    ),
    "CPU list edited, checksums recomputed": (
        lambda c: _with_checksums(
            c / "state.json",
            (c / "state.json").read_text().replace('"trained_on", {"__list__": [', '"trained_on", {"__list__": [7, '),
        ),
        "its list of CPUs the run trained on [7, ",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_fails_resume_clearly_and_restores_nothing(interrupted_run, tmp_path, damage, capsys):
    import shutil

    from morbench.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(interrupted_run, run_dir)
    corrupt, message = DAMAGE[damage]
    corrupt(run_dir / "checkpoint")
    before = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert main(["train", *ARGS, "--out", str(run_dir), "--resume"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("morbench: error: ") and message in error, error
    assert "Traceback" not in error and "delete" in error.lower() and "start" in error
    after = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before  # no partial state: nothing written, nothing removed


def test_a_resume_on_another_cpu_warns_and_run_json_names_both_cpus(interrupted_run, tmp_path, capsys):
    """Torch's CPU kernels round differently across CPU models (AVX2 vs AVX512, Intel vs AMD): a run checkpointed on
    one and resumed on another is not bit-identical to either uninterrupted run. paper-qm9's Rewards-in-Context
    ``total`` seed 0 was resumed across sessions that landed on an AMD EPYC and an Intel Xeon, and its re-run did not
    reproduce its record with nothing saying why: the resume now warns and run.json lists both CPUs."""
    import shutil

    from morbench.cli import main
    from morbench.runs import cpu_kernels, read_run

    run_dir = tmp_path / "run"
    shutil.copytree(interrupted_run, run_dir)
    state = run_dir / "checkpoint" / "state.json"
    text = state.read_text()
    assert '"trained_on", {"__list__": [{"__dict__": [["cpu", ' in text  # the checkpoint names the CPU it ran on
    _with_checksums(state, re.sub(r'\["cpu", "[^"]*"\]', '["cpu", "Elsewhere 9000"]', text, count=1))
    assert main(["train", *ARGS, "--out", str(run_dir), "--resume"]) == 0
    error = capsys.readouterr().err
    assert "WARNING: resuming on another CPU" in error and "Elsewhere 9000" in error, error
    hardware = read_run(run_dir)["hardware"]
    assert hardware["trained_on"][0]["cpu"] == "Elsewhere 9000"
    assert hardware["trained_on"][1:] == [cpu_kernels()]
    assert {hardware["cpu"], hardware["cpu_capability"]} == set(cpu_kernels().values())


def test_a_resume_on_the_same_cpu_says_nothing_of_cpus(interrupted_run, tmp_path, capsys):
    import shutil

    from morbench.cli import main
    from morbench.runs import read_run

    run_dir = tmp_path / "run"
    shutil.copytree(interrupted_run, run_dir)
    assert main(["train", *ARGS, "--out", str(run_dir), "--resume"]) == 0
    assert "another CPU" not in capsys.readouterr().err
    assert "trained_on" not in read_run(run_dir)["hardware"]
