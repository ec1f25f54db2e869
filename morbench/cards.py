"""Env cards: an env class's docstring is its card, and ``envs/<task>/README.md`` is generated from it.

The docstring is written in Markdown with Gymnasium's fixed sections (Description, Observation Space, Action
Space, Rewards, Starting State, Episode End, Arguments, ..., Version History) and opens with a ``>>>`` example
that ``tests/test_cards.py`` runs as a doctest. :func:`render_card` turns it into the README: a title naming
every registered id of the class, then the docstring with each ``>>>`` example in a ``pycon`` fence, and a
generated "Task quality" section from each id's committed quality report (``morbench quality``).
``morbench card --write`` rewrites every README; ``tests/test_cards.py`` fails when one is stale.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym

from morbench.errors import ConfigError
from morbench.registry import NAMESPACE, register_envs, spec

__all__ = [
    "CARD_NAME",
    "SECTIONS",
    "add_card_parser",
    "arguments_table",
    "card_classes",
    "card_command",
    "card_path",
    "env_class",
    "render_card",
]

CARD_NAME = "README.md"
# the sections every card has, in this order (a card may add others between them, e.g. "Measured figures")
SECTIONS = (
    "Description",
    "Observation Space",
    "Action Space",
    "Rewards",
    "Starting State",
    "Episode End",
    "Arguments",
    "Provenance & licenses",
    "Version History",
)


def env_class(env_id: str) -> type:
    """The env class a registered id's string entry point names (``module:Class``)."""
    entry_point = spec(env_id).entry_point
    if not isinstance(entry_point, str) or ":" not in entry_point:
        raise ConfigError(f"{env_id!r} has entry point {entry_point!r}; a card needs a 'module:Class' string")
    module, _, name = entry_point.partition(":")
    return getattr(importlib.import_module(module), name)


def card_classes() -> dict[type, list[str]]:
    """Every env class with a card and the ids registered for it, in registration order."""
    register_envs()
    classes: dict[type, list[str]] = {}
    for env_id in gym.registry:
        if env_id.startswith(f"{NAMESPACE}/"):
            classes.setdefault(env_class(env_id), []).append(env_id)
    return classes


def card_path(cls: type) -> Path:
    """Where the generated card of ``cls`` lives: ``README.md`` beside the module that defines it."""
    return Path(inspect.getfile(cls)).resolve().parent / CARD_NAME


def render_card(cls: type, env_ids: list[str], reports: dict[str, dict[str, Any] | None] | None = None) -> str:
    """The README text of ``cls``: a generated-file notice, a title naming ``env_ids``, then the docstring.

    A generated "Task quality" section (:func:`morbench.quality.render_quality_section`) goes before the
    docstring's Version History (at the end if it has none), one table per id from ``reports`` (default: each
    id's committed ``quality/<Name>-v<N>.json``), so the card's figures are the report's by construction.
    """
    from morbench.quality import read_quality_report, render_quality_section

    doc = inspect.getdoc(cls)
    if not doc:
        raise ConfigError(f"{cls.__qualname__} has no docstring; its docstring is its env card")
    name = spec(env_ids[0]).name
    ids = ", ".join(f"`{env_id}`" for env_id in env_ids)
    notice = (
        f"<!-- Generated from the docstring of {cls.__module__}.{cls.__qualname__} by `morbench card --write`; "
        "edit the docstring, not this file. -->"
    )
    if reports is None:
        reports = {env_id: read_quality_report(env_id) for env_id in env_ids}
    body = _with_section(_fence_examples(doc), render_quality_section(env_ids, reports), before="## Version History")
    return f"{notice}\n# {name} ({ids})\n\n{body}\n"


def _with_section(doc: str, section: str, before: str) -> str:
    """``doc`` with ``section`` inserted before the line ``before`` (appended where there is no such line)."""
    lines = doc.splitlines()
    if before in lines:
        at = lines.index(before)
        return "\n".join([*lines[:at], *section.splitlines(), "", *lines[at:]])
    return f"{doc}\n\n{section}"


def _fence_examples(doc: str) -> str:
    """Put every ``>>>`` example (its lines up to the next blank line) in a ``pycon`` code fence."""
    out: list[str] = []
    inside = False
    for line in doc.splitlines():
        if not inside and line.startswith(">>> "):
            out.append("```pycon")
            inside = True
        elif inside and not line.strip():
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


def arguments_table(doc: str) -> list[dict[str, str]]:
    """The rows of the card's ``## Arguments`` table, as ``{"argument", "type", "default", "meaning"}`` dicts.

    The backticks around names and types are removed.
    """
    section = doc.split("\n## Arguments\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    table = []
    for row in rows[1:]:  # past the header (the |---| line does not start with "| ")
        cells = [cell.strip() for cell in row.strip().strip("|").split(" | ")]
        entry = dict(zip(header, cells, strict=True))
        entry["argument"] = entry["argument"].strip("`")
        entry["type"] = entry["type"].strip("`")
        table.append(entry)
    return table


def add_card_parser(sub: Any) -> None:
    """Add the ``card`` subcommand to the ``morbench`` parser."""
    card = sub.add_parser(
        "card",
        help="print an env's card (its class docstring as README.md), or --write / --check the READMEs",
        description="Env cards are the env classes' docstrings; envs/<task>/README.md is generated from them.",
    )
    card.add_argument("env", nargs="*", help="env ids (default: every registered env)")
    mode = card.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite each card's README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if a README.md differs from its docstring")


def card_command(args: argparse.Namespace) -> int:
    """``morbench card``: print the cards, or ``--write`` the READMEs, or ``--check`` them (exit status 1 if stale)."""
    classes = card_classes()
    wanted = {env_class(env_id) for env_id in args.env}  # spec() names an unknown id with suggestions
    stale = []
    for cls, env_ids in classes.items():
        if wanted and cls not in wanted:
            continue
        text, path = render_card(cls, env_ids), card_path(cls)
        if args.write:
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                print(f"wrote {path}")
        elif args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path)
        else:
            sys.stdout.write(text)
    for path in stale:
        print(f"{path} differs from its env's docstring; run `morbench card --write`", file=sys.stderr)
    return 1 if stale else 0
