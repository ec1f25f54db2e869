"""Fuzzing the command-line layer: random argv for ``train``, ``benchmark``, ``score`` and ``list``.

Training, the sweep itself and scoring's heavy work are replaced by stubs (the argument layer is under test:
parsing, typed config and env-kwarg checks, the run lock, the output checks). The property: ``main`` returns an
exit code or argparse exits with 0/2; nothing else escapes, and an error is one ``morbench: error:`` line.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from morbench import cli

from .conftest import fuzz

ENVS = ["morbench/Motifs-2obj-v0", "morbench/QM9-v0", "morbench/QM9-v9", "QM9", "", "morbench/Summarize-tiny-v0"]
METHODS = ["iterative_rs", "rewarded_soups", "morlhf", "rewards_in_context", "prior", "best_of_n", "ppo", ""]
KEYS = ["iterations", "merge_every", "merge_weights", "ppo", "ppo.batch_size", "ppo.kl_coef", "ppo.whiten_advantages"]
KEYS += ["n", "levels", "quantile", "preferences", "checkpoint_every", "bogus", "ppo.bogus", "", "."]
ENV_KWARGS = ["max_length", "num_motifs", "seed", "oracle_budget", "render_mode", "bogus", "preference_divisions"]
RAW_VALUES = st.one_of(
    st.sampled_from(["1", "0", "-2", "1.5", "16.0", "true", "null", "Infinity", "NaN", "[1,2]", "{}", '"x"', ""]),
    st.sampled_from([str(2**70), "-1e308", "1e999", "[[[[[]]]]]", "ansi", "human", "[0.5, 0.5]"]),
    st.integers(-(2**80), 2**80).map(str),
    st.text(max_size=10),
)


def _train_argv(draw, out):
    argv = ["train", draw(st.sampled_from(METHODS)), "--env", draw(st.sampled_from(ENVS)), "--out", out, "--quiet"]
    for _ in range(draw(st.integers(0, 4))):
        flag = draw(st.sampled_from(["--set", "--env-kwarg", "--seed", "--eval-samples", "--budget-tokens"]))
        if flag == "--set":
            argv += [flag, f"{draw(st.sampled_from(KEYS))}={draw(RAW_VALUES)}"]
        elif flag == "--env-kwarg":
            argv += [flag, f"{draw(st.sampled_from(ENV_KWARGS))}={draw(RAW_VALUES)}"]
        else:
            argv += [flag, draw(RAW_VALUES)]
    if draw(st.booleans()):
        argv.append("--resume")
    return argv


@st.composite
def argvs(draw, root: str):
    out = draw(st.sampled_from(["", " ", f"{root}/run", f"{root}/file", f"{root}/file/run", f"{root}/new/run"]))
    command = draw(st.sampled_from(["train", "benchmark", "score", "list", "nonsense"]))
    if command == "train":
        argv = _train_argv(draw, out)
    elif command == "benchmark":
        argv = ["benchmark", "--suite", draw(st.sampled_from(["smoke", "quick", "huge", ""])), "--out", out]
        for _ in range(draw(st.integers(0, 3))):
            flag = draw(st.sampled_from(["--workers", "--seeds", "--envs", "--methods", "--executor"]))
            argv += [flag, draw(st.one_of(RAW_VALUES, st.sampled_from(ENVS + METHODS)))]
    elif command == "score":
        argv = ["score", draw(st.sampled_from([root, f"{root}/run", f"{root}/file", f"{root}/missing"])), "--no-plots"]
    else:
        argv = [command]
    if draw(st.booleans()):
        position = draw(st.integers(0, len(argv)))
        argv.insert(position, draw(st.sampled_from(["--debug", "--help", "-x", "--", "--out="])))
    return argv


@pytest.fixture(scope="module")
def sandbox():
    """A working directory for relative paths, with a file where a directory is expected; heavy work stubbed."""
    import morbench.baselines
    import morbench.benchmark

    def fake_training(spec, env_id, out, *args):
        return Path(out) / "run.json"

    def fake_sweep(suite, out, jobs, *args):
        (out / "results.md").write_text("table\n")
        return {"failed": []}

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        (Path(tmp) / "file").write_text("x")
        patch.chdir(tmp)
        patch.setattr(morbench.baselines, "_run_locked", fake_training)
        patch.setattr(morbench.benchmark, "_run_and_score", fake_sweep)
        yield tmp


@fuzz(60)
@given(data=st.data())
def test_random_argv_gives_an_exit_code_or_a_morbench_error(sandbox, data):
    argv = data.draw(argvs(sandbox), label="argv")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            code = exc.code
        except cli.MorbenchError:
            assert "--debug" in argv  # only --debug lets a MorbenchError through, on purpose
            return
    assert code in (0, 1, 2), (argv, code)
    if code == 2:
        assert "error:" in stderr.getvalue() and "Traceback" not in stderr.getvalue()
    assert os.path.isfile(os.path.join(sandbox, "file"))  # an existing file is never replaced by a run directory
