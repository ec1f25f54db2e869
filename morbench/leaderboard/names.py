"""Submission names: normalisation, the characters a name may hold, confusable skeletons, file slugs.

A name is shown on the board as written, so two names that *look* alike must not both be accepted for one env,
and a name must not contain characters that change how it (or the text around it) is displayed:

- names are stored in Unicode NFKC form (``morbench submit`` normalises; validation rejects other forms);
- bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), every other format
  character (category Cf: zero-width spaces and joiners, the BOM, tags, ...), the other default-ignorable
  (invisible) code points, unassigned and private-use code points and every non-printable character are
  rejected;
- two names of one env are duplicates when their *skeletons* are equal: the confusable skeleton of Unicode
  Technical Standard #39 (section 4), computed from the confusables data that the ``confusable-homoglyphs``
  package ships (Unicode's ``confusables.txt``), compared after case folding and also case-sensitively, so case
  differences and look-alike characters (Cyrillic ``а`` for Latin ``a``, ``rn`` for ``m``, ``0`` for ``O``,
  capital ``I`` for small ``l``) all collide; two names with the same file slug collide too.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from importlib import resources

from morbench.errors import SubmissionNameError

__all__ = [
    "BIDI_CONTROLS",
    "MAX_COMBINING_MARKS",
    "check_name",
    "describe_char",
    "name_clash_message",
    "name_scripts",
    "name_skeleton",
    "names_clash",
    "normalize_name",
    "same_name",
    "shown",
    "submission_slug",
    "tr39_skeleton",
]

# the bidirectional formatting characters (UAX #9): embeddings, overrides, isolates and the implicit marks
BIDI_CONTROLS = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt): rendered as nothing at all
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_BLANK_GLYPHS = frozenset([0x2800])  # BRAILLE PATTERN BLANK: a visible-width space that is not a space
MAX_COMBINING_MARKS = 4  # on one base character (more is "zalgo" text drawn over its neighbours)
_NEUTRAL_SCRIPTS = frozenset(["COMMON", "INHERITED", "Unknown"])
_SLUG_CHARS = re.compile(r"[^a-z0-9._-]+")


def _is_invisible(code: int) -> bool:
    return code in _BLANK_GLYPHS or any(lo <= code <= hi for lo, hi in _DEFAULT_IGNORABLE)


def describe_char(char: str) -> str:
    """``'а' (U+0430 CYRILLIC SMALL LETTER A)``; invisible characters are shown by code point only."""
    code = ord(char)
    label = unicodedata.name(char, "unnamed")
    glyph = "" if (_is_invisible(code) or not char.isprintable()) else f"{char!r} "
    return f"{glyph}(U+{code:04X} {label})"


def shown(name: str) -> str:
    r"""A name as it can be shown in a terminal without looking like another: non-ASCII escaped (``\u0430``)."""
    return ascii(name)


def normalize_name(name: str) -> str:
    """What ``morbench submit`` stores: NFKC form, surrounding whitespace removed."""
    return unicodedata.normalize("NFKC", name).strip()


def check_name(name: str, source: str = "--name") -> None:
    """Raise :class:`SubmissionNameError` unless ``name`` is a printable NFKC name without invisible characters.

    ``source`` names where the name came from (a file, or ``--name``) in the message.
    """
    if not isinstance(name, str) or not name.strip():
        raise SubmissionNameError(f"{source}: the name must be a non-empty string, got {name!r}")
    for position, char in enumerate(name):
        code = ord(char)
        where = f"{describe_char(char)} at position {position}"
        if code in BIDI_CONTROLS:
            raise SubmissionNameError(
                f"{source}: the name {shown(name)} contains {where}, a bidirectional control character that "
                "changes the order in which the name (and the text after it) is displayed; names may not contain "
                "bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069): remove it"
            )
        if _is_invisible(code) or unicodedata.category(char) == "Cf":
            raise SubmissionNameError(
                f"{source}: the name {shown(name)} contains {where}, an invisible (zero-width or format) "
                "character; names must be made of visible characters: remove it"
            )
    normalized = unicodedata.normalize("NFKC", name)
    if normalized != name:
        raise SubmissionNameError(
            f"{source}: the name {shown(name)} is not in Unicode NFKC form; write it as {shown(normalized)} "
            "(`morbench submit` normalises names)"
        )
    for position, char in enumerate(name):
        where = f"{describe_char(char)} at position {position}"
        if not char.isprintable() and char != " ":
            category = unicodedata.category(char)
            kind = {"Cn": "unassigned", "Co": "private-use", "Cs": "surrogate"}.get(category, "non-printable")
            raise SubmissionNameError(
                f"{source}: the name {shown(name)} contains {where}, a {kind} character (category {category}); "
                "names must be printable, on one line, with plain spaces only"
            )
    if name != name.strip():
        raise SubmissionNameError(
            f"{source}: the name {shown(name)} starts or ends with whitespace; use {shown(name.strip())}"
        )
    run = 0
    for position, char in enumerate(name):
        run = run + 1 if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me") else 0
        if run > MAX_COMBINING_MARKS:
            raise SubmissionNameError(
                f"{source}: the name {shown(name)} stacks more than {MAX_COMBINING_MARKS} combining marks on one "
                f"character (at position {position}); such marks are drawn over the neighbouring text"
            )


# -- confusable skeletons (UTS #39) -----------------------------------------------------------------------------
def _strip_direction_marks(text: str) -> str:
    # the package wraps right-to-left glyphs in U+200E marks so that its data displays left to right
    return text.replace("\u200e", "").replace("\u200f", "")


@functools.lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Character -> its prototype (one or more characters) from Unicode's ``confusables.txt``.

    ``confusable-homoglyphs`` stores the file's mappings (source character -> prototype string) in both
    directions. Sources are single characters and prototypes never map further, so a source with a multi-character
    prototype has exactly that entry, and the single-character mappings form stars: the centre, linked to two or more
    characters, is the prototype. A class of only two characters is stored symmetrically, so which of the two is
    the prototype cannot be read back; either one gives the same equivalence, and the ASCII (else the lower) one
    is taken.
    """
    raw = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    links: dict[str, set[str]] = defaultdict(set)
    for key, entries in raw.items():
        links[_strip_direction_marks(key)].update(_strip_direction_marks(entry["c"]) for entry in entries)
    single = {k: {t for t in v if len(t) == 1} for k, v in links.items() if len(k) == 1}

    def rank(char: str) -> tuple[bool, int]:
        return (not char.isascii(), ord(char))

    table: dict[str, str] = {}
    for char, targets in links.items():
        if len(char) != 1:
            continue
        longer = sorted(t for t in targets if len(t) > 1)
        if longer:  # a source whose prototype is a sequence (``m`` -> ``rn``)
            table[char] = longer[0]
        elif len(targets) == 1:
            (other,) = targets
            # a leaf of a star (the centre is the prototype), or the other one of a two-character class
            if len(single.get(other, ())) > 1 or rank(other) < rank(char):
                table[char] = other
    # prototypes inside sequences are mapped like any character (matters only for the two-character classes)
    for char, target in table.items():
        if len(target) > 1:
            table[char] = "".join(table.get(t, t) for t in target)
    return table


