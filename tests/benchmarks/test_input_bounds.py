"""Worst-case work per sequence under every task's input bounds: under 1 s and 500 MB, oracle and judge together.

The input bounds (``docs/contract.md``, "Input bounds and error types") turn away, before parsing, any text longer
than the task's episodes can write. This benchmark scores the costliest inputs the bounds still let through and the
over-bound attacks of issue 13, one at a time, in a fresh Python process: RDKit allocates natively, so memory is
the process's peak resident set (``VmHWM``, reset before each input) above its resident set before the input.

Candidates per task: the longest text each bound allows (all single-character tokens; all of the longest token),
for the SMILES tasks ring-closure-dense strings, stereo bracket atoms at the character bound and the slowest
polycyclic cages a random search found within CNS's largest ``max_length`` (111 tokens); and the attacks (a
19,997-character ring SMILES that cost RDKit 30 s and 11 GB before the bounds, 1 MB strings). Normal runs
(``--benchmark-disable``) execute it once as a test; ``--benchmark-enable --benchmark-only -s`` prints the table.
"""

from __future__ import annotations

import json
import subprocess
import sys

MAX_SECONDS = 1.0
MAX_MEGABYTES = 500.0

ATTACK = "C1" * 9998 + "C"
MEGABYTE = 1_000_000

# the slowest of 300 random polycyclic molecules of <= 111 tokens (CNS, ~0.1 s each for oracle + judge)
CAGES = [
    "CC12CC34C5C16CC31C56C43C14C1CC5CC16C51CC14C263",
    "CC12C3C4CC1C15C3C3CC1C41CC4C67CC31C21C6(C7)C451",
    "CCC1CCC2CC34CC(C)C5C6CC78CC(CC)(C37)C3(C1C3(C4C)C51CCC(C)C1(C)C)C28C6",
    "CC1CCC2CC(C)C34C5C67C2(C3(C)C)C23CCC8(C26C1C)C57C438",
]

TASKS = {
    "morbench/QM9-v0": ({}, None),
    "morbench/CNS-v0": ({"workers": 0, "max_length": 111}, None),  # 111: the largest max_length CNS allows
    "morbench/Enhancer-v0": ({"prior_likelihood_metric": False}, None),
    "morbench/Motifs-v0": ({}, None),
    "morbench/Summarize-v0": ({}, "context"),
}

MEASURE = r"""
import json, re, resource, sys, time
import morbench
from morbench.errors import MorbenchError

ATTACK, MEGABYTE, CAGES, TASKS = json.loads(sys.argv[1])


def memory():
    status = open("/proc/self/status").read()
    return {key: int(re.search(key + r":\s+(\d+)", status).group(1)) / 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def candidates(env_id, task):
    check = task.input_check
    vocabulary = task.tokenizer.get_vocab()
    content = [t for t, i in vocabulary.items() if i not in check.forbidden_token_ids]
    longest = max(content, key=len)
    shortest = min((t for t in content if t.strip()), key=len)
    out = {
        "longest tokens": task.tokenizer.decode([vocabulary[longest]] * task.max_length),
        "shortest tokens": task.tokenizer.decode([vocabulary[shortest]] * task.max_length),
        "attack 19,997 chars": ATTACK,
        "attack 1 MB": shortest * (MEGABYTE // len(shortest)),
    }
    if env_id in ("morbench/QM9-v0", "morbench/CNS-v0"):  # the SMILES tasks
        digits = [d for d in "123456789" if d in vocabulary]
        out["ring closures"] = ("".join(f"C{d}" for d in digits) * task.max_length)[: task.max_length]
        out["ring ladder"] = "C1" + "C" * (task.max_length - 3) + "1"
        out["fused aromatic"] = "c1ccc2cc3cc4cc5cc6cc7cc8ccccc8cc7cc6cc5cc4cc3cc2c1"
        out["cubane"] = "C12C3C4C1C5C2C3C45"
        for number, cage in enumerate(CAGES):
            out[f"cage {number}"] = cage
    if env_id == "morbench/Enhancer-v0":  # the only valid length: one 200-bp design through the CNN and the MLP
        out["design"] = ("ACGTTGCAAGCT" * 17)[:200]
    if task.contexts is not None:  # Summarize: the longest valid summary (words of the longest word token)
        words = [t for t in content if t.startswith("\u0120") and t[1:].isascii() and t[1:].isalpha()]
        out["longest words"] = task.tokenizer.decode([vocabulary[max(words, key=len)]] * (task.max_length - 1))
    return out


rows = []
for env_id, (kwargs, conditioned) in TASKS.items():
    try:
        task = morbench.make(env_id, **kwargs).unwrapped
    except MorbenchError as exc:  # e.g. a task's model package is not installed
        rows.append({"task": env_id, "skipped": str(exc)})
        continue
    contexts = [task.contexts[0]] if conditioned else None
    warm = {"morbench/Enhancer-v0": "ACGT" * 50, "morbench/Summarize-v0": "A parser that wins."}.get(env_id, "CCO")
    for scorer in (task.score, task.judge_score if task.judge is not None else task.score):
        scorer([warm if "Motifs" not in env_id else "A"], contexts)
    for name, text in candidates(env_id, task).items():
        exact = reset_peak()
        before = memory()
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        result = task.score([text], contexts)
        if task.judge is not None:
            task.judge_score([text], contexts)
        seconds = time.perf_counter() - start
        after = memory()
        peak = after["VmHWM"] if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append({
            "task": env_id, "input": name, "characters": len(text), "seconds": seconds,
            "megabytes": max(0.0, peak - (before["VmRSS"] if exact else usage)),
            "valid": bool(result.valid[0]), "reason": (result.reasons[0] or "")[:70],
        })
    if hasattr(task, "close"):
        task.close()
print(json.dumps(rows))
"""


def _measure() -> list[dict]:
    payload = json.dumps([ATTACK, MEGABYTE, CAGES, TASKS])
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, payload],
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", **_environment()},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _environment() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}


def test_worst_case_input_costs_under_a_second_and_500_mb(benchmark):
    rows = benchmark.pedantic(_measure, rounds=1, iterations=1)
    measured = [row for row in rows if "skipped" not in row]
    assert {row["task"] for row in measured} >= {"morbench/QM9-v0", "morbench/CNS-v0", "morbench/Motifs-v0"}
    if benchmark.enabled:
        for row in rows:
            if "skipped" in row:
                print(f"{row['task']:22s} skipped: {row['skipped']}")
                continue
            print(
                f"{row['task']:22s} {row['input']:20s} {row['characters']:>9,} chars {row['seconds'] * 1e3:8.1f} ms "
                f"{row['megabytes']:6.1f} MB valid={row['valid']!s:5s} {row['reason']}"
            )
    # the 1 s target is held when timed (--benchmark-enable); a normal run shares the CPU with whatever else runs
    # (CI measured 1.03 s under a load of 8 on 2 cores), so it only guards against the attacks' old cost (30 s)
    slack = 1.0 if benchmark.enabled else 10.0
    for row in measured:
        assert row["seconds"] < MAX_SECONDS * slack, row
        assert row["megabytes"] < MAX_MEGABYTES, row
        if row["input"].startswith("attack"):
            assert not row["valid"] and row["seconds"] < 0.1 * slack, row  # turned away before any parsing
    cns = {row["input"]: row for row in measured if row["task"] == "morbench/CNS-v0"}
    assert all(cns[f"cage {i}"]["valid"] for i in range(len(CAGES)))  # the costly path really ran
