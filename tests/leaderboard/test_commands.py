"""Where the leaderboard commands read and write: the board found from the current directory or ``--board``,
never the installed package's location; ``build`` refuses to render nothing; progress bars and ``--quiet``."""

from __future__ import annotations

from pathlib import Path

import pytest

import morbench
from morbench.cli import main
from morbench.errors import BoardNotFoundError
from morbench.leaderboard.build import default_root
from morbench.leaderboard.schema import read_submission
from morbench.leaderboard.submit import find_board

STEM = "morbench_Motifs-2obj-v0"


def make_board(folder: Path) -> Path:
    (folder / "leaderboard" / "submissions").mkdir(parents=True)
    return folder / "leaderboard"


def test_find_board_walks_up_like_git(tmp_path: Path) -> None:
    board = make_board(tmp_path / "project")
    deep = tmp_path / "project" / "src" / "deep"
    deep.mkdir(parents=True)
    assert find_board(deep) == board.resolve()
    assert find_board(tmp_path / "project") == board.resolve()
    inside = board / "submissions" / STEM
    inside.mkdir()
    assert find_board(inside) == board.resolve()  # running inside the board itself
    (tmp_path / "elsewhere" / "leaderboard").mkdir(parents=True)  # a leaderboard/ without submissions/ is not one
    with pytest.raises(BoardNotFoundError, match=r"no leaderboard found.*--board DIR"):
        find_board(tmp_path / "elsewhere")


def test_default_root_is_never_the_package_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BoardNotFoundError):
        default_root()
    board = make_board(tmp_path)
    assert default_root() == board.resolve()


def test_submit_writes_into_the_board_of_the_current_directory(
    run_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    board = make_board(tmp_path / "project")
    work = tmp_path / "project" / "experiments"
    work.mkdir()
    monkeypatch.chdir(work)
    checkout = Path(morbench.__file__).resolve().parents[1] / "leaderboard" / "submissions" / STEM
    assert not checkout.exists()
    assert main(["submit", str(run_root), "--name", "Mine"]) == 0
    path = board / "submissions" / STEM / "mine.json.gz"
    assert "submission written" in capsys.readouterr().out
    assert read_submission(path)["name"] == "Mine"
    assert not checkout.exists()  # nothing was written into the package's checkout


def test_submit_without_a_board_fails_clearly(
    run_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["submit", str(run_root), "--name", "Mine"]) == 2
    err = capsys.readouterr().err
    assert "no leaderboard found" in err and "--board DIR" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())
    assert main(["submit", str(run_root), "--name", "Mine", "--board", str(tmp_path / "board")]) == 0
    assert (tmp_path / "board" / "submissions" / STEM / "mine.json.gz").is_file()


def test_validate_a_file_from_anywhere(
    base_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no board here: a pip install used outside any checkout
    assert main(["leaderboard", "validate", "--quiet", str(base_file)]) == 0
    assert "1 valid, 0 rejected" in capsys.readouterr().out
    assert main(["leaderboard", "validate"]) == 2  # every file of the board: there is none
    assert "no leaderboard found" in capsys.readouterr().err


def test_build_refuses_to_render_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "submissions"
    empty.mkdir()
    out = tmp_path / "out"
    assert main(["leaderboard", "build", "--submissions", str(empty), "--out", str(out)]) == 2
    assert "no submission files found" in capsys.readouterr().err
    assert main(["leaderboard", "build", "--submissions", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no such submissions directory" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "build"]) == 2
    assert "no leaderboard found" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "README.md").exists()


def test_progress_bars_and_quiet(board_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board = board_dir.parent
    assert main(["leaderboard", "build", "--board", str(board)]) == 0
    captured = capsys.readouterr()
    assert "validate" in captured.err and "3/3" in captured.err  # the bar, on stderr
    assert "built the leaderboard from 3 submission(s)" in captured.out and (board / "README.md").is_file()
    assert main(["leaderboard", "validate", "--board", str(board), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "3 valid, 0 rejected" in captured.out and "3/3" not in captured.err


def test_a_bad_name_is_reported_first(
    run_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no board either: the name is what the user must fix first
    assert main(["submit", str(run_root), "--name", "\u202eseiruaM"]) == 2
    err = capsys.readouterr().err
    assert "U+202E RIGHT-TO-LEFT OVERRIDE" in err and "no leaderboard found" not in err
