"""The morbench leaderboard: submission format, ``morbench submit``, validation by re-scoring, and the board build.

Submissions live in ``leaderboard/submissions/<env-stem>/<name>.json.gz`` (schema: ``submission.schema.json``);
``morbench leaderboard build`` re-scores them all and renders ``leaderboard/README.md`` and
``leaderboard/site/index.html``. The rules: ``leaderboard/SUBMITTING.md``.
"""

from morbench.leaderboard.schema import MAX_FILE_BYTES, MAX_JSON_BYTES, SCHEMA_VERSION, read_submission
from morbench.leaderboard.validate import (
    MIN_RANKED_SEEDS,
    MIN_SAMPLES_PER_PREFERENCE,
    REWARD_TOLERANCE,
    validate_files,
    validate_submission,
)

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_JSON_BYTES",
    "MIN_RANKED_SEEDS",
    "MIN_SAMPLES_PER_PREFERENCE",
    "REWARD_TOLERANCE",
    "SCHEMA_VERSION",
    "read_submission",
    "validate_files",
    "validate_submission",
]
