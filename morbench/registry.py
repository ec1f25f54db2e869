"""Versioned environment ids (``morbench/<Task>-v<N>``) on top of Gymnasium's registry."""

from __future__ import annotations

import difflib
import json
import sys
from types import FrameType
from typing import Any

import gymnasium as gym
from gymnasium import error as gym_error
from gymnasium.envs.registration import EnvSpec

from morbench.errors import ConfigError, UnknownEnvError

NAMESPACE = "morbench"

__all__ = [
    "NAMESPACE",
    "check_vectorizer",
    "list_envs",
    "make",
    "make_vec",
    "register_envs",
    "register_task",
    "spec",
    "spec_to_dict",
]


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


def make_vec(env_id: str, num_envs: int = 1, **kwargs: Any) -> gym.vector.VectorEnv:
    """Create the native vector env of a task: ``morbench.make_vec("morbench/QM9-v0", num_envs=128)``.

    Pass ``autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED`` for synchronized batch generation.
    """
    env_spec = spec(env_id)
    return gym.make_vec(env_spec, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def check_vectorizer() -> None:
    """Refuse to be built by Gymnasium's ``"sync"``/``"async"`` vectorizers without a wrapper (called by every env).

    Those vectorizers keep one float reward per sub-environment, so a reward vector fails deep inside their
    ``step`` ("setting an array element with a sequence"). ``gymnasium.make_vec`` builds each sub-environment in
    its nested ``create_single_env``; found on the call stack with no ``wrappers`` given, this raises an error
    naming the routes that work. With wrappers (e.g. a scalarizing ``LinearReward``) nothing is checked.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "create_single_env" and frame.f_globals.get("__name__") == "gymnasium.envs.registration":
            if frame.f_locals.get("wrappers"):
                return
            name = getattr(frame.f_locals.get("env_spec"), "id", "morbench/<Task>-v<N>")
            raise ConfigError(
                f"gymnasium.make_vec({name!r}, vectorization_mode='sync' or 'async') cannot hold morbench's reward "
                "vectors: Gymnasium's sync/async vectorizers store one float reward per env. Use the native vector "
                f"env, morbench.make_vec({name!r}, num_envs=N) (also gymnasium.make_vec's default mode), or "
                "mo_gymnasium.wrappers.vector.MOSyncVectorEnv, or scalarize each env: gymnasium.make_vec(..., "
                "wrappers=[functools.partial(mo_gymnasium.wrappers.LinearReward, weight=w)]); for stable-baselines3 "
                "use morbench.sb3.SB3VecEnv(morbench.make_vec(...), weights=w)"
            )
        frame = frame.f_back


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
    """Register every task id with Gymnasium (``import morbench`` does it).

    Imports only the light ``morbench.envs`` package, whose string entry points load nothing until an env is made.
    """
    import morbench.envs  # noqa: F401  (importing registers every task)
