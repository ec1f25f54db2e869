"""TRL's GRPOTrainer trains on a morbench task through the per-objective reward functions."""

import numpy as np
import pytest

import morbench
from morbench.baselines.trl_interop import reward_functions
from morbench.models import load_prior

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")


def test_reward_functions_are_named_and_share_one_oracle_call():
    env = morbench.make("morbench/Motifs-v0")
    funcs = reward_functions(env)
    assert [f.__name__ for f in funcs] == ["motif_1", "motif_2", "motif_3"]
    motif = env.unwrapped.motifs[1]
    completions = [motif, "", motif[:2]]
    values = [f(prompts=["[BOS]"] * 3, completions=completions) for f in funcs]
    np.testing.assert_allclose(values[1], [1.0, 0.0, 0.5])
    assert env.unwrapped.oracle.calls == 2 and env.unwrapped.oracle.requests == 3  # one call for all K functions
    # conversational completions are accepted too
    assert funcs[1](completions=[[{"role": "assistant", "content": motif}]]) == [1.0]


def test_grpo_trainer_runs_a_few_steps(tmp_path):
    env = morbench.make("morbench/Motifs-2obj-v0")
    task = env.unwrapped
    model_dir = tmp_path / "policy"
    load_prior(task).save_pretrained(model_dir)
    task.tokenizer.save_pretrained(model_dir)
    dataset = datasets.Dataset.from_dict({"prompt": ["[BOS]"] * 16})
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        max_steps=2,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=task.max_length,
        reward_weights=[0.5, 0.5],
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        beta=0.0,
    )
    trainer = trl.GRPOTrainer(
        model=str(model_dir),
        reward_funcs=reward_functions(env),
        args=args,
        train_dataset=dataset,
        processing_class=task.tokenizer,
    )
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"rewards/motif_1/mean", "rewards/motif_2/mean"} <= logged
    assert task.oracle.requests > 0
