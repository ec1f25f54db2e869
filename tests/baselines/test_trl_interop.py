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


def test_prompt_dataset_holds_the_envs_exact_prompts_and_their_context_keys():
    from morbench.baselines.trl_interop import prompt_dataset

    env = morbench.make("morbench/Summarize-tiny-v0")
    task = env.unwrapped
    dataset = prompt_dataset(env)
    assert isinstance(dataset, datasets.Dataset) and dataset.column_names == ["prompt", "context"]
    assert dataset["context"] == [c.key for c in task.contexts]
    for row, context in zip(dataset.select(range(3)), task.contexts[:3], strict=True):
        assert "Summarize this research paper abstract" in row["prompt"]
        # TRL tokenizes the prompt text without adding special tokens: the policy sees the env's own prompt ids
        assert task.tokenizer(row["prompt"], add_special_tokens=False)["input_ids"] == list(context.prompt_ids)

    test_rows = prompt_dataset(env, split="test", as_dataset=False)
    assert isinstance(test_rows, list) and len(test_rows) == 100
    assert not {r["context"] for r in test_rows} & set(dataset["context"])  # other documents

    # the rows feed reward_functions directly: TRL passes the extra "context" column as a keyword argument
    funcs = reward_functions(env)
    rows = dataset.select(range(2))
    summary = "We rank candidate answers by correlating dependency relation paths."
    values = funcs[0](prompts=rows["prompt"], completions=[summary, summary], context=rows["context"])
    assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values) and values[0] != values[1]


def test_prompt_dataset_refuses_unconditional_tasks():
    from morbench.baselines.trl_interop import prompt_dataset
    from morbench.errors import ConfigError

    with pytest.raises(ConfigError, match="not prompt-conditioned"):
        prompt_dataset(morbench.make("morbench/Motifs-2obj-v0"))
