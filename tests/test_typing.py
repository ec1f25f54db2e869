"""The public contract is typed, and the type checker's configuration holds every module to it (issue 16, item 5).

`make typecheck` (mypy, part of `make lint` and CI) checks the types themselves; these tests keep the two things it
cannot see: that the contract's annotations resolve at runtime, and that no module is exempted from annotation.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import typing
from pathlib import Path

import numpy as np
import pytest

from morbench.core import Oracle, TokenEnv

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"


def test_token_env_reset_and_step_return_typed_tuples():
    reset = typing.get_type_hints(TokenEnv.reset)
    step = typing.get_type_hints(TokenEnv.step)
    assert reset["seed"] == int | None and reset["options"] == dict[str, typing.Any] | None
    assert typing.get_origin(reset["return"]) is tuple
    observation, info = typing.get_args(reset["return"])
    assert info == dict[str, typing.Any]
    assert typing.get_origin(step["return"]) is tuple
    step_observation, reward, terminated, truncated, step_info = typing.get_args(step["return"])
    assert step_observation == observation
    assert (reward, terminated, truncated, step_info) == (np.ndarray, bool, bool, dict[str, typing.Any])


def test_every_method_of_the_contract_declares_its_return_type():
    for cls in (TokenEnv, Oracle):
        for name, member in vars(cls).items():
            function = member.fget if isinstance(member, property) else member
            if inspect.isfunction(function):
                annotation = inspect.signature(function).return_annotation
                assert annotation is not inspect.Signature.empty, f"{cls.__name__}.{name} has no return type"


def test_mypy_requires_annotations_in_every_module():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["mypy"]
    assert config["disallow_untyped_defs"] is True
    exempt = [
        override["module"] for override in config.get("overrides", []) if override.get("disallow_untyped_defs") is False
    ]
    assert exempt == [], f"modules exempted from annotation: {exempt}"


def test_typecheck_script_accepts_the_relative_interpreter_path_the_makefile_passes(tmp_path):
    # CI failed with ".venv/bin/python: No such file or directory": the script changed directory before using it
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "fake mypy $*"\n')
    fake.chmod(0o755)
    script = PYPROJECT.parent / ".ci" / "typecheck.sh"
    result = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        env={**os.environ, "TYPECHECK_PYTHON": "bin/python"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "fake mypy -m mypy --config-file" in result.stdout
