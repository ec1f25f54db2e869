"""The build's cache of scored entries: an unchanged submission is not validated and scored again.

``morbench leaderboard build`` keeps, per submission file, the entry it scored (metrics per seed, aggregates,
intervals, rank blockers; the submission's record without its samples) in ``.cache/`` beside the submissions
folder (``leaderboard/.cache/``, not committed).
The key binds everything the entry depends on:

* the file's exact bytes (sha256) and its path under the submissions folder (the location check);
* the ledger record of those bytes (verification decides ranking and the KL shown);
* the code and data that score it: a sha256 over morbench's version and every file of the installed package
  (``morbench``, ``morbench.envs`` with their assets, ``morbench.baselines``), so any change to the scorer, an env,
  an oracle's weights or the protocol re-scores everything.

A miss, an unreadable entry or one of another format is simply scored again; ``build --rescore`` ignores the
cache. A fresh clone has no cache, so CI's check that the committed board is regenerated exactly always scores
from scratch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from morbench.leaderboard.render import LeaderboardEntry

__all__ = ["CACHE_DIR", "CACHE_FORMAT", "EntryCache", "code_fingerprint"]

CACHE_DIR = ".cache"
CACHE_FORMAT = "morbench-board-cache/1"
_DROPPED_SEED_FIELDS = ("preferences",)  # the samples: scored already, and the bulk of a file
_BUILD_FIELDS = ("rank", "group", "vs_leader")  # set by ranking, from all of an env's entries: never cached


@functools.cache
def code_fingerprint() -> str:
    """sha256 over morbench's version and every file (path and bytes) of the installed package.

    Computed once per process (it reads every file, seconds on a loaded CPU; a study asks for it per run): the
    code a process scores with is the code it loaded, not what is on disk later.
    """
    import morbench
    import morbench.baselines
    import morbench.envs

    digest = hashlib.sha256(f"morbench {morbench.__version__}\n".encode())
    for package in (morbench, morbench.envs, morbench.baselines):
        root = Path(str(package.__file__)).parent
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            digest.update(f"{package.__name__}/{path.relative_to(root).as_posix()}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclasses.dataclass
class CachedEntry:
    """A scored entry read back from the cache, with what the duplicate-name check needs."""

    source: str
    name: str
    env_id: str
    entry: LeaderboardEntry


class EntryCache:
    """Scored entries under ``folder``, one JSON file per key (written atomically)."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = folder
        self.fingerprint = fingerprint

    def key(self, sha256: str, location: str, record: Any) -> str:
        """The cache key of a file's bytes at ``location`` with ledger ``record`` under this code."""
        text = json.dumps([CACHE_FORMAT, self.fingerprint, sha256, location, record], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str, source: str) -> CachedEntry | None:
        """The cached entry of ``key`` (None: a miss, or a cache file this build cannot use)."""
        try:
            data = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
            if data.get("format") != CACHE_FORMAT or data.get("key") != key:
                return None
            entry = LeaderboardEntry(**data["entry"])
            return CachedEntry(source, entry.name, str(data["env_id"]), entry)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def put(self, key: str, env_id: str, entry: LeaderboardEntry) -> None:
        """Store ``entry`` (without its samples and build-time ranking); a failure to write only costs speed."""
        fields = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry) if f.name not in _BUILD_FIELDS}
        seeds = [{k: v for k, v in seed.items() if k not in _DROPPED_SEED_FIELDS} for seed in entry.submission["seeds"]]
        fields["submission"] = {**entry.submission, "seeds": seeds}
        try:
            text = json.dumps({"format": CACHE_FORMAT, "key": key, "env_id": env_id, "entry": fields}, allow_nan=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{os.getpid()}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.folder / f"{key}.json")
        except (OSError, TypeError, ValueError):
            return
