"""Fuzzing what morbench reads from disk: checkpoints (random byte corruption), evaluation and run files (random
JSON mutations, then ``score_run``), and leaderboard submissions (random mutations, then ``validate_submission``)."""

from __future__ import annotations

import copy
import gzip
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from morbench.baselines.checkpoint import load_checkpoint, save_checkpoint
from morbench.errors import MorbenchError

from .conftest import fuzz

ENV = "morbench/Motifs-2obj-v0"

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()  # NaN and infinities too: json.dumps writes them, json.loads reads them back
    | st.sampled_from([1e308, -1e308, 5.0, -3.0, 0.5, "", "\u202e", "<script>"])
    | st.text(max_size=12)
    | st.text(st.characters(categories=("Cs", "Ll")), min_size=1, max_size=4),  # lone surrogates, as "\ud800"
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _paths(tree, prefix=()):
    """Every location in a JSON tree (lists and dicts included), as key paths."""
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree[:4]):  # the first few items: the rest are alike
            yield from _paths(value, (*prefix, i))


def _mutate(tree, data, label):
    """One random edit: replace a value, delete a key or item, duplicate an item, or add a key."""
    paths = list(_paths(tree))
    path = paths[data.draw(st.integers(0, len(paths) - 1), label=f"{label} location")]
    operation = data.draw(st.sampled_from(["replace", "delete", "duplicate", "add"]), label=f"{label} operation")
    if not path:
        return data.draw(JSON_VALUES, label=f"{label} document") if operation == "replace" else tree
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if operation == "replace":
        parent[key] = data.draw(JSON_VALUES, label=f"{label} value")
    elif operation == "delete":
        del parent[key]
    elif operation == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    elif operation == "add" and isinstance(parent[key], dict):
        parent[key][data.draw(st.text(max_size=8), label=f"{label} key")] = data.draw(JSON_VALUES)
    return tree


# -- checkpoints ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    state = {
        "weights": {"w": torch.randn(16, 8), "b": torch.zeros(8, dtype=torch.float64)},
        "rng": torch.Generator().manual_seed(1).get_state(),
        "counters": [1, 2.5, "x", None, True],
        "nested": ({"calls": 743},),
    }
    directory = tmp_path_factory.mktemp("checkpoint") / "checkpoint"
    save_checkpoint(directory, state)
    return directory


def _same_state(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b)


@fuzz(40)
@given(data=st.data())
def test_a_corrupted_checkpoint_loads_identically_or_raises_checkpoint_error(checkpoint_dir, data):
    original = load_checkpoint(checkpoint_dir)
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = Path(tmp) / "checkpoint"
        shutil.copytree(checkpoint_dir, copy_dir)
        name = data.draw(st.sampled_from(["tensors.safetensors", "state.json", "checksums.json"]), label="file")
        path = copy_dir / name
        content = bytearray(path.read_bytes())
        kind = data.draw(st.sampled_from(["bytes", "truncate", "append", "bits"]), label="corruption")
        if kind == "bytes":
            for _ in range(data.draw(st.integers(1, 8), label="count")):
                content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
        elif kind == "bits":
            for _ in range(data.draw(st.integers(1, 64), label="count")):
                content[data.draw(st.integers(0, len(content) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "truncate":
            content = content[: data.draw(st.integers(0, len(content) - 1), label="length")]
        else:
            content += data.draw(st.binary(min_size=1, max_size=64), label="tail")
        path.write_bytes(bytes(content))
        try:
            loaded = load_checkpoint(copy_dir)
        except MorbenchError as exc:
            assert str(copy_dir) in str(exc)  # the message names the damaged checkpoint
            return
        assert _same_state(loaded, original), f"a corrupted {name} loaded as a different state"


# -- evaluation and run files -> score_run ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from morbench.baselines import run_method

    out = tmp_path_factory.mktemp("runs") / "prior"
    run_method("prior", ENV, out, eval_samples=4, progress=False)
    return out


@fuzz(40)
@given(data=st.data())
def test_a_mutated_run_directory_scores_in_range_or_raises_morbench_error(run_dir, data):
    from morbench.scoring import score_run

    evaluation = json.loads(gzip.decompress((run_dir / "evaluation.json.gz").read_bytes()))
    record = json.loads((run_dir / "run.json").read_text())
    for i in range(data.draw(st.integers(1, 3), label="edits")):
        if data.draw(st.booleans(), label=f"edit {i} in run.json"):
            record = _mutate(record, data, f"run.json edit {i}")
        else:
            evaluation = _mutate(evaluation, data, f"evaluation edit {i}")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "run"
        target.mkdir()
        (target / "run.json").write_text(json.dumps(record))
        (target / "evaluation.json.gz").write_bytes(gzip.compress(json.dumps(evaluation).encode()))
        try:
            result = score_run(target, domain=data.draw(st.booleans(), label="domain"))
        except MorbenchError:
            return
    for value in result["per_objective_mean"].values():
        assert 0.0 <= value <= 1.0
    for key in ("hypervolume", "average_reward", "expected_utility"):
        assert math.isfinite(result[key]) and 0.0 <= result[key] <= 1.0 + 1e-9, key
    for row in result["per_preference"]:
        assert all(0.0 <= v <= 1.0 for v in row["mean"])


# -- submissions -> the leaderboard's validate_submission ----------------------------------------------------------
@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    import morbench
    from morbench.leaderboard.submit import make_submission
    from morbench.runs import find_runs

    def letters(preference, num_samples, seed):
        rng = np.random.default_rng(seed)
        return ["".join(rng.choice(list("ABCDEFGHIJKL"), size=int(rng.integers(1, 7)))) for _ in range(num_samples)]

    out = tmp_path_factory.mktemp("submission_runs")
    morbench.evaluate(letters, ENV, seeds=[0], out=out, method="letters", samples_per_preference=128, progress=False)
    return make_submission(find_runs(out), "Fuzz letters", description="random letters")


@fuzz(30)
@given(data=st.data())
def test_a_mutated_submission_validates_or_raises_morbench_error(submission, data):
    from morbench.leaderboard import validate_submission

    mutated = copy.deepcopy(submission)
    for i in range(data.draw(st.integers(1, 3), label="edits")):
        mutated = _mutate(mutated, data, f"edit {i}")
    try:
        result = validate_submission(mutated, "fuzz.json.gz")
    except MorbenchError:
        return
    for evaluation in result.evaluations:
        for entry in evaluation["preferences"]:
            rewards = np.asarray(entry["rewards"], dtype=np.float64)
            assert np.all(np.isfinite(rewards)) and np.all((rewards >= 0) & (rewards <= 1))


def test_the_unmutated_inputs_are_valid(checkpoint_dir, run_dir, submission):
    """The fuzzers start from valid inputs (else every case would be a trivial rejection)."""
    from morbench.leaderboard import validate_submission
    from morbench.scoring import score_run

    assert load_checkpoint(checkpoint_dir) is not None
    assert score_run(run_dir)["method"] == "prior"
    assert validate_submission(copy.deepcopy(submission), "fuzz.json.gz").name == "Fuzz letters"
