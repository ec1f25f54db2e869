"""Shared fixtures of the leaderboard tests: real run directories of a tiny random policy on Motifs-2obj-v0."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from morbench.leaderboard.schema import dumps_submission, env_stem, read_submission, submission_slug

ENV_ID = "morbench/Motifs-2obj-v0"
SAMPLES = 128  # the documented minimum: keeps the fixtures fast


def random_letters(preference: np.ndarray, num_samples: int, seed: int) -> list[str]:
    """A policy that ignores the preference: 1-6 random letters of the Motifs-2obj alphabet."""
    rng = np.random.default_rng(seed)
    alphabet = list("ABCDEFGHIJKL")
    return ["".join(rng.choice(alphabet, size=int(rng.integers(1, 7)))) for _ in range(num_samples)]


@pytest.fixture(scope="session")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three seeds of run directories (``run.json`` + ``evaluation.json.gz``) written by ``morbench.evaluate``."""
    import morbench

    out = tmp_path_factory.mktemp("runs") / "random"
    morbench.evaluate(
        random_letters,
        ENV_ID,
        seeds=[0, 1, 2],
        out=out,
        method="random_letters",
        config={"letters": "A-L", "length": [1, 6]},
        compute={"oracle_calls": 0, "sampled_tokens": 0, "wall_seconds": 0.0},
        samples_per_preference=SAMPLES,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def base_file(run_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid submission written by ``morbench submit`` (session-wide; never modify it in place)."""
    from morbench.leaderboard.submit import submit

    out = tmp_path_factory.mktemp("base_submissions")
    return submit(run_root, "Random letters", out, description="uniform random strings", code_url=None)


@pytest.fixture
def base(base_file: Path) -> dict[str, Any]:
    """A fresh deep copy of the valid submission, to modify."""
    return copy.deepcopy(read_submission(base_file))


def write_submission(root: Path, submission: dict[str, Any], plain: bool = False) -> Path:
    """Write ``submission`` where the board expects it: ``root/<env-stem>/<slug>.json[.gz]``."""
    folder = root / env_stem(submission["env"]["id"])
    folder.mkdir(parents=True, exist_ok=True)
    if plain:
        path = folder / f"{submission_slug(submission['name'])}.json"
        path.write_text(json.dumps(submission))
    else:
        path = folder / f"{submission_slug(submission['name'])}.json.gz"
        path.write_bytes(dumps_submission(submission))
    return path


def write_raw(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
HOSTILE_NAME = f"{SCRIPT} | [x](javascript:alert(1)) **bold** `code`"


def hostile(base: dict[str, Any]) -> dict[str, Any]:
    """The valid submission with HTML, script and markdown in every free-text field."""
    submission = copy.deepcopy(base)
    submission["name"] = HOSTILE_NAME
    submission["description"] = f"{IMG}\n| a | b |\n# heading\n</p></details><script>alert(1)</script>"
    submission["method"] = f"{SCRIPT}"
    submission["code_url"] = "https://example.org/x?a=1&b=%3Cscript%3E"
    submission["config"] = {SCRIPT: IMG, "nested": {"</pre>": "<b>"}}
    submission["morbench"]["version"] = SCRIPT
    for seed in submission["seeds"]:
        seed["hardware"] = {"processor": SCRIPT, IMG: "x"}
        seed["created"] = IMG
        seed["compute"][SCRIPT] = 1.0
    return submission


@pytest.fixture
def board_dir(base: dict[str, Any], tmp_path: Path) -> Path:
    """A submissions folder with a normal, a hostile and an unranked (2-seed) submission."""
    submissions = tmp_path / "submissions"
    write_submission(submissions, base)
    write_submission(submissions, hostile(base))
    unranked = copy.deepcopy(base)
    unranked["name"] = "Two seeds"
    unranked["seeds"] = unranked["seeds"][:2]
    write_submission(submissions, unranked)
    return submissions


# -- verified baselines ----------------------------------------------------------------------------------------
SOUP = {"ppo.batch_size": 16, "ppo.minibatch_size": 8, "iterations": 1}  # one PPO iteration per expert


def soup_runs(out: Path, seeds: list[int], samples: int) -> Path:
    """Tiny Rewarded Soups runs (two experts, one PPO iteration each) written by ``morbench.baselines``."""
    from morbench.baselines import build_config, run_method

    for seed in seeds:
        run_method(
            "rewarded_soups",
            ENV_ID,
            out / f"seed_{seed}",
            seed=seed,
            config=build_config("rewarded_soups", SOUP),
            eval_samples=samples,
            progress=False,
        )
    return out


@pytest.fixture(scope="session")
def small_baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(runs folder, submission file): Rewarded Soups, 2 seeds x 128 samples (verifiable, not rankable)."""
    from morbench.leaderboard.submit import submit

    root = tmp_path_factory.mktemp("small_baseline")
    runs = soup_runs(root / "runs", [0, 1], SAMPLES)
    return runs, submit(runs, "Soup small", root / "board" / "submissions")


@pytest.fixture(scope="session")
def ranked_board(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(board folder, runs folder): a Rewarded Soups entry with 5 seeds at the protocol's 512 samples, verified
    from its saved experts (``board/verified.json``). Copy the board before changing it."""
    from morbench.leaderboard.submit import submit
    from morbench.leaderboard.verify import verify_file

    root = tmp_path_factory.mktemp("ranked_board")
    runs = soup_runs(root / "runs", [0, 1, 2, 3, 4], 512)
    path = submit(runs, "Soup", root / "board" / "submissions", description="Rewarded Soups, tiny budget")
    outcome = verify_file(path, artifacts=runs)
    assert outcome.ok, outcome.record
    return root / "board", runs


def rescored(submission: dict[str, Any]) -> dict[str, Any]:
    """The submission with every claimed reward and validity flag recomputed by the task (so it validates)."""
    from morbench.leaderboard.validate import TaskCache

    task = TaskCache().get(submission["env"]["id"], "test")
    for seed in submission["seeds"]:
        for entry in seed["preferences"]:
            result = task.score(entry["sequences"], [None] * len(entry["sequences"]))
            entry["rewards"] = [[round(float(v), 6) for v in row] for row in result.rewards]
            entry["valid"] = [bool(v) for v in result.valid]
            entry["logprobs"] = entry["prior_logprobs"] = None
    return submission