def tr39_skeleton(text: str) -> str:
    """The UTS #39 skeleton: NFD, every character replaced by its confusables prototype, NFD again.

    Repeated until nothing changes, so that the skeleton of a skeleton is itself.
    """
    table = _prototypes()
    for _ in range(4):  # a prototype's NFD can hold characters with prototypes (U+0439 -> U+0438 U+0306): repeat
        skeleton = unicodedata.normalize("NFD", "".join(table.get(c, c) for c in unicodedata.normalize("NFD", text)))
        if skeleton == text:
            break
        text = skeleton
    return text


def _visible(name: str) -> str:
    """NFKC, invisible characters dropped, runs of whitespace as one space: what a reader sees."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(c for c in text if not (_is_invisible(ord(c)) or unicodedata.category(c) == "Cf"))
    return " ".join(text.split())


def name_skeleton(name: str) -> str:
    """The key two names of one env must not share: the confusable skeleton of the case-folded NFKC name.

    Invisible characters are dropped and runs of whitespace count as one space (so that names stored before
    these rules, or by hand, are still compared by what a reader sees). The result is case-folded again, as some
    prototypes are capitals (``0`` -> ``O``).
    """
    return tr39_skeleton(_visible(name).casefold()).casefold()


def names_clash(a: str, b: str) -> bool:
    """Two names that cannot both be on one env's board.

    Equal :func:`name_skeleton` (look-alike up to case), equal case-sensitive skeletons (``Ilya`` and ``llya``:
    a capital I looks like a small L, which case folding would hide), or the same file slug.
    """
    return (
        name_skeleton(a) == name_skeleton(b)
        or tr39_skeleton(_visible(a)) == tr39_skeleton(_visible(b))
        or submission_slug(a) == submission_slug(b)
    )


@functools.lru_cache(maxsize=1)
def _script_ranges() -> tuple[list[int], list[tuple[int, int, str]]]:
    data = json.loads(resources.files("confusable_homoglyphs").joinpath("categories.json").read_text("utf-8"))
    aliases = data["iso_15924_aliases"]
    ranges = [(lo, hi, aliases[alias]) for lo, hi, alias, _ in data["code_points_ranges"]]
    return [lo for lo, _, _ in ranges], ranges


def _script(char: str) -> str:
    starts, ranges = _script_ranges()
    i = bisect.bisect_right(starts, ord(char)) - 1
    if i >= 0 and ranges[i][0] <= ord(char) <= ranges[i][1]:
        return ranges[i][2]
    return "Unknown"


def name_scripts(name: str) -> list[str]:
    """The scripts (Unicode Script property) of a name's letters, Common and Inherited left out."""
    return sorted({_script(c) for c in name} - _NEUTRAL_SCRIPTS)


