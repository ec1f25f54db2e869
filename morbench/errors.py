"""Exception hierarchy: every morbench error names the bad value and how to fix it."""

from __future__ import annotations


class MorbenchError(Exception):
    """Base class of every error raised by morbench."""


class UnknownEnvError(MorbenchError, LookupError):
    """An environment id is not registered."""


class InvalidActionError(MorbenchError, ValueError):
    """An action is not a token id of the environment's vocabulary."""


class StepAfterDoneError(MorbenchError, RuntimeError):
    """``step`` was called after the episode ended without a ``reset``."""


class InvalidPreferenceError(MorbenchError, ValueError):
    """A preference vector has the wrong length, negative entries or does not sum to 1."""


class AssetError(MorbenchError, FileNotFoundError):
    """A shipped asset is missing or its checksum does not match the manifest."""


class OracleBudgetExhausted(MorbenchError, RuntimeError):
    """Scoring a batch would exceed the oracle-call budget."""


class ConfigError(MorbenchError, ValueError):
    """A configuration field has an invalid value."""


class InvalidRunError(MorbenchError, ValueError):
    """A run directory or evaluation file is missing, malformed or inconsistent."""


class SubmissionError(MorbenchError, ValueError):
    """A leaderboard submission is malformed or does not verify."""


class CheckpointError(InvalidRunError):
    """A training checkpoint is damaged, edited or not a checkpoint; nothing was restored from it."""


class RunLockedError(InvalidRunError):
    """Another morbench process is writing to the same run or benchmark directory."""


class VerificationError(SubmissionError):
    """``morbench leaderboard verify`` could not reproduce a submission's samples (or its artifacts' digests)."""


class OracleStateError(InvalidRunError):
    """Saved oracle state (call counters, budget, cache) is malformed or does not fit the oracle it is loaded into."""


class OracleTimeoutError(MorbenchError, TimeoutError):
    """An oracle computation did not finish even alone in its own process; no verdict about the sequence is kept."""


class MissingDependencyError(MorbenchError, ImportError):
    """An optional package that a morbench feature needs is not installed (the message names the install command)."""


class SubmissionNameError(SubmissionError):
    """A submission name holds invisible, bidi-control or non-printable characters, or impersonates another entry."""


class BoardNotFoundError(SubmissionError):
    """No leaderboard folder was found from the current directory, and none was given with ``--board``."""
