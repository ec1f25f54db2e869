"""The submission file format: schema version, size limits, reading (gzip, strict JSON) and schema validation."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from morbench.errors import SubmissionError
from morbench.leaderboard import names

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_JSON_BYTES",
    "PROVENANCE_KINDS",
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "SUBMISSION_SUFFIXES",
    "check_name",
    "check_schema",
    "content_sha256",
    "dumps_submission",
    "env_stem",
    "load_schema",
    "name_skeleton",
    "parse_submission",
    "read_submission",
    "read_submission_bytes",
    "submission_slug",
]

SCHEMA_VERSION = 2  # what `morbench submit` writes: version 1 plus the required `provenance`
READABLE_SCHEMA_VERSIONS = (1, 2)  # version 1 files (no provenance) still load, as unverified entries
PROVENANCE_KINDS = ("baseline", "policy", "samples")
MAX_FILE_BYTES = 8 * 1024 * 1024  # a submission file as committed (gzipped JSON; 5 seeds at the protocol's
# 1,024 samples per preference: QM9 about 1.7 MB, CNS about 1.8 MB, Enhancer's 200-bp sequences about 5 MB)
MAX_JSON_BYTES = 64 * 1024 * 1024  # the decompressed JSON (guards against gzip bombs)
SUBMISSION_SUFFIXES = (".json.gz", ".json")
MAX_SEQUENCE_CHARS = 20_000  # one generated sequence (the schema's maxLength)


@functools.lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The JSON schema of submissions (``morbench/leaderboard/submission.schema.json``)."""
    text = resources.files("morbench.leaderboard").joinpath("submission.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def env_stem(env_id: str) -> str:
    """The folder of an env's submissions: ``morbench/Motifs-v0`` -> ``morbench_Motifs-v0``."""
    return env_id.replace("/", "_")


def submission_slug(name: str) -> str:
    """The file stem of a submission name (``IterativeRS (ours)`` -> ``iterativers-ours``): see :mod:`.names`."""
    return names.submission_slug(name)


def name_skeleton(name: str) -> str:
    """The confusable skeleton two names of one env must not share (Unicode TS #39): see :mod:`.names`."""
    return names.name_skeleton(name)


def check_name(name: str, source: str) -> None:
    """A printable NFKC name without bidi controls or invisible characters, else :class:`SubmissionNameError`."""
    names.check_name(name, source)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (JSON has no NaN or infinity; rewards must be finite numbers)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r} in one object")
        out[key] = value
    return out


def _first_non_finite(value: Any, where: str = "$") -> str | None:
    """Where a float overflowed to infinity while parsing (e.g. ``1e400``), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if isinstance(value, dict):
        for key, item in value.items():
            found = _first_non_finite(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_non_finite(item, f"{where}[{i}]")
            if found:
                return found
    return None


def _decompress(data: bytes, source: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as handle:
            out = handle.read(MAX_JSON_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise SubmissionError(f"{source}: not a valid gzip file ({exc})") from None
    if len(out) > MAX_JSON_BYTES:
        raise SubmissionError(f"{source}: decompresses to more than {MAX_JSON_BYTES} bytes (the limit)")
    return out


def parse_submission(data: bytes, source: str, gzipped: bool) -> dict[str, Any]:
    """Decode a submission's bytes: gzip (if ``gzipped``), UTF-8, strict JSON (no NaN/Infinity, no duplicate keys)."""
    if gzipped:
        data = _decompress(data, source)
    elif len(data) > MAX_JSON_BYTES:
        raise SubmissionError(f"{source}: {len(data)} bytes of JSON is over the limit of {MAX_JSON_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{source}: not UTF-8 text ({exc})") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise SubmissionError(f"{source}: malformed JSON: {exc}") from None
    where = _first_non_finite(obj)
    if where is not None:
        raise SubmissionError(f"{source}: {where} is not a finite number (NaN and infinity are not allowed)")
    if not isinstance(obj, dict):
        raise SubmissionError(f"{source}: the top level must be a JSON object, got {type(obj).__name__}")
    return obj


def read_submission(path: str | Path) -> dict[str, Any]:
    """Read one submission file (``.json`` or ``.json.gz``) within the size limits."""
    path = Path(path)
    return parse_submission(read_submission_bytes(path), str(path), gzipped=path.name.endswith(".gz"))


