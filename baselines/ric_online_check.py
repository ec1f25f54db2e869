"""Rewards-in-Context's online SFT, epochs over the whole data against fixed steps per round, side by side.

``python -m morbench.baselines.ric_online_check --env morbench/QM9-v0 --seeds 0`` runs the standard suite's
Rewards-in-Context at the suite's budget and evaluation size twice per seed: with the suite's settings
(``online_steps``, RiC's fixed steps per round) and with ``online_steps`` unset (``online_epochs`` epochs over
everything kept so far, the default and what the suite ran before), one torch thread, and prints one JSON line per
run (training and evaluation seconds as the run recorded them, gradient steps, sampled tokens, headline metrics);
``--out`` keeps the runs, and a run already there is scored again instead of re-trained. The numbers in the
README's standard-suite paragraph come from this command (``docs/data/ric_online_check.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

VARIANTS = ("online_steps", "epochs")
METRICS = ("average_reward", "hypervolume", "kl_to_prior", "validity", "uniqueness")


def standard_entry(env_id: str) -> Any:
    """The standard suite's entry (a ``SuiteEntry``) for ``env_id``; a clear error for a task not in it."""
    from morbench.benchmark import SUITES
    from morbench.errors import ConfigError

    for entry in SUITES["standard"]:
        if entry.env_id == env_id:
            return entry
    names = [entry.env_id for entry in SUITES["standard"]]
    raise ConfigError(f"{env_id!r} is not a task of the standard suite; choose one of {names}")


def variant_config(env_id: str, variant: str) -> dict[str, Any]:
    """The standard suite's Rewards-in-Context overrides for ``env_id``, as they are or without ``online_steps``."""
    from morbench.errors import ConfigError

    entry = standard_entry(env_id)
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
    ric = dict(entry.overrides["rewards_in_context"])
    if variant == "epochs":
        ric.pop("online_steps", None)
    return ric


def run_variant(env_id: str, variant: str, seed: int, out: Path) -> dict[str, Any]:
    """Train (unless ``out`` holds the finished run) and score one run; its line of the comparison."""
    from morbench.baselines import build_config, run_method
    from morbench.baselines.training import Budget
    from morbench.runs import RUN_FILE, read_run
    from morbench.scoring import score_run

    entry = standard_entry(env_id)
    if not (out / RUN_FILE).exists():
        run_method(
            "rewards_in_context",
            env_id,
            out,
            seed=seed,
            config=build_config("rewards_in_context", variant_config(env_id, variant)),
            budget=Budget(sampled_tokens=entry.sampled_tokens),
            eval_samples=entry.eval_samples,
            progress=False,
        )
    compute = read_run(out)["compute"]
    result = score_run(out)
    return {
        "env": env_id,
        "variant": variant,
        "seed": seed,
        "train_seconds": round(compute["wall_seconds"], 1),
        "evaluation_seconds": round(compute["evaluation_seconds"], 1),
        "gradient_steps": compute["gradient_steps"],
        "sampled_tokens": compute["sampled_tokens"],
        **{name: result[name] for name in METRICS},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m morbench.baselines.ric_online_check", description=__doc__)
    parser.add_argument("--env", default="morbench/QM9-v0", help="a task of the standard suite")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=Path("results/ric_online_check"), help="where the runs go")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    folder = args.env.replace("/", "_")
    for seed in args.seeds:
        for variant in args.variants:
            line = run_variant(args.env, variant, seed, args.out / folder / f"{variant}_seed_{seed}")
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
