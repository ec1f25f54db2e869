"""Do CPU runs reproduce across CPU models? ``python -m morbench.cpu_check``.

A CPU run is bit-exact on one CPU model at one torch thread count (docs/baselines.md, "CPU models"): torch picks
its kernels by instruction set and its matrix library (MKL) by CPU, and they round differently, so a long run ends
elsewhere on another machine. This trains two small fixed runs in fresh one-thread processes, each twice: with the
kernels torch picks for this CPU (``default``), and with them held to AVX2 everywhere (``avx2``: torch's own kernels
by ``ATEN_CPU_CAPABILITY``, MKL's by its conditional-numerical-reproducibility mode ``MKL_CBWR``, oneDNN's by
``ONEDNN_MAX_CPU_ISA``), and appends one line per run to ``docs/data/cpu_check.jsonl``: the CPU, the kernels, the
SHA-256 of the trained weights and of the evaluation samples, and the seconds. The runs are Rewards-in-Context on
QM9-v1 (supervised steps that follow its own samples, like the paper-scale run that did not reproduce) and
IterativeRS on Motifs-2obj-v0 (PPO with merges).

The lines of two CPU models answer the question: equal digests under ``avx2`` and different ones under ``default``
would make the pinned kernels the way to combine runs from several machines; the command prints, for each run, the
other CPUs whose digests match or differ.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from morbench.runs import cpu_model, git_commit

OUT = Path(__file__).resolve().parent.parent / "docs" / "data" / "cpu_check.jsonl"

RUNS: dict[str, list[str]] = {
    "rewards_in_context/QM9-v1": [
        "rewards_in_context", "--env", "morbench/QM9-v1", "--seed", "0", "--budget-tokens", "40000",
        "--eval-samples", "16", "--set", "temperature=0.7", "--set", "online_samples=128",
    ],
    "iterative_rs/Motifs-2obj-v0": [
        "iterative_rs", "--env", "morbench/Motifs-2obj-v0", "--seed", "3", "--eval-samples", "16",
        "--set", "iterations=8", "--set", "merge_every=2", "--set", "ppo.batch_size=32",
        "--set", "ppo.minibatch_size=16", "--set", "ppo.learning_rate=0.003",
    ],
}  # fmt: skip

KERNELS: dict[str, dict[str, str]] = {
    "default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
PINS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def weights_digest(run_dir: Path) -> str:
    """SHA-256 over every ``.safetensors`` file of a run directory, in path order (names included)."""
    digest = hashlib.sha256()
    for path in sorted(run_dir.rglob("*.safetensors")):
        digest.update(str(path.relative_to(run_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def samples_digest(run_dir: Path) -> str:
    """SHA-256 of the evaluation's samples per preference (sequences, rewards, log-probabilities; no seconds)."""
    evaluation = json.loads(gzip.decompress((run_dir / "evaluation.json.gz").read_bytes()))
    return hashlib.sha256(json.dumps(evaluation["preferences"], sort_keys=True).encode()).hexdigest()


def check(run: str, kernels: str, work: Path) -> dict[str, Any]:
    """Train ``run`` in a fresh one-thread process with ``kernels``; its line for cpu_check.jsonl."""
    out = work / f"{run.replace('/', '_')}-{kernels}"
    env = {key: value for key, value in os.environ.items() if key not in PINS}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **KERNELS[kernels])
    command = [sys.executable, "-m", "morbench.cli", "train", *RUNS[run], "--out", str(out), "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{run} ({kernels} kernels) failed:\n{done.stderr[-3000:]}")
    hardware = json.loads((out / "run.json").read_text())["hardware"]
    return {
        "run": run,
        "kernels": kernels,
        "cpu": hardware["cpu"],
        "cpu_capability": hardware["cpu_capability"],
        "weights_sha256": weights_digest(out),
        "samples_sha256": samples_digest(out),
        "seconds": round(time.perf_counter() - start, 1),
        "torch": hardware["torch"],
        "commit": git_commit(),
    }


def compare(line: dict[str, Any], earlier: list[dict[str, Any]]) -> str:
    """What the earlier lines of other CPUs say next to ``line`` (same run and kernels)."""
    others = [
        e for e in earlier if (e["run"], e["kernels"]) == (line["run"], line["kernels"]) and e["cpu"] != line["cpu"]
    ]
    if not others:
        return "no other CPU measured yet"
    said = []
    for cpu in sorted({e["cpu"] for e in others}):
        same = any(e["weights_sha256"] == line["weights_sha256"] for e in others if e["cpu"] == cpu)
        said.append(f"{'identical to' if same else 'differs from'} {cpu}")
    return "; ".join(said)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m morbench.cpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON-lines file to append to")
    parser.add_argument("--kernels", choices=sorted(KERNELS), nargs="+", default=sorted(KERNELS))
    args = parser.parse_args(argv)
    earlier = [json.loads(x) for x in args.out.read_text().splitlines()] if args.out.is_file() else []
    print(f"CPU: {cpu_model()}")
    with tempfile.TemporaryDirectory(prefix="morbench-cpu-check-") as work:
        for run in RUNS:
            for kernels in args.kernels:
                line = check(run, kernels, Path(work))
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(line) + "\n")
                print(
                    f"{run:30s} {kernels:8s} ({line['cpu_capability']}) weights {line['weights_sha256'][:12]} "
                    f"samples {line['samples_sha256'][:12]} {line['seconds']:7.1f} s: {compare(line, earlier)}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
