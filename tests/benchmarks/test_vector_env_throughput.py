"""Driving a GPT-2 through the native vector env costs almost nothing over the bare KV-cache sampling loop.

Target: env-driven tokens/s >= 90% of the bare loop's, same model, batch (128) and length (64), measured side by
side (interleaved rounds, medians) in one run. Time it with::

    pytest tests/benchmarks/test_vector_env_throughput.py --benchmark-enable --benchmark-only -s
"""

import statistics
import time

import torch
from gymnasium.vector import AutoresetMode

import morbench
from morbench.models import build_gpt2
from morbench.sampling import bos_prompts, sample

BATCH, LENGTH, ROUNDS = 128, 64, 5


def _setup():
    venv = morbench.make_vec(
        "morbench/Motifs-v0", num_envs=BATCH, max_length=LENGTH, autoreset_mode=AutoresetMode.DISABLED
    )
    model = build_gpt2(venv.vocab_size, LENGTH + 1, n_layer=4, n_embd=256, n_head=4, seed=0)
    prompts = bos_prompts(BATCH, venv.bos_token_id)
    return venv, model, prompts


def _generate(model, venv, prompts, with_env: bool):
    on_step = None
    if with_env:
        venv.reset(seed=0)

        def on_step(tokens):
            _, _, terminated, truncated, _ = venv.step(tokens)
            return terminated | truncated

    gen = sample(
        model,
        *prompts,
        LENGTH,
        eos_token_id=venv.eos_token_id,
        pad_token_id=venv.pad_token_id,
        generator=torch.Generator().manual_seed(0),
        on_step=on_step,
        forbid_token_ids=venv.tokenizer.all_special_ids,
    )
    return gen.num_tokens


def test_vector_env_keeps_90_percent_of_bare_sampling_throughput(benchmark):
    venv, model, prompts = _setup()
    if benchmark.disabled:  # the normal test run: one pass of each path, no timing claims
        assert _generate(model, venv, prompts, False) == _generate(model, venv, prompts, True) == BATCH * LENGTH
        assert venv.finished.all() and venv.oracle.requests == BATCH
        benchmark(lambda: None)
        return
    _generate(model, venv, prompts, True)  # warm-up
    bare, driven = [], []
    for _ in range(ROUNDS):
        for path, times in ((False, bare), (True, driven)):
            start = time.perf_counter()
            tokens = _generate(model, venv, prompts, path)
            times.append(tokens / (time.perf_counter() - start))
    ratio = statistics.median(driven) / statistics.median(bare)
    benchmark.extra_info.update(
        bare_tokens_per_s=statistics.median(bare),
        env_tokens_per_s=statistics.median(driven),
        ratio=ratio,
        parameters=sum(p.numel() for p in model.parameters()),
        batch=BATCH,
        length=LENGTH,
    )
    print(
        f"\nbare {statistics.median(bare):.0f} tok/s, env-driven {statistics.median(driven):.0f} tok/s, "
        f"ratio {ratio:.3f}"
    )
    benchmark.pedantic(_generate, args=(model, venv, prompts, True), rounds=1, iterations=1)
    assert ratio >= 0.90
