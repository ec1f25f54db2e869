"""The ``morbench`` command line: list and check envs, build assets, train, evaluate, score, benchmark, submit."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from morbench.errors import MorbenchError

__all__ = ["main"]

ASSET_FAMILIES = ("qm9", "cns", "enhancer", "summarize")


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


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": _cmd_list,
    "check": _cmd_check,
    "build-assets": _cmd_build_assets,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="morbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list registered environment ids")

    check = sub.add_parser("check", help="run morbench.utils.check_env on environments")
    check.add_argument("env", nargs="*", help="env ids (default: all registered)")

    build = sub.add_parser("build-assets", help="rebuild a task's shipped assets from the data packages")
    build.add_argument("family", choices=ASSET_FAMILIES)
    build.add_argument("extra", nargs=argparse.REMAINDER, help="options passed to the family's builder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MorbenchError as exc:
        print(f"morbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
