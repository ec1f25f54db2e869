"""Project hygiene: docs point only at files inside the repository, every declared pytest marker is used, and every
pytest step of CI selects tests."""

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {"build", "dist", "runs", "results", "node_modules"}

# a markdown link target, or a backticked relative path (`../x/y.md`, `docs/metrics.md`)
LINK = re.compile(r"\]\(([^)\s]+)\)")
BACKTICKED_PATH = re.compile(r"`(\.{1,2}/[^`\s]+)`")


def _markdown_files() -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(ROOT):  # hidden folders (.venv, .git) and outputs are not walked
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in SKIPPED_DIRS]
        found += [Path(folder) / name for name in files if name.endswith(".md")]
    return sorted(found)


def _local_references(text: str) -> list[str]:
    targets = [t.strip("<>") for t in LINK.findall(text)]
    targets = [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]
    return [t.split("#", 1)[0] for t in targets] + BACKTICKED_PATH.findall(text)


@pytest.mark.parametrize("doc", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_reference_only_files_inside_the_repository(doc: Path) -> None:
    outside, missing = [], []
    for target in _local_references(doc.read_text(encoding="utf-8")):
        resolved = (doc.parent / target).resolve()
        if not resolved.is_relative_to(ROOT):
            outside.append(target)
        elif not resolved.exists():
            missing.append(target)
    assert outside == [], f"{doc.relative_to(ROOT)} points outside the repository: cite the source in words instead"
    assert missing == [], f"{doc.relative_to(ROOT)} links to files that do not exist"


def test_every_declared_pytest_marker_is_used() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    test_sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py"))
    names = [m.split(":", 1)[0].strip() for m in markers]
    unused = [n for n in names if f"mark.{n}" not in test_sources and f'"{n}" in item.keywords' not in test_sources]
    assert unused == [], f"markers declared in pyproject.toml but used by no test: remove them ({unused})"


DOTTED_NAME = re.compile(r"`(morbench(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


@pytest.mark.parametrize("doc", ["README.md", "docs/metrics.md", "docs/contract.md"])
def test_docs_name_only_existing_morbench_objects(doc: str) -> None:
    names = sorted(set(DOTTED_NAME.findall((ROOT / doc).read_text(encoding="utf-8"))))
    stale = [name for name in names if not _resolves(name)]
    assert stale == [], f"{doc} names objects that do not exist (removed or renamed): {stale}"


def test_every_pytest_step_of_ci_selects_tests() -> None:
    """Each extra pytest step in .ci/run (e.g. the slow committed-board test) collects at least one test.

    A step whose -m/-k selection matches nothing exits 5 and fails CI only after the whole default run.
    """
    steps = [line.split("#", 1)[0] for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    steps = [shlex.split(line) for line in steps if "-m pytest" in line]
    assert steps, ".ci/run runs no pytest step of its own: update this test"
    for step in steps:
        args = step[step.index("pytest") + 1 :]
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"`pytest {' '.join(args)}` in .ci/run selects no test:\n{done.stdout[-2000:]}"
