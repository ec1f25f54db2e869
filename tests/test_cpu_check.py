"""python -m morbench.cpu_check: its digests see one flipped bit, and its comparison names CPUs that differ."""

import gzip
import json

from morbench.cpu_check import compare, samples_digest, weights_digest


def _line(cpu, weights, kernels="avx2", run="rewards_in_context/QM9-v1"):
    return {"run": run, "kernels": kernels, "cpu": cpu, "weights_sha256": weights}


def test_digests_change_with_one_bit_of_weights_or_samples_and_not_with_seconds(tmp_path):
    (tmp_path / "model").mkdir()
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(bytes(64))
    preferences = [{"weights": [0.5, 0.5], "sequences": ["CCO"], "rewards": [[0.25, 0.5]]}]
    evaluation = tmp_path / "evaluation.json.gz"
    evaluation.write_bytes(gzip.compress(json.dumps({"preferences": preferences, "seconds": 1.0}).encode()))
    before = weights_digest(tmp_path), samples_digest(tmp_path)
    evaluation.write_bytes(gzip.compress(json.dumps({"preferences": preferences, "seconds": 2.0}).encode()))
    assert samples_digest(tmp_path) == before[1]
    weights.write_bytes(bytes(63) + b"\x01")
    preferences[0]["rewards"][0][0] = 0.25000000000000006
    evaluation.write_bytes(gzip.compress(json.dumps({"preferences": preferences}).encode()))
    assert weights_digest(tmp_path) != before[0] and samples_digest(tmp_path) != before[1]


def test_compare_names_each_other_cpu_of_the_same_run_and_kernels():
    earlier = [
        _line("AMD EPYC 7B13", "aa"),
        _line("AMD EPYC 7B13", "bb", kernels="default"),
        _line("Intel(R) Xeon(R) Processor", "cc"),
        _line("Other", "aa", run="iterative_rs/Motifs-2obj-v0"),
    ]
    assert compare(_line("Intel(R) Xeon(R) Processor", "aa"), earlier) == "identical to AMD EPYC 7B13"
    assert compare(_line("Ampere Altra", "zz"), earlier) == (
        "differs from AMD EPYC 7B13; differs from Intel(R) Xeon(R) Processor"
    )
    assert compare(_line("AMD EPYC 7B13", "aa"), earlier) == "differs from Intel(R) Xeon(R) Processor"
    assert compare(_line("Ampere Altra", "aa", kernels="default"), []) == "no other CPU measured yet"
