"""The GPU cost model of the studies (morbench.gpu_estimate): what it counts, and that the study estimates use the
committed measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from morbench.gpu_estimate import (
    GPU_FLOPS,
    LAUNCH_SECONDS,
    OUT,
    OpCounter,
    _cpu_side_paused,
    gpu_seconds,
    with_estimate,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_counter_counts_model_ops_and_their_flops_but_nothing_an_oracle_does():
    import morbench

    layer = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    oracle = morbench.make("morbench/QM9-v0").unwrapped.oracle
    evaluate = type(oracle).__dict__["evaluate"]
    counter = OpCounter()
    with _cpu_side_paused(counter), counter:
        layer(x).sum().backward()
        model = dict(counter.ops), dict(counter.flops)
        evaluation = oracle.evaluate(["CCO", "c1ccccc1"], [None, None])  # RDKit and the oracle's models: CPU
    assert evaluation.rewards.shape == (2, 3) and counter.cpu_side_seconds["training"] > 0
    unpaused = OpCounter()
    with unpaused:
        oracle.evaluate(["CCC", "c1ccncc1"], [None, None])
    assert unpaused.ops["training"] > 0  # the oracle's property models are torch modules: pausing is what hid them
    assert counter.ops["training"] == model[0]["training"] > 0
    # the forward addmm (4x16 @ 16x8) and the weight gradient's product (the input needs none)
    assert counter.flops["training"] == model[1]["training"] == 2 * (2 * 4 * 16 * 8)
    assert counter.views["training"] >= 1  # the weight's transpose: a view, no kernel
    assert type(oracle).__dict__["evaluate"] is evaluate and counter.paused == 0  # put back


def test_a_phase_keeps_its_cpu_time_outside_kernels_and_pays_dispatch_and_launch_per_op():
    values = {"cpu_seconds": 10.0, "kernel_seconds": 8.0, "ops": 1000, "views": 500, "flops": GPU_FLOPS}
    values["cpu_side_seconds"] = 1.5
    assert gpu_seconds(values, tiny=1e-6) == pytest.approx(2.0 + 1000 * (1e-6 + LAUNCH_SECONDS) + 500 * 1e-6 + 1.0)
    noisy = {**values, "kernel_seconds": 9.9}  # the two runs' difference is noise: the oracles' time is the floor
    assert gpu_seconds(noisy, tiny=0.0) == pytest.approx(1.5 + 1000 * LAUNCH_SECONDS + 1.0)
    idle = {"cpu_seconds": 1.0, "kernel_seconds": 1.5, "ops": 0, "views": 0, "flops": 0, "cpu_side_seconds": 0.0}
    assert gpu_seconds(idle, tiny=0.0) == 0.0  # never negative
    assert with_estimate(values, tiny=1e-6)["ratio"] == pytest.approx(gpu_seconds(values, 1e-6) / 10.0)


def test_the_study_estimates_use_the_committed_measurement():
    from morbench.study import GPU_RATIO, estimate

    measured = json.loads((ROOT / OUT).read_text())
    assert {m["env_id"] for m in measured["studies"].values()} == set(GPU_RATIO)
    for result in measured["studies"].values():
        for phase in ("iteration", "evaluation"):
            assert GPU_RATIO[result["env_id"]][phase] == round(result[phase]["ratio"], 3)
            assert 0 < result[phase]["ratio"] < 1
    e = estimate("paper-qm9")
    assert 0 < e["hours_1_gpu"] < e["core_hours"]
