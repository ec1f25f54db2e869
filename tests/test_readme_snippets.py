"""The README's code runs as written: every ```python block is executed (each in a fresh interpreter, in an empty
folder); ```bash blocks and untagged blocks are not run, but the morbench subcommands of bash blocks must exist.

A block whose info string holds ``no-run`` (```python no-run) is skipped; none should need it.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from morbench.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[tuple[str, str, str]]:
    """``(section heading, info string, code)`` of every fenced block, in order (``#`` lines inside blocks are
    code comments, not headings)."""
    text = README.read_text()
    blocks, start = [], 0
    heading = "top"
    for match in FENCE.finditer(text):
        headings = re.findall(r"^#+ (.+)$", text[start : match.start()], re.MULTILINE)
        heading = headings[-1] if headings else heading
        blocks.append((heading, match["info"].strip(), match["code"]))
        start = match.end()
    return blocks


PYTHON_BLOCKS = [
    (h, code) for h, info, code in readme_blocks() if info.split()[:1] == ["python"] and "no-run" not in info
]


def test_readme_has_python_snippets_under_their_sections():
    sections = [heading for heading, _ in PYTHON_BLOCKS]
    assert {"Use an environment", "Benchmark your own method", "Train with TRL"} <= set(sections)


@pytest.mark.parametrize("code", [c for _, c in PYTHON_BLOCKS], ids=[h for h, _ in PYTHON_BLOCKS])
def test_readme_python_snippet_runs(code, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, f"README snippet failed:\n{code}\n--- stderr ---\n{done.stderr[-4000:]}"


def test_readme_shell_snippets_use_existing_morbench_commands():
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    used = set()
    for _, info, code in readme_blocks():
        if info.split()[:1] in (["bash"], ["sh"], ["console"]):
            used |= set(re.findall(r"(?:^|[;&|(]\s*|\s)morbench ([a-z][a-z-]*)", code, re.MULTILINE))
    assert used, "the README shows no morbench command?"
    assert used <= commands, f"README uses unknown subcommands: {sorted(used - commands)}"
