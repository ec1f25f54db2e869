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
