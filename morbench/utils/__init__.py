"""Utilities for env authors and users: the vector-reward env checker."""

from morbench.utils.env_checker import EnvCheckError, check_env

__all__ = ["EnvCheckError", "check_env"]
