"""The ``morbench`` command line: list and check envs, build assets, train, evaluate, score, benchmark, submit.

Every value is checked before any work starts: argparse types here (positive counts, seeds in range, usable
paths), config fields against their dataclass annotations (``morbench.baselines.build_config``), env kwargs
against the env constructor. A user-facing failure prints ``morbench: error: <message>`` and exits with 2;
``morbench --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from morbench.errors import ConfigError, MorbenchError

__all__ = ["main"]

ASSET_FAMILIES = ("qm9", "cns", "enhancer", "summarize")
SEED_LIMIT = 2**32  # seeds feed NumPy, torch and Gymnasium generators; all accept [0, 2**32)
DEVICE_HELP = (
    "where policies, value heads and the prior live: cpu (default; bit-exact results), cuda, cuda:N, or auto "
    "(cuda if available); env, oracle and scoring stay on the CPU"
)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``0`` never silently means "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer (>= 1)")
    return value


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be a finite number of seconds >= 0")
    return value


def seed_int(text: str) -> int:
    """argparse type: an integer seed in [0, 2**32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"seed {value} is out of range; use an integer in [0, 2**32)")
    return value


def output_dir(text: str) -> str:
    """argparse type: a directory to write (non-empty, not an existing file)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output directory is empty; name a directory, e.g. --out runs/my-run")
    if "\x00" in text:
        raise argparse.ArgumentTypeError(f"{text!r} contains a NUL byte")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is an existing file, not a directory; choose another path")
    return text


def _cmd_list(args: argparse.Namespace) -> int:
    from morbench.registry import list_envs, spec

    for env_id in list_envs():
        print(f"{env_id:32s} {spec(env_id).entry_point}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from morbench.registry import list_envs, make
    from morbench.utils import check_env

    ids = args.env or list_envs()
    for env_id in ids:
        env = make(env_id)
        check_env(env)
        print(f"{env_id}: ok")
    return 0


def _cmd_build_assets(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"morbench.envs.{args.family}.build")
    return int(module.main(args.extra) or 0)


def _parse_assignments(items: Sequence[str] | None, flag: str) -> dict[str, object]:
    """``["a=1", "b.c=true", "d=foo"]`` -> ``{"a": 1, "b.c": True, "d": "foo"}`` (values parsed as JSON if possible)."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r} must look like key=value")
        try:
            out[key] = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            out[key] = raw
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from morbench.baselines import build_config, run_method
    from morbench.baselines.training import Budget
    from morbench.registry import spec

    spec(args.env)  # an unknown id fails here, with suggestions, before any directory is created
    config = build_config(args.method, _parse_assignments(args.set, "--set"))
    budget = Budget(sampled_tokens=args.budget_tokens, oracle_calls=args.budget_calls)
    path = run_method(
        args.method,
        args.env,
        args.out,
        seed=args.seed,
        config=config,
        budget=budget,
        resume=args.resume,
        env_kwargs=_parse_assignments(args.env_kwarg, "--env-kwarg"),
        eval_samples=args.eval_samples,
        progress=not args.quiet,
        checkpoint_seconds=args.checkpoint_seconds,
        device=args.device,
    )
    print(f"run written to {path.parent}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from morbench.benchmark import restored_results
    from morbench.scoring import format_table, score_directory

    # a suite's folder in a fresh clone: the runs that are not here are scored from their committed records
    restored = restored_results(Path(args.run_dir))
    payload = score_directory(args.run_dir, out=args.out, plots=not args.no_plots, restored=restored)
    print(format_table(payload))
    out = args.out or args.run_dir
    print(f"scored {len(payload['runs'])} run(s): {out}/metrics.json, {out}/report.md")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from morbench.benchmark import default_out, run_benchmark

    args.out = args.out or default_out(args.suite)
    payload = run_benchmark(
        args.suite,
        args.out,
        envs=args.envs,
        methods=args.methods,
        seeds=args.seeds,
        executor=args.executor,
        workers=args.workers,
        ray_address=args.ray_address,
        progress=not args.quiet,
        plots=not args.no_plots,
        convention=args.compute_convention,
        device=args.device,
    )
    print((Path(args.out) / "results.md").read_text())
    for failure in payload["failed"]:
        print(f"FAILED {failure['job']}: {failure['error']}", file=sys.stderr)
    print(f"results: {args.out}/results.md, {args.out}/results.csv, {args.out}/report.md, {args.out}/plots/")
    return 1 if payload["failed"] else 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "benchmark": _cmd_benchmark,
    "score": _cmd_score,
    "list": _cmd_list,
    "check": _cmd_check,
    "build-assets": _cmd_build_assets,
    "train": _cmd_train,
    "submit": lambda args: importlib.import_module("morbench.leaderboard.commands").submit_command(args),
    "leaderboard": lambda args: importlib.import_module("morbench.leaderboard.commands").leaderboard_command(args),
    "doctor": lambda args: importlib.import_module("morbench.doctor").doctor_command(args),
    "card": lambda args: importlib.import_module("morbench.cards").card_command(args),  # env cards (README.md)
    "quality": lambda args: importlib.import_module("morbench.quality").quality_command(args),  # task quality
    "study": lambda args: importlib.import_module("morbench.findings").study_command(args),  # issue-18 studies
    "findings": lambda args: importlib.import_module("morbench.findings").findings_command(args),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morbench", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    listing = sub.add_parser("list", help="list registered environment ids")

    check = sub.add_parser("check", help="run morbench.utils.check_env on environments")
    check.add_argument("env", nargs="*", help="env ids (default: all registered)")

    train = sub.add_parser("train", help="train a baseline on an env and evaluate it (writes a run directory)")
    train.add_argument("method", help="iterative_rs | rewarded_soups | morlhf | rewards_in_context | prior | best_of_n")
    train.add_argument("--env", required=True, help="env id, e.g. morbench/QM9-v0")
    train.add_argument("--seed", type=seed_int, default=0, help="in [0, 2**32)")
    train.add_argument("--out", type=output_dir, required=True, help="run directory to write")
    train.add_argument("--budget-tokens", type=positive_int, default=None, help="sampled-token budget of the whole run")
    train.add_argument("--budget-calls", type=positive_int, default=None, help="oracle-call budget of the whole run")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="config override, e.g. --set iterations=8 --set ppo.batch_size=64",
    )
    train.add_argument("--env-kwarg", action="append", metavar="KEY=VALUE", help="env constructor override")
    train.add_argument(
        "--eval-samples", type=positive_int, default=None, help="samples per preference (default: the protocol's)"
    )
    train.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    train.add_argument(
        "--checkpoint-seconds",
        type=seconds,
        default=None,
        help="at most one periodic checkpoint per this many seconds (default 60; 0: every checkpoint_every iterations)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--device", default="cpu", help=DEVICE_HELP)

    bench = sub.add_parser("benchmark", help="run a suite: train, evaluate and score every (env, method, seed)")
    bench.add_argument("--suite", default="quick", help="smoke | quick | small | standard | text")
    bench.add_argument(
        "--out",
        type=output_dir,
        default=None,
        help="output directory (default: results/<suite>; re-running resumes it)",
    )
    bench.add_argument("--envs", nargs="+", default=None, help="restrict to these env ids")
    bench.add_argument("--methods", nargs="+", default=None, help="restrict to these methods")
    bench.add_argument("--seeds", nargs="+", type=seed_int, default=None, help="override the suite's seeds")
    bench.add_argument("--executor", choices=("local", "ray"), default="local")
    bench.add_argument("--workers", type=positive_int, default=None, help="local processes (default: min(2, cores))")
    bench.add_argument("--ray-address", default=None, help="address of a running Ray cluster (default: local)")
    bench.add_argument(
        "--compute-convention",
        choices=("total", "per_expert"),
        default=None,
        help="budget sharing: 'total' (every method the same total) or 'per_expert' (each expert the whole budget)",
    )
    bench.add_argument("--device", default="cpu", help=DEVICE_HELP)
    bench.add_argument("--no-plots", action="store_true")
    bench.add_argument("--quiet", action="store_true")

    score = sub.add_parser("score", help="score a run directory (or every run under a directory)")
    score.add_argument("run_dir", help="a run directory or a directory of runs (e.g. a benchmark output)")
    score.add_argument("--out", type=output_dir, default=None, help="where to write metrics.json, report.md and plots")
    score.add_argument("--no-plots", action="store_true")

    build = sub.add_parser("build-assets", help="rebuild a task's shipped assets from the data packages")
    build.add_argument("family", choices=ASSET_FAMILIES)
    build.add_argument("extra", nargs=argparse.REMAINDER, help="options passed to the family's builder")

    for command in (listing, check, train, bench, score):  # `morbench train ... --debug` works too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    from morbench.leaderboard.commands import add_leaderboard_parser, add_submit_parser

    add_submit_parser(sub)
    add_leaderboard_parser(sub)
    importlib.import_module("morbench.doctor").add_doctor_parser(sub)
    importlib.import_module("morbench.cards").add_card_parser(sub)  # `morbench card`: READMEs from env docstrings
    importlib.import_module("morbench.quality").add_quality_parser(sub)  # `morbench quality`: task-quality reports
    importlib.import_module("morbench.findings").add_study_parsers(sub)  # `morbench study`, `morbench findings`
    version = importlib.import_module("morbench").__version__
    parser.add_argument("--version", action="version", version=f"morbench {version}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a :class:`MorbenchError` is printed as ``morbench: error: ...`` and returns 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MorbenchError as exc:
        if args.debug:
            raise
        print(f"morbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(
            "morbench: interrupted; `train ... --resume` (or the same `benchmark` command) continues", file=sys.stderr
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
