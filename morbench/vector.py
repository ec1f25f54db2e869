"""Native batched (vector) mode of every :class:`~morbench.core.TokenEnv`: B sequences stepped with array operations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from morbench.core import Context, ScoreResult, TokenEnv
from morbench.errors import ConfigError, InvalidActionError, StepAfterDoneError

__all__ = ["TokenVectorEnv", "vector_entry_point"]

# the batched observation: token ids, plus the prompt ids for conditional tasks
VectorObservation: TypeAlias = "np.ndarray | dict[str, np.ndarray]"


class TokenVectorEnv(VectorEnv):
    """``num_envs`` copies of a :class:`TokenEnv` stepped together without a Python loop over sub-environments.

    All sub-environments share the template env's tokenizer and oracle (one cache, one call counter). Each
    step appends one token per sub-environment, and the oracle is called once for all sequences that finished
    in that step. Rewards have shape ``(num_envs, reward_dim)``.

    Autoreset modes (``metadata["autoreset_mode"]``):

    * ``NEXT_STEP`` (default, as Gymnasium): a sub-environment that finished is reset by the next ``step``,
      whose action for it is ignored; that step returns its first observation and a zero reward.
    * ``DISABLED``: finished sub-environments stay finished until ``reset()`` (optionally with
      ``options={"reset_mask": mask}``); their actions are ignored and they return zero rewards with
      ``terminated = truncated = False``. This is the mode LM trainers use to generate a synchronized batch.

    ``defer_scoring=True`` (DISABLED mode only) batches the scoring of a whole synchronized batch: ``step`` marks
    finished rows terminated/truncated as usual but returns zero rewards and no terminal ``info`` for them, and
    :meth:`score_finished` scores every finished, not yet scored row in one oracle call, returning their rewards and
    terminal ``info``. Samplers stop calling the oracle on each step where a few rows end (QM9's prior ends rows on
    about half of its steps), at the price of the per-step reward; ``reset`` refuses to discard unscored rows.
    Where the oracle :attr:`~morbench.core.Oracle.prefetches` (CNS's process pool), each step hands it the strings
    that finished, so their parsing overlaps the next steps' sampling; the rewards are the same.

    Terminal ``info`` follows Gymnasium's vector convention: ``info["sequence"]``, ``info["valid"]``,
    ``info["reason"]``, ``info["length"]``, ``info["objectives"][name]`` and ``info["properties"][name]`` are
    arrays of length ``num_envs`` with boolean masks under the same key prefixed by ``_``.
    """

    def __init__(
        self,
        env: TokenEnv,
        num_envs: int,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        defer_scoring: bool = False,
    ) -> None:
        if not isinstance(env, TokenEnv):
            raise ConfigError(f"TokenVectorEnv needs a morbench TokenEnv, got {type(env).__name__}")
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        mode = AutoresetMode(autoreset_mode)
        if mode == AutoresetMode.SAME_STEP:
            raise ConfigError("TokenVectorEnv supports autoreset_mode NEXT_STEP or DISABLED, not SAME_STEP")
        if defer_scoring and mode != AutoresetMode.DISABLED:
            raise ConfigError(
                f"defer_scoring=True needs autoreset_mode=DISABLED (got {mode.name}): with autoreset, a finished row "
                "would be reset before it is scored"
            )
        self.defer_scoring = bool(defer_scoring)
        self.env = env
        self.num_envs = int(num_envs)
        self.autoreset_mode = mode
        self.metadata = {**env.metadata, "autoreset_mode": mode}
        self.render_mode = None
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.observation_space = batch_space(env.observation_space, self.num_envs)
        self.action_space = batch_space(env.action_space, self.num_envs)
        self.spec = env.spec

        self._tokens = np.full((self.num_envs, env.max_length), env.pad_token_id, dtype=np.int64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._finished = np.ones(self.num_envs, dtype=bool)  # needs a reset before it can be stepped
        self._unscored = np.zeros(self.num_envs, dtype=bool)  # finished rows awaiting score_finished()
        self._contexts: list[Context | None] = [None] * self.num_envs
        self._prompts = env.prompt_array(self._contexts) if env.contexts is not None else None
        self._rows = np.arange(self.num_envs)
        self._started = False

    # -- task attributes (also reachable via .env) ---------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name in {
            "reward_space",
            "reward_dim",
            "objective_names",
            "tokenizer",
            "oracle",
            "judge",
            "preference_grid",
            "reference_point",
            "prior_path",
            "protocol",
            "max_length",
            "eos_token_id",
            "bos_token_id",
            "pad_token_id",
            "vocab_size",
            "score",
            "judge_score",
            "score_token_ids",
            "decode_token_ids",
            "contexts",
            "max_prompt_length",
        }:
            return getattr(self.env, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def unwrapped(self) -> TokenVectorEnv:
        """This env (the task itself is ``self.env``)."""
        return self

    @property
    def finished(self) -> np.ndarray:
        """Which sub-environments have finished their episode (a copy)."""
        return self._finished.copy()

    @property
    def current_contexts(self) -> list[Context | None]:
        """The context of each sub-environment's current episode (None for unconditional tasks)."""
        return list(self._contexts)

    # -- API ----------------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[VectorObservation, dict[str, Any]]:
        """Start every sub-environment's episode (``options["reset_mask"]`` picks rows); observations and info."""
        if seed is not None:
            self._np_random, self._np_random_seed = _seeded(seed)
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ConfigError(f"reset_mask must have shape ({self.num_envs},), got {mask.shape}")
            options = {k: v for k, v in options.items() if k != "reset_mask"}
        self._reset_rows(np.flatnonzero(mask), options)
        self._started = True
        info: dict[str, Any] = {}
        if self.env.contexts is not None:
            info["context"] = np.array([c.key if c else "" for c in self._contexts], dtype=object)
        return self._observation(), info

    def step(self, actions: Any) -> tuple[VectorObservation, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Append one token per sub-environment and score those that finished (one oracle call)."""
        if not self._started:
            raise StepAfterDoneError("step() called before reset(); call reset() first")
        actions = self._check_actions(actions)
        rewards = np.zeros((self.num_envs, self.env.reward_dim), dtype=np.float32)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            resetting = self._finished.copy()
            active = ~resetting
        else:
            resetting = np.zeros(self.num_envs, dtype=bool)
            active = ~self._finished
        lengths = self._lengths + active
        terminated = active & (actions == self.env.eos_token_id)
        truncated = active & ~terminated & (lengths >= self.env.max_length)
        done = terminated | truncated
        info: dict[str, Any] = {}
        if done.any() and self.defer_scoring:
            self._unscored |= done
        elif done.any():
            # score before changing any state: if scoring raises (e.g. OracleBudgetExhausted), every
            # sub-environment is exactly as it was and the same step can be retried
            done_rows = np.flatnonzero(done)
            sequences: list[Any] = [np.append(self._tokens[i, : self._lengths[i]], actions[i]) for i in done_rows]
            result = self.env.score_token_ids(sequences, [self._contexts[i] for i in done_rows])
            rewards[done_rows] = result.rewards
            info = self._terminal_info(done, done_rows, lengths[done_rows], result)
        if resetting.any():
            self._reset_rows(np.flatnonzero(resetting), None)
        rows = self._rows[active]
        self._tokens[rows, self._lengths[rows]] = actions[rows]
        self._lengths[rows] += 1
        self._finished |= done
        if self.defer_scoring and done.any() and self.env.oracle.prefetches:
            # the oracle starts on these rows' per-string work (e.g. RDKit in its worker processes) while the
            # sampler goes on; score_finished collects it. The rewards are the same as without it
            sequences, reasons = self.env.decode_token_ids(
                [self._tokens[i, : self._lengths[i]] for i in np.flatnonzero(done)]
            )
            self.env.oracle.prefetch([s for s, reason in zip(sequences, reasons, strict=True) if reason is None])
        return self._observation(), rewards, terminated, truncated, info

    def score_finished(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Score every finished row not scored yet (``defer_scoring=True``) in one oracle call.

        Returns ``(rewards, info)`` shaped like a step's: ``(num_envs, reward_dim)`` rewards, zero for the other
        rows, and the terminal ``info`` of the scored rows (masks ``_<key>``). If scoring raises (e.g.
        OracleBudgetExhausted) the rows stay unscored and the call can be retried.
        """
        rows = np.flatnonzero(self._unscored)
        rewards = np.zeros((self.num_envs, self.env.reward_dim), dtype=np.float32)
        if rows.size == 0:
            return rewards, {}
        lengths = self._lengths[rows]
        sequences: list[Any] = [self._tokens[i, : self._lengths[i]] for i in rows]
        result = self.env.score_token_ids(sequences, [self._contexts[i] for i in rows])
        rewards[rows] = result.rewards
        info = self._terminal_info(self._unscored.copy(), rows, lengths, result)
        self._unscored[rows] = False
        return rewards, info

    def close_extras(self, **kwargs: Any) -> None:
        """Close the template env (its oracle)."""
        self.env.close()

    # -- internals ----------------------------------------------------------------------------------------
    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any] | None) -> None:
        unscored = rows[self._unscored[rows]]
        if unscored.size:
            raise ConfigError(
                f"sub-environments {unscored.tolist()} finished but were never scored (defer_scoring=True); call "
                "score_finished() before reset() so their rewards are not lost"
            )
        self._tokens[rows] = self.env.pad_token_id
        self._lengths[rows] = 0
        self._finished[rows] = False
        if self.env.contexts is not None and rows.size:
            drawn = self.env.draw_contexts(self.np_random, rows.size, options)
            for i, context in zip(rows, drawn, strict=True):
                self._contexts[i] = context
            assert self._prompts is not None  # set in __init__ for every task with contexts
            self._prompts[rows] = self.env.prompt_array(drawn)

    def _check_actions(self, actions: Any) -> np.ndarray:
        try:
            array = np.asarray(actions)
        except (TypeError, ValueError):  # e.g. a ragged batch: [0, 0, [1]]
            raise InvalidActionError(
                f"actions must be an integer array of shape ({self.num_envs},), got {actions!r:.80}"
            ) from None
        if array.shape != (self.num_envs,) or array.dtype.kind not in "iu":
            raise InvalidActionError(
                f"actions must be an integer array of shape ({self.num_envs},), got {array.dtype} {array.shape}"
            )
        bad = np.flatnonzero((array < 0) | (array >= self.env.vocab_size))
        if bad.size:
            raise InvalidActionError(
                f"actions {array[bad].tolist()} at sub-environments {bad.tolist()} are outside the vocabulary; "
                f"valid token ids are 0..{self.env.vocab_size - 1}"
            )
        return array.astype(np.int64, copy=False)

    def _observation(self) -> VectorObservation:
        tokens = self._tokens.copy()
        if self._prompts is None:
            return tokens
        return {"prompt": self._prompts.copy(), "tokens": tokens}

    def _terminal_info(
        self, done: np.ndarray, rows: np.ndarray, lengths: np.ndarray, result: ScoreResult
    ) -> dict[str, Any]:
        def column(values: Any, dtype: Any, fill: Any) -> np.ndarray:
            out = np.full(self.num_envs, fill, dtype=dtype)
            out[rows] = values
            return out

        info: dict[str, Any] = {
            "sequence": column(np.array(result.sequences, dtype=object), object, None),
            "valid": column(result.valid, bool, False),
            "reason": column(np.array(result.reasons, dtype=object), object, None),
            "length": column(lengths, np.int64, 0),
            "objectives": {
                name: column(result.rewards[:, k], np.float32, 0.0) for k, name in enumerate(result.objective_names)
            },
            "properties": {name: column(values, np.float64, np.nan) for name, values in result.properties.items()},
        }
        if self.env.contexts is not None:
            info["context"] = column(np.array([self._contexts[i].key for i in rows], dtype=object), object, None)
        for key in list(info):
            info[f"_{key}"] = done.copy()
        for group in ("objectives", "properties"):
            for name in list(info[group]):
                info[group][f"_{name}"] = done.copy()
        return info


def _seeded(seed: int) -> tuple[np.random.Generator, int]:
    from gymnasium.utils import seeding

    return seeding.np_random(seed)


def vector_entry_point(env_class: type[TokenEnv]) -> Callable[..., TokenVectorEnv]:
    """Build the native vector constructor of a task.

    A task module declares ``make_vec = vector_entry_point(QM9Env)`` and registers it as its vector entry point.
    """

    def make_vec(
        num_envs: int = 1,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        defer_scoring: bool = False,
        **kwargs: Any,
    ) -> TokenVectorEnv:
        return TokenVectorEnv(env_class(**kwargs), num_envs, autoreset_mode, defer_scoring)

    make_vec.__name__ = make_vec.__qualname__ = f"make_vec_{env_class.__name__}"
    make_vec.__doc__ = f"Native vector version of :class:`{env_class.__name__}`."
    return make_vec