def same_name(a: str, b: str) -> bool:
    """The same name up to NFKC and case: what ``--force`` may replace."""
    return unicodedata.normalize("NFKC", a).casefold() == unicodedata.normalize("NFKC", b).casefold()


def name_clash_message(name: str, source: str, other: str, other_source: str, env_id: str) -> str:
    """Why ``name`` (from ``source``) is refused next to ``other`` (from ``other_source``), naming both."""
    if same_name(name, other):
        what = f"is the same name (compared case-insensitively) as {shown(other)} in {other_source}"
    elif submission_slug(name) == submission_slug(other) and name_skeleton(name) != name_skeleton(other):
        what = f"has the same file name ({submission_slug(name)!r}) as {shown(other)} in {other_source}"
    else:
        scripts = name_scripts(name)
        mixed = f"mixes {' and '.join(s.title() for s in scripts)} letters and " if len(scripts) > 1 else ""
        foreign = [describe_char(c) for c in dict.fromkeys(name) if not c.isascii()][:5]
        detail = f" (its non-ASCII characters: {', '.join(foreign)})" if foreign else ""
        what = f"{mixed}looks like {shown(other)} in {other_source}{detail}"
    return (
        f"{source}: duplicate submission name: {shown(name)} for {env_id} {what}; names must be unique per env "
        "and must not look like another entry's: pick a distinct name"
    )


def submission_slug(name: str) -> str:
    """The file stem of a submission name: ``[a-z0-9._-]``, at most 80 characters.

    ``IterativeRS (ours)`` -> ``iterativers-ours``; accents are dropped (``Café`` -> ``cafe``). Letters or digits
    with no ASCII form (another script) add a hash of the name, so that distinct names get distinct files.
    """
    text = unicodedata.normalize("NFKC", name).casefold()
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    slug = _SLUG_CHARS.sub("-", plain).strip("-.")
    if any(not c.isascii() and c.isalnum() for c in plain):
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
        slug = f"{slug[:69].strip('-.')}-{digest}".strip("-")
    return slug[:80] or "submission"
