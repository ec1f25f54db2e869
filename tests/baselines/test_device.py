"""``--device``: device strings are checked (a clear error without CUDA), the device is recorded and belongs to the
run identity (a checkpoint of another device type is refused), CPU runs keep their identity; the ``gpu``-marked
tests train, resume and serve on CUDA where a GPU exists (tests/conftest.py skips them elsewhere). That CPU results
stay bit-identical is what tests/baselines/test_pinned_results.py and test_schedule.py check, unchanged."""

import json

import numpy as np
import pytest
import torch

from morbench import serving
from morbench.baselines import build_config, run_method
from morbench.baselines import training as training_module
from morbench.cli import main
from morbench.errors import ConfigError, InvalidRunError
from morbench.evaluation import evaluate, evaluate_on_env, make_evaluation_task
from morbench.models import load_prior
from morbench.runs import identity_difference, read_evaluation, resolve_device, run_identity
from morbench.sampling import sample_sequences

MOTIFS = "morbench/Motifs-v0"
TINY_PPO = {"ppo.batch_size": 8, "ppo.minibatch_size": 8, "ppo.ppo_epochs": 1, "iterations": 2}


def test_device_strings_are_resolved_and_bad_ones_are_named():
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(" CPU ")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "cpu:1", "", "cuda:-1", "mps", 3):
        with pytest.raises(ConfigError, match=f"device {bad!r} is not one of"):
            resolve_device(bad)


def test_cuda_without_a_gpu_says_how_to_fix_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=r"sees no CUDA GPU.*CUDA build of torch.*--device cpu"):
            resolve_device(name)
    assert resolve_device("auto") == torch.device("cpu")


def test_the_cli_refuses_a_bad_device_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    assert main(["train", "prior", "--env", MOTIFS, "--out", str(out), "--device", "tpu"]) == 2
    assert "device 'tpu' is not one of" in capsys.readouterr().err
    assert not out.exists()
    assert main(["train", "prior", "--env", MOTIFS, "--out", str(out), "--device", "cuda"]) == 2
    assert "--device cpu" in capsys.readouterr().err
    bench = ["benchmark", "--suite", "smoke", "--out", str(tmp_path / "b"), "--device", "cuda:7", "--quiet"]
    assert main(bench) == 2
    assert "device 'cuda:7'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_the_device_is_recorded_and_cpu_identities_are_unchanged(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "morlhf_uniform", "--env", MOTIFS, "--out", str(out), "--device", "cpu", "--quiet",
                 "--eval-samples", "2", *[f"--set={k}={v}" for k, v in TINY_PPO.items()]]) == 0  # fmt: skip
    run = json.loads((out / "run.json").read_text())
    assert run["hardware"]["device"] == "cpu"
    assert "device" not in run["identity"]["fields"]  # the identity of runs made before --device existed
    cpu = run_identity("morlhf", MOTIFS, 0, {}, {}, {}, 0, 4)
    assert cpu == run_identity("morlhf", MOTIFS, 0, {}, {}, {}, 0, 4, device="cpu")
    cuda = run_identity("morlhf", MOTIFS, 0, {}, {}, {}, 0, 4, device="cuda")
    assert cuda["hash"] != cpu["hash"] and "device" in identity_difference(cpu, cuda)


def test_a_checkpoint_of_another_device_type_is_not_resumed(tmp_path, monkeypatch):
    """A run interrupted on the CPU, resumed on another device: refused before any work (``meta`` stands in for
    CUDA on a machine without one: only the device type reaches the identity)."""
    out = tmp_path / "run"
    config = build_config("rewarded_soups", {**TINY_PPO, "checkpoint_every": 1})
    original, count = training_module.RunContext.checkpoint, {"n": 0}

    class Crash(Exception):
        pass

    def checkpoint(self):
        original(self)
        count["n"] += 1
        if count["n"] == 2:
            raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(training_module.RunContext, "checkpoint", checkpoint)
        with pytest.raises(Crash):
            run_method("rewarded_soups", MOTIFS, out, config=config, eval_samples=2, progress=False,
                       checkpoint_seconds=0)  # fmt: skip
    monkeypatch.setattr(training_module, "resolve_device", lambda device: torch.device("meta"))
    with pytest.raises(InvalidRunError, match=r"another run \(device: \(absent\) -> \"meta\""):
        run_method("rewarded_soups", MOTIFS, out, config=config, eval_samples=2, progress=False, resume=True)


