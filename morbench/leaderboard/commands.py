"""The leaderboard's command-line handlers: ``morbench submit``, ``leaderboard validate``, ``leaderboard build``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from morbench.errors import BoardNotFoundError, SubmissionError

__all__ = ["add_leaderboard_parser", "add_submit_parser", "leaderboard_command", "submit_command"]


BOARD_HELP = (
    "the leaderboard folder (holding submissions/; default: leaderboard/ in the current directory or the nearest "
    "folder above it that has leaderboard/submissions/)"
)


def board_folder(board: str | None) -> Path:
    """``--board DIR`` as given, else the board found from the current directory (never the package's location)."""
    from morbench.leaderboard.submit import find_board

    return Path(board) if board is not None else find_board()


def add_submit_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``submit`` subcommand to the ``morbench`` parser."""
    submit = sub.add_parser(
        "submit", help="write a leaderboard submission from the run directories of one (env, method)"
    )
    submit.add_argument("path", help="a run directory, a folder of seed runs, or a benchmark output directory")
    submit.add_argument("--name", required=True, help="the name shown on the board (unique per env)")
    submit.add_argument("--description", default="", help="short plain-text description of the method")
    submit.add_argument("--code-url", default=None, help="http(s) link to the code that produced the runs")
    submit.add_argument("--env", default=None, help="env id, when the directory holds runs of several envs")
    submit.add_argument("--method", default=None, help="method id, when the directory holds several methods")
    submit.add_argument(
        "--out-dir", default=None, help="submissions folder (default: <board>/submissions, see --board)"
    )
    submit.add_argument("--board", default=None, help=BOARD_HELP)
    submit.add_argument("--force", action="store_true", help="replace an existing submission of the same name")
    submit.add_argument(
        "--provenance",
        default=None,
        help="JSON file: a policy's artifacts and serving rule (see SUBMITTING.md); default: from the runs",
    )


def add_leaderboard_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``leaderboard`` subcommand (``validate``, ``build``, ``verify``) to the ``morbench`` parser."""
    board = sub.add_parser("leaderboard", help="validate submissions and build the leaderboard")
    actions = board.add_subparsers(dest="leaderboard_command", required=True)
    validate = actions.add_parser("validate", help="schema check and re-scoring of submission files")
    validate.add_argument("files", nargs="*", help="submission files (default: every file in --submissions)")
    validate.add_argument("--submissions", default=None, help="submissions folder (default: <board>/submissions)")
    validate.add_argument("--board", default=None, help=BOARD_HELP)
    validate.add_argument("--quiet", action="store_true", help="no progress bar")
    build = actions.add_parser("build", help="validate everything and render leaderboard/README.md and site/")
    build.add_argument("--submissions", default=None, help="submissions folder (default: <board>/submissions)")
    build.add_argument("--out", default=None, help="leaderboard folder to write (default: <board>)")
    build.add_argument("--board", default=None, help=BOARD_HELP)
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.add_argument(
        "--rescore",
        action="store_true",
        help="re-score every file, also those the ledger says were verified with matching claims (slow)",
    )
    verify = actions.add_parser(
        "verify", help="re-produce submissions' samples (re-sample artifacts or re-train) and record it in the ledger"
    )
    verify.add_argument("files", nargs="+", help="submission files to verify")
    verify.add_argument("--artifacts", default=None, help="folder holding the model folders / benchmark run dirs")
    verify.add_argument("--retrain", action="store_true", help="baselines: re-train every seed (slow, no artifacts)")
    verify.add_argument("--ledger", default=None, help="ledger file (default: <board>/verified.json)")


def submit_command(args: argparse.Namespace) -> int:
    """``morbench submit``: write a submission file from the runs of one (env, method); returns the exit status."""
    from morbench.leaderboard.names import check_name, normalize_name, shown
    from morbench.leaderboard.submit import submit

    check_name(normalize_name(args.name), "--name")  # a bad name is reported before anything else
    out_dir = Path(args.out_dir) if args.out_dir else board_folder(args.board) / "submissions"
    path = submit(
        args.path,
        args.name,
        out_dir,
        description=args.description,
        code_url=args.code_url,
        env_id=args.env,
        method=args.method,
        force=args.force,
        provenance=_read_provenance(args.provenance),
    )
    if normalize_name(args.name) != args.name:
        print(f"note: the name was normalised (Unicode NFKC, spaces trimmed) to {shown(normalize_name(args.name))}")
    print(f"submission written: {path} ({path.stat().st_size} bytes); validated by re-scoring every sample")
    return 0


def _read_provenance(path: str | None) -> dict | None:
    import json

    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SubmissionError(f"--provenance {path}: not a readable JSON file ({exc})") from None


def _validate(args: argparse.Namespace) -> int:
    from morbench.leaderboard.submit import find_board
    from morbench.leaderboard.validate import find_submissions, validate_files

    if args.submissions:
        root: Path | None = Path(args.submissions)
    elif args.board or not args.files:
        root = board_folder(args.board) / "submissions"
    else:  # files given: check them from anywhere; their place is checked only inside a board found here
        try:
            root = find_board() / "submissions"
        except BoardNotFoundError:
            root = None
    if args.files:
        paths = [Path(f) for f in args.files]
    else:
        assert root is not None  # without files: --submissions or the board's folder
        paths = find_submissions(root)
    if not paths:
        raise SubmissionError(f"{root}: no submission files to validate")
    report = validate_files(paths, root=root, progress=not args.quiet and len(paths) > 1)
    for item in report.valid:
        status = "rankable once verified" if item.ranked else "unranked: " + "; ".join(item.shape_blockers())
        print(f"ok  {item.source}: {item.env_id}, {item.name!r}, seeds {item.seeds} ({status}), {item.seconds:.1f} s")
    for error in report.errors:
        print(f"REJECTED {error}", file=sys.stderr)
    print(f"{len(report.valid)} valid, {len(report.errors)} rejected")
    return 0 if report.ok else 1


def _build(args: argparse.Namespace) -> int:
    from morbench.leaderboard.build import build_leaderboard
    from morbench.leaderboard.validate import find_submissions

    if args.submissions and args.out:
        submissions, out = Path(args.submissions), Path(args.out)
    else:  # the board folder supplies what is not given
        board = board_folder(args.board)
        submissions = Path(args.submissions) if args.submissions else board / "submissions"
        out = Path(args.out) if args.out else board
    if not find_submissions(submissions):
        raise SubmissionError(
            f"{submissions}: no submission files found; nothing to build (add submissions with `morbench submit`, "
            "or pass --board / --submissions)"
        )
    result = build_leaderboard(submissions, out, progress=not args.quiet, rescore=args.rescore)
    for relative, size in result.files.items():
        print(f"  {out / relative} ({size} bytes)")
    print(
        f"built the leaderboard from {result.submissions} submission(s) ({result.cached} unchanged since the last "
        f"build, {result.rescored} re-scored, the rest scored from claims their verification matched) in "
        f"{result.seconds:.1f} s"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from morbench.leaderboard.validate import TaskCache
    from morbench.leaderboard.verify import verify_file

    tasks, failed = TaskCache(), 0
    for name in args.files:
        outcome = verify_file(name, artifacts=args.artifacts, retrain=args.retrain, ledger=args.ledger, tasks=tasks)
        if outcome.ok:
            print(f"verified  {outcome.source} ({outcome.how}, {outcome.seconds:.1f} s), sha256 {outcome.sha256[:16]}")
        else:
            failed += 1
            print(f"FAILED    {outcome.source}: {outcome.record.get('message')}", file=sys.stderr)
    print(f"{len(args.files) - failed} verified, {failed} failed; recorded in the ledger")
    return 0 if not failed else 1


def leaderboard_command(args: argparse.Namespace) -> int:
    """``morbench leaderboard validate|build|verify``; returns the exit status."""
    return {"validate": _validate, "build": _build, "verify": _verify}[args.leaderboard_command](args)