def read_submission_bytes(path: str | Path) -> bytes:
    """The exact bytes of a submission file, after its name and size checks (parse them once, hash them once)."""
    path = Path(path)
    source = str(path)
    if not path.name.endswith(SUBMISSION_SUFFIXES):
        raise SubmissionError(f"{source}: a submission file must end in .json.gz or .json")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SubmissionError(f"{source}: cannot read ({exc})") from None
    if size > MAX_FILE_BYTES:
        raise SubmissionError(
            f"{source}: {size} bytes is over the size limit of {MAX_FILE_BYTES} bytes; submit gzipped JSON "
            "(`morbench submit` writes .json.gz) with the protocol's sample count"
        )
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:  # grew after the size check
        raise SubmissionError(f"{source}: {len(data)} bytes is over the size limit of {MAX_FILE_BYTES} bytes")
    return data


PER_SAMPLE_FIELDS = ("sequences", "rewards", "valid", "judge_rewards", "logprobs", "prior_logprobs", "contexts")
_SKELETON_ITEMS = 2


def check_schema(submission: Any, source: str) -> None:
    """Schema version first (a clear message for other versions), then the full JSON schema.

    ``jsonschema`` checks every field of the document, with the per-sample arrays (tens of thousands of items,
    at about 20 us per item in ``jsonschema``) cut to their first items; :func:`check_sample_items` then checks
    every item of those arrays against the same item schemas, vectorized.
    """
    import jsonschema

    if not isinstance(submission, dict):
        raise SubmissionError(f"{source}: the top level must be a JSON object")
    version = submission.get("schema_version")
    if type(version) is not int or version not in READABLE_SCHEMA_VERSIONS:
        raise SubmissionError(
            f"{source}: schema_version {version!r} is not supported; this morbench reads schema_version "
            f"{SCHEMA_VERSION} (and the legacy {READABLE_SCHEMA_VERSIONS[0]}; write the file with `morbench submit`)"
        )
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(_skeleton(submission)), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        lines = [f"  at {_json_path(e.absolute_path)}: {_short(e.message)}" for e in errors[:10]]
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise SubmissionError(f"{source}: does not match the submission schema:\n" + "\n".join(lines) + more)
    check_name(submission["name"], source)
    check_sample_items(submission, source)


def _skeleton(submission: dict[str, Any]) -> dict[str, Any]:
    """A copy in which every per-sample array keeps only its first items (the rest is left to check_sample_items)."""
    seeds = submission.get("seeds")
    if not isinstance(seeds, list):
        return submission
    out = dict(submission)
    out["seeds"] = []
    for seed in seeds:
        if isinstance(seed, dict) and isinstance(seed.get("preferences"), list):
            seed = dict(seed)
            seed["preferences"] = [_cut(entry) for entry in seed["preferences"]]
        out["seeds"].append(seed)
    return out


def _cut(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry
    return {k: v[:_SKELETON_ITEMS] if k in PER_SAMPLE_FIELDS and isinstance(v, list) else v for k, v in entry.items()}


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _is_reward_row(row: Any) -> bool:
    return type(row) is list and 1 <= len(row) <= 16 and all(type(v) in (int, float) for v in row)


_ITEM_CHECKS = {
    "sequences": (lambda x: type(x) is str and len(x) <= MAX_SEQUENCE_CHARS, "a string of at most 20,000 characters"),
    "rewards": (_is_reward_row, "a list of 1 to 16 numbers"),
    "judge_rewards": (_is_reward_row, "a list of 1 to 16 numbers"),
    "valid": (lambda x: type(x) is bool, "a boolean"),
    "logprobs": (lambda x: x is None or _is_number(x), "a number or null"),
    "prior_logprobs": (lambda x: x is None or _is_number(x), "a number or null"),
    "contexts": (lambda x: type(x) is str and len(x) <= 200, "a string of at most 200 characters"),
}


def check_sample_items(submission: dict[str, Any], source: str) -> None:
    """Every item of every per-sample array matches the schema's item type (the part ``_skeleton`` cut)."""
    for s, seed in enumerate(submission["seeds"]):
        for p, entry in enumerate(seed["preferences"]):
            for field, (ok, expected) in _ITEM_CHECKS.items():
                values = entry.get(field)
                if values is None:
                    continue
                bad = next((i for i, value in enumerate(values) if not ok(value)), None)
                if bad is not None:
                    raise SubmissionError(
                        f"{source}: does not match the submission schema:\n  at $.seeds[{s}].preferences[{p}]."
                        f"{field}[{bad}]: {_short(repr(values[bad]), 80)} is not {expected}"
                    )


def _json_path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[:limit] + "..."


def content_sha256(data: bytes) -> str:
    """The sha256 (hex) of a submission file's exact bytes: the key of its verification in the ledger."""
    return hashlib.sha256(data).hexdigest()


def dumps_submission(submission: dict[str, Any]) -> bytes:
    """Gzipped compact JSON (``mtime=0``: the same submission always gives the same bytes)."""
    text = json.dumps(submission, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