def test_evaluate_places_the_policy_and_prior_and_records_the_device(tmp_path):
    task = make_evaluation_task(MOTIFS)
    records = evaluate(load_prior(task), MOTIFS, seeds=[0], out=tmp_path, samples_per_preference=2,
                       progress=False, device="cpu")  # fmt: skip
    run = json.loads((tmp_path / "seed_0" / "run.json").read_text())
    assert run["hardware"]["device"] == "cpu" and records[0]["preferences"]
    with pytest.raises(ConfigError, match="device 'gpu'"):
        evaluate(load_prior(task), MOTIFS, seeds=[0], samples_per_preference=2, progress=False, device="gpu")


# -- on a GPU ----------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_sampling_on_cuda_is_seeded_by_a_cuda_generator():
    task = make_evaluation_task(MOTIFS)
    model = load_prior(task).to("cuda")
    contexts = [None] * 16
    first = sample_sequences(model, task, contexts, 7, 1.0, 1.0)
    again = sample_sequences(model, task, contexts, 7, 1.0, 1.0)
    assert first.sequences == again.sequences and len(first.sequences) == 16


@pytest.mark.gpu
@pytest.mark.parametrize("lora_rank", [0, 4])
def test_a_run_trains_on_cuda_and_its_saved_models_serve_on_the_cpu(lora_rank, tmp_path):
    out = tmp_path / "irs"
    overrides = {**TINY_PPO, "merge_every": 1, "ppo.lora_rank": lora_rank}
    run_method("iterative_rs", MOTIFS, out, config=build_config("iterative_rs", overrides), eval_samples=4,
               progress=False, device="cuda")  # fmt: skip
    run = json.loads((out / "run.json").read_text())
    assert run["hardware"]["device"].startswith("cuda") and run["identity"]["fields"]["device"] == "cuda"
    assert run["compute"]["ppo_iterations"] == 6
    # saved models load on the CPU and serve every preference there
    task = make_evaluation_task(MOTIFS)
    prior = load_prior(task).eval()
    outputs = run["outputs"]
    base = serving.model_from_state(prior, serving.load_state(out / outputs["base"])) if "base" in outputs else prior
    states = [serving.load_state(out / outputs["experts"][name]) for name in task.objective_names]
    assert all(t.device.type == "cpu" for s in states for t in s.values())
    policy = serving.interpolation_policy(base, states, task)
    record = evaluate_on_env(policy, task, 0, samples_per_preference=4, progress=False)
    assert len(record["preferences"]) == len(read_evaluation(out)["preferences"])
    assert all(np.isfinite(e["prior_logprobs"]).all() for e in record["preferences"])


@pytest.mark.gpu
def test_a_cuda_run_resumes_on_cuda_and_refuses_the_cpu(tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = build_config("rewarded_soups", {**TINY_PPO, "checkpoint_every": 1})
    original, count = training_module.RunContext.checkpoint, {"n": 0}

    class Crash(Exception):
        pass

    def checkpoint(self):
        original(self)
        count["n"] += 1
        if count["n"] == 2:
            raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(training_module.RunContext, "checkpoint", checkpoint)
        with pytest.raises(Crash):
            run_method("rewarded_soups", MOTIFS, out, config=config, eval_samples=2, progress=False,
                       checkpoint_seconds=0, device="cuda")  # fmt: skip
    with pytest.raises(InvalidRunError, match="device"):
        run_method("rewarded_soups", MOTIFS, out, config=config, eval_samples=2, progress=False, resume=True)
    run_method("rewarded_soups", MOTIFS, out, config=config, eval_samples=2, progress=False, resume=True,
               device="cuda")  # fmt: skip
    assert json.loads((out / "run.json").read_text())["compute"]["ppo_iterations"] == 6
