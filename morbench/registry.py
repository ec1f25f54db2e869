"""Versioned environment ids (``morbench/<Task>-v<N>``) on top of Gymnasium's registry."""

from __future__ import annotations

import difflib
import json
from typing import Any

import gymnasium as gym
from gymnasium import error as gym_error
from gymnasium.envs.registration import EnvSpec

from morbench.errors import UnknownEnvError

NAMESPACE = "morbench"

__all__ = ["NAMESPACE", "list_envs", "make", "make_vec", "register_envs", "register_task", "spec", "spec_to_dict"]


def register_task(name: str, version: int, entry_point: str, vector_entry_point: str, **kwargs: Any) -> str:
    """Register ``morbench/<name>-v<version>``; variants are registrations of the same class with other kwargs."""
    env_id = f"{NAMESPACE}/{name}-v{version}"
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point=entry_point,
            vector_entry_point=vector_entry_point,
            disable_env_checker=True,  # Gymnasium's passive checker expects scalar rewards; use morbench.utils.check_env
            kwargs=kwargs,
        )
    return env_id


def list_envs() -> list[str]:
    """All registered morbench env ids, sorted."""
    register_envs()
    return sorted(env_id for env_id in gym.registry if env_id.startswith(f"{NAMESPACE}/"))


def spec(env_id: str) -> EnvSpec:
    """The Gymnasium ``EnvSpec`` of a morbench id (raises :class:`UnknownEnvError` with suggestions)."""
    register_envs()
    if env_id not in gym.registry or not env_id.startswith(f"{NAMESPACE}/"):
        raise UnknownEnvError(_unknown_message(env_id))
    return gym.registry[env_id]


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """Create one environment: ``morbench.make("morbench/QM9-v0")``. Keyword arguments override the spec's."""
    env_spec = spec(env_id)
    try:
        return gym.make(env_spec, **kwargs)
    except gym_error.Error as exc:  # pragma: no cover - Gymnasium-level failures keep their message
        raise UnknownEnvError(f"could not make {env_id!r}: {exc}") from exc


def make_vec(env_id: str, num_envs: int = 1, **kwargs: Any):
    """Create the native vector env of a task: ``morbench.make_vec("morbench/QM9-v0", num_envs=128)``.

    Pass ``autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED`` for synchronized batch generation.
    """
    env_spec = spec(env_id)
    return gym.make_vec(env_spec, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def spec_to_dict(env_or_spec: gym.Env | EnvSpec | Any) -> dict[str, Any]:
    """A JSON-ready record of exactly what ran: id, version, entry point and kwargs (used in result files)."""
    env_spec = env_or_spec if isinstance(env_or_spec, EnvSpec) else getattr(env_or_spec, "spec", None)
    if env_spec is None:
        raise UnknownEnvError(f"{env_or_spec!r} was not created from a registered id; it has no spec to record")
    kwargs = {k: v for k, v in env_spec.kwargs.items() if k not in ("num_envs", "autoreset_mode")}
    record = {
        "id": env_spec.id,
        "name": env_spec.name,
        "version": env_spec.version,
        "entry_point": env_spec.entry_point if isinstance(env_spec.entry_point, str) else repr(env_spec.entry_point),
        "kwargs": kwargs,
    }
    json.dumps(record)  # fail here, not in a result writer, if a kwarg cannot be serialized
    return record


def _unknown_message(env_id: str) -> str:
    known = list_envs()
    close = difflib.get_close_matches(str(env_id), known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown environment id {env_id!r}{hint} Registered ids: {', '.join(known)}"


def register_envs() -> None:
    """Register every task id with Gymnasium (``import morbench`` does it): imports only the light ``morbench.envs``
    package, whose string entry points load nothing until an env is made."""
    import morbench.envs  # noqa: F401  (importing registers every task)
