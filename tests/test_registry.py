import json

import numpy as np
import pytest

import morbench
from morbench.errors import UnknownEnvError
from morbench.utils import check_env


def test_list_envs_has_versioned_namespaced_ids():
    ids = morbench.list_envs()
    assert "morbench/Motifs-v0" in ids
    assert all(i.startswith("morbench/") and "-v" in i for i in ids)


def test_unknown_id_suggests_close_matches():
    with pytest.raises(UnknownEnvError, match=r"'morbench/Motif-v0'.*did you mean 'morbench/Motifs-v0'"):
        morbench.make("morbench/Motif-v0")
    with pytest.raises(UnknownEnvError, match="CartPole-v1"):
        morbench.make("CartPole-v1")  # not a morbench id
    with pytest.raises(UnknownEnvError):
        morbench.make_vec("morbench/Nope-v3", num_envs=2)


def test_spec_records_exactly_what_ran():
    env = morbench.make("morbench/Motifs-v0", max_length=6)
    record = morbench.spec_to_dict(env)
    assert record["id"] == "morbench/Motifs-v0" and record["version"] == 0
    assert record["kwargs"]["max_length"] == 6
    assert json.loads(json.dumps(record)) == record
    venv = morbench.make_vec("morbench/Motifs-2obj-v0", num_envs=4)
    vrecord = morbench.spec_to_dict(venv)
    assert vrecord["id"] == "morbench/Motifs-2obj-v0" and vrecord["kwargs"]["num_motifs"] == 2
    assert "num_envs" not in vrecord["kwargs"]


def test_registered_variants_differ_only_by_kwargs():
    a = morbench.make("morbench/Motifs-v0").unwrapped
    b = morbench.make("morbench/Motifs-2obj-v0").unwrapped
    assert type(a) is type(b)
    assert (a.reward_dim, b.reward_dim) == (3, 2)
    np.testing.assert_allclose(b.preference_grid[:, 0], [0, 0.25, 0.5, 0.75, 1])


@pytest.mark.parametrize("env_id", morbench.list_envs())
def test_check_env_passes_on_every_registered_id(env_id):
    env = morbench.make(env_id)
    check_env(env)
    env.close()


def _fresh_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing of morbench imported yet) and return its stdout."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bare_import_registers_ids_with_gymnasium_without_loading_anything_heavy():
    out = _fresh_python(
        "import sys, gymnasium, morbench\n"
        "ids = sorted(i for i in gymnasium.registry if i.startswith('morbench/'))\n"
        "print(ids == morbench.list_envs(), 'morbench/QM9-v0' in ids)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'rdkit', 'morbench.envs.qm9.env') if m in sys.modules))\n"
        "env = gymnasium.make('morbench/Motifs-2obj-v0')\n"
        "print(env.unwrapped.spec.id, env.unwrapped.reward_dim)\n"
    )
    assert out.splitlines() == ["True True", "[]", "morbench/Motifs-2obj-v0 2"]
