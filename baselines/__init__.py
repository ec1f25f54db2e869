"""Reference agents: MORLHF, Rewarded Soups, IterativeRS, Rewards-in-Context, and the prior / best-of-N rows.

Each method is a (config dataclass, ``train(run, config)``) pair in its own module; :data:`METHODS` names them.
``run_method`` is what ``morbench train`` calls.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from morbench.errors import ConfigError, InvalidRunError

if TYPE_CHECKING:
    from morbench.baselines.training import Budget

__all__ = ["METHODS", "Method", "build_config", "check_env_kwargs", "check_value", "get_method", "run_method"]

INT_LIMIT = 2**63  # integers are stored in int64 tensors and JSON consumers read 64-bit integers


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: its name, config dataclass, ``train(run, config)`` function and one-line description."""

    name: str
    config: type
    train: Callable[..., Any]
    description: str


from morbench.baselines import iterative_rs, morlhf, reference, rewarded_soups, rewards_in_context  # noqa: E402

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "iterative_rs",
            iterative_rs.IterativeRSConfig,
            iterative_rs.train,
            "IterativeRS: experts merged every m PPO iterations",
        ),
        Method(
            "rewarded_soups",
            rewarded_soups.RewardedSoupsConfig,
            rewarded_soups.train,
            "Rewarded Soups: one PPO expert per objective, weight interpolation",
        ),
        Method("morlhf", morlhf.MORLHFConfig, morlhf.train, "MORLHF: PPO on w . r, budget split over K+1 preferences"),
        Method(
            "morlhf_uniform",
            morlhf.MORLHFUniformConfig,
            morlhf.train,
            "MORLHF reference: one policy at the uniform w serves every preference",
        ),
        Method(
            "rewards_in_context",
            rewards_in_context.RewardsInContextConfig,
            rewards_in_context.train,
            "Rewards-in-Context: reward-conditioned SFT with online augmentation",
        ),
        Method("prior", reference.PriorConfig, reference.train_prior, "the untuned prior"),
        Method("best_of_n", reference.BestOfNConfig, reference.train_best_of_n, "best of n prior samples by w . r"),
    )
}


def get_method(name: str) -> Method:
    """The method registered as ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def check_value(name: str, annotation: Any, value: Any) -> Any:
    """``value`` checked against the type ``annotation`` of field ``name``, and returned.

    An int is accepted for a float (and converted); dataclass fields take a dict of their own fields
    (``{"batch_size": 32}``) and are built recursively. Raises :class:`ConfigError` naming the field, the value and
    the expected type.
    """

    def fail(expected: str, fix: str | None = None) -> ConfigError:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."
        return ConfigError(
            f"{name}={shown} ({type(value).__name__}) is not {expected}; {fix or 'set it to ' + expected}"
        )

    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return check_value(name, option, value)
            except ConfigError as exc:
                errors.append(exc)
        raise fail(" or ".join(_type_name(o) for o in options).replace("NoneType", "null")) from None
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if annotation is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail("an integer")
        if not -INT_LIMIT < value < INT_LIMIT:
            raise fail("an integer of magnitude below 2**63")
        return value
    if annotation is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise fail("a number")
        if not math.isfinite(float(value)):
            raise fail("a finite number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list ({_type_name(annotation)})")
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        checked = [check_value(f"{name}[{i}]", item, v) for i, v in enumerate(value)]
        return checked if (origin or annotation) is list else tuple(checked)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise fail(f"a {annotation.__name__}", f"set its fields one by one, e.g. --set {name}.<field>=<value>")
        return _build_dataclass(annotation, value, prefix=f"{name}.")
    return value  # an annotation this checker does not know: the dataclass's own __post_init__ checks it


def _build_dataclass(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no field(s) {[prefix + u for u in unknown]}; fields: {sorted(prefix + f for f in fields)}"
        )
    checked = {key: check_value(prefix + key, hints.get(key, Any), value) for key, value in values.items()}
    try:
        return cls(**checked)
    except TypeError as exc:
        raise ConfigError(f"invalid {cls.__name__}: {exc}") from None


def build_config(method: str, overrides: dict[str, Any] | None = None) -> Any:
    """The method's config with ``overrides`` (``{"iterations": 8, "ppo.batch_size": 32}``) applied.

    Every value is checked against the type annotation of its dataclass field (nested configs included)
    before the config is built, so a wrong type fails here, before any work starts.
    """
    spec = get_method(method)
    nested: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"config key {key!r} must be a field name, e.g. iterations or ppo.batch_size")
        head, _, tail = key.partition(".")
        if tail:
            if head in nested and not isinstance(nested[head], dict):
                raise ConfigError(f"{head} is set both as a whole ({nested[head]!r}) and field by field ({key})")
            nested.setdefault(head, {})[tail] = value
        else:
            if isinstance(nested.get(head), dict):
                raise ConfigError(f"{head} is set both as a whole ({value!r}) and field by field")
            nested[head] = value
    return _build_dataclass(spec.config, nested)


def check_env_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Each kwarg is a parameter of the env's constructor, of the annotated type (before any asset loads)."""
    import importlib

    from morbench.registry import spec as env_spec

    if not env_kwargs:
        return
    entry_point = env_spec(env_id).entry_point
    if not isinstance(entry_point, str) or ":" not in entry_point:
        return
    module_name, _, attr = entry_point.partition(":")
    constructor = getattr(importlib.import_module(module_name), attr)
    signature = inspect.signature(constructor)
    parameters = {name: p for name, p in signature.parameters.items() if name != "self"}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = sorted(n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)
    unknown = sorted(set(env_kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"{env_id} has no constructor argument(s) {unknown}; valid --env-kwarg names: {accepted}")
    try:
        hints = typing.get_type_hints(constructor.__init__ if inspect.isclass(constructor) else constructor)
    except Exception:  # unresolvable annotations: the constructor checks its own arguments
        hints = {}
    for key, value in env_kwargs.items():
        check_value(f"{env_id} {key}", hints.get(key, Any), value)


def run_method(
    method: str,
    env_id: str,
    out: str | Path,
    seed: int = 0,
    config: Any = None,
    budget: Budget | None = None,
    resume: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    eval_samples: int | None = None,
    progress: bool = True,
    checkpoint_seconds: float | None = None,
    device: Any = "cpu",
) -> Path:
    """Train ``method`` on ``env_id`` and write the run directory ``out`` (see ``morbench/runs.py``).

    ``checkpoint_seconds``: at most one periodic checkpoint per this many seconds inside a training schedule
    (default ``training.CHECKPOINT_SECONDS``; 0 checkpoints every ``checkpoint_every`` iterations). It changes what
    a crash can lose, never the result. ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``) holds the policies,
    value heads and prior; it is part of the run identity (a checkpoint of another device type is not resumed).
    """
    from morbench.runs import RunLock

    spec = get_method(method)
    config = config if config is not None else spec.config()
    if not isinstance(config, spec.config):
        raise ConfigError(f"config must be a {spec.config.__name__}, got {type(config).__name__}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed {seed!r} must be an integer in [0, 2**32)")
    if eval_samples is not None and (
        not isinstance(eval_samples, int) or isinstance(eval_samples, bool) or eval_samples < 1
    ):
        raise ConfigError(f"eval_samples {eval_samples!r} must be a positive integer (or None: the task's protocol)")
    from morbench.registry import spec as env_spec
    from morbench.runs import resolve_device

    resolve_device(device)  # a bad device, or CUDA where there is none, fails before the run directory is created
    env_spec(env_id)  # an unknown id fails here (with suggestions), before the run directory is created
    check_env_kwargs(env_id, dict(env_kwargs or {}))
    if str(out).strip() == "":
        raise ConfigError("--out is empty; name the run directory to write, e.g. --out runs/my-run")
    out = Path(out)
    with RunLock(out):
        return _run_locked(
            spec,
            env_id,
            out,
            seed,
            config,
            budget,
            resume,
            env_kwargs,
            eval_samples,
            progress,
            checkpoint_seconds,
            device,
        )


def _run_locked(
    spec: Method,
    env_id: str,
    out: Path,
    seed: int,
    config: Any,
    budget: Budget | None,
    resume: bool,
    env_kwargs: dict[str, Any] | None,
    eval_samples: int | None,
    progress: bool,
    checkpoint_seconds: float | None,
    device: Any = "cpu",
) -> Path:
    from morbench.baselines.training import RunContext
    from morbench.runs import RUN_FILE, identity_difference

    checkpoint = out / "checkpoint"
    if (checkpoint.exists() or checkpoint.is_symlink()) and not resume:
        raise ConfigError(f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out")
    if (out / RUN_FILE).exists() and not resume:
        raise ConfigError(f"{out} already holds a finished run; choose another --out")
    run = RunContext(
        spec.name,
        env_id,
        out,
        seed=seed,
        budget=budget,
        env_kwargs=env_kwargs,
        eval_samples=eval_samples,
        progress=progress,
        config=config,
        checkpoint_seconds=checkpoint_seconds,
        device=device,
    )
    if (out / RUN_FILE).exists():  # resume of a finished run: nothing left to do if it is this run
        from morbench.runs import read_run

        try:
            recorded = read_run(out).get("identity")
        except InvalidRunError as exc:
            raise InvalidRunError(f"{exc}; delete {out} to run again") from None
        if recorded != run._identity():
            raise InvalidRunError(
                f"{out} holds a finished run with other settings ({identity_difference(recorded, run._identity())}); "
                "use another --out, or delete it to run again"
            )
        return out / RUN_FILE
    if resume:
        run.resume()
    policy, outputs = spec.train(run, config)
    return run.finish(policy, config, outputs)
