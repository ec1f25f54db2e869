"""What every baseline run shares: the env and prior, budgets, compute accounting, checkpoints, run output.

A method's ``train(run, config)`` function reads top to bottom; it keeps whatever it must survive a crash in
``run.state`` and calls ``run.checkpoint()`` at safe points. ``RunContext.resume`` restores ``run.state``, the
oracle's cache and counters, the learning curve and the compute ledger from the last checkpoint, so a resumed
run continues deterministically and ends with the same result as an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from morbench.baselines.checkpoint import load_checkpoint, save_checkpoint
from morbench.baselines.common import PPOConfig, PPOLearner
from morbench.errors import ConfigError, InvalidRunError
from morbench.evaluation import evaluate_on_env, evaluation_env_kwargs
from morbench.models import load_prior
from morbench.registry import make, spec_to_dict
from morbench.runs import CURVE_FILE, atomic_write_bytes, remove_tree, write_evaluation, write_run
from morbench.vector import TokenVectorEnv

__all__ = ["Budget", "RunContext"]

transformers.utils.logging.disable_progress_bar()  # save_pretrained's shard bars; ours are the tqdm bars below


@dataclasses.dataclass
class Budget:
    """A compute budget for a whole run (all experts of a method share it).

    A run never exceeds it: each PPO iteration is charged its worst case up front (``batch_size`` oracle calls,
    ``batch_size * max_length`` sampled tokens), and the number of iterations is fixed from that before training
    starts. Methods with N experts give each expert ``1/N`` of the iterations.
    """

    sampled_tokens: int | None = None
    oracle_calls: int | None = None

    def __post_init__(self) -> None:
        for name in ("sampled_tokens", "oracle_calls"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"budget {name}={value!r} must be a positive integer or None")

    def iterations(self, batch_size: int, max_length: int, shares: int = 1) -> int | None:
        """PPO iterations per share that fit in the budget (None: unlimited)."""
        limits = []
        if self.sampled_tokens is not None:
            limits.append(self.sampled_tokens // (shares * batch_size * max_length))
        if self.oracle_calls is not None:
            limits.append(self.oracle_calls // (shares * batch_size))
        return min(limits) if limits else None

    def to_dict(self) -> dict[str, int | None]:
        return dataclasses.asdict(self)


class RunContext:
    """One training run of one method on one env with one seed, writing to ``out``."""

    def __init__(
        self,
        method: str,
        env_id: str,
        out: str | Path,
        seed: int = 0,
        budget: Budget | None = None,
        env_kwargs: dict[str, Any] | None = None,
        eval_samples: int | None = None,
        progress: bool = True,
    ) -> None:
        self.method = method
        self.env_id = env_id
        self.out = Path(out)
        self.seed = int(seed)
        self.budget = budget or Budget()
        self.env_kwargs = dict(env_kwargs or {})
        self.eval_samples = eval_samples
        self.progress = progress
        self.task = make(env_id, **self.env_kwargs).unwrapped
        self.prior = load_prior(self.task, seed=self.seed).eval()
        for parameter in self.prior.parameters():
            parameter.requires_grad_(False)
        self._venvs: dict[int, Any] = {}
        self.state: dict[str, Any] = {}
        self.curve: list[dict[str, Any]] = []
        self.ledger = {"sampled_tokens": 0, "gradient_steps": 0, "ppo_iterations": 0, "wall_seconds": 0.0}
        self._started = time.perf_counter()
        self._bar: tqdm | None = None
        torch.manual_seed(self.seed)

    # -- environment and learners -------------------------------------------------------------------------
    def vector_env(self, batch_size: int) -> TokenVectorEnv:
        """A training vector env (DISABLED autoreset) over the run's task: every learner and every scoring call
        of the run shares the task's oracle, so its cache and call count cover the whole run."""
        if batch_size not in self._venvs:
            self._venvs[batch_size] = TokenVectorEnv(self.task, batch_size, AutoresetMode.DISABLED)
        return self._venvs[batch_size]

    @property
    def oracle(self):
        return self.task.oracle

    def learner(self, config: PPOConfig, seed: int, policy: torch.nn.Module | None = None) -> PPOLearner:
        """A PPO learner starting from ``policy`` (default: the prior), with KL to the original prior."""
        return PPOLearner(
            policy if policy is not None else self.prior, self.prior, self.vector_env(config.batch_size), config, seed
        )

    def policy_from_state(self, lm_state: dict[str, torch.Tensor]) -> torch.nn.Module:
        """A copy of the prior's architecture holding ``lm_state`` (strict: every key must match)."""
        lm = copy.deepcopy(self.prior)
        lm.load_state_dict(lm_state, strict=True)
        return lm.eval()

    def iterations(self, requested: int, config: PPOConfig, shares: int = 1) -> int:
        """``requested`` PPO iterations per share, capped by the budget (shared by ``shares`` learners)."""
        cap = self.budget.iterations(config.batch_size, self.task.max_length, shares)
        iterations = requested if cap is None else min(requested, cap)
        if iterations < 1:
            raise ConfigError(
                f"the budget {self.budget.to_dict()} does not cover one PPO iteration per share "
                f"({shares} shares of batch {config.batch_size} x max_length {self.task.max_length}); raise it"
            )
        return iterations

    # -- progress, logging, checkpoints ---------------------------------------------------------------------
    def start_progress(self, total: int, desc: str) -> None:
        done = int(self.ledger["ppo_iterations"])
        self._bar = tqdm(total=total, initial=done, desc=f"{self.method} {desc}", unit="it", disable=not self.progress)

    def log(self, stats: dict[str, Any], **tags: Any) -> None:
        """Record one training iteration; ``stats["tokens"]`` and ``stats["gradient_steps"]`` are charged."""
        self.ledger["ppo_iterations"] += 1
        self.ledger["sampled_tokens"] += int(stats.get("tokens", 0))
        self.ledger["gradient_steps"] += int(stats.get("gradient_steps", 0))
        entry = {
            "iteration": self.ledger["ppo_iterations"],
            **tags,
            **stats,
            "oracle_calls": self.oracle.calls,
            "sampled_tokens": self.ledger["sampled_tokens"],
        }
        self.curve.append(entry)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(score=f"{stats.get('score_mean', float('nan')):.3f}", calls=self.oracle.calls)

    def checkpoint(self) -> None:
        self._sync_wall()
        save_checkpoint(
            self.out / "checkpoint",
            {
                "state": self.state,
                "oracle": json.dumps(self.oracle.state_dict()),
                "curve": json.dumps(self.curve),
                "ledger": dict(self.ledger),
                "identity": self._identity(),
            },
        )
        self._write_curve()

    def resume(self) -> bool:
        """Restore the last checkpoint (if any); returns whether one was found."""
        saved = load_checkpoint(self.out / "checkpoint")
        if saved is None:
            return False
        if saved["identity"] != self._identity():
            raise InvalidRunError(
                f"the checkpoint in {self.out} belongs to {saved['identity']}, not {self._identity()}; "
                "use another --out or delete the checkpoint"
            )
        self.state = saved["state"]
        self.oracle.load_state_dict(json.loads(saved["oracle"]))
        self.curve = json.loads(saved["curve"])
        self.ledger = dict(saved["ledger"])
        return True

    def _identity(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "env_id": self.env_id,
            "seed": self.seed,
            "env_kwargs": self.env_kwargs,
            "budget": self.budget.to_dict(),
        }

    def _sync_wall(self) -> None:
        now = time.perf_counter()
        self.ledger["wall_seconds"] = float(self.ledger["wall_seconds"]) + (now - self._started)
        self._started = now

    def _write_curve(self) -> None:
        lines = "".join(json.dumps(entry) + "\n" for entry in self.curve)
        atomic_write_bytes(self.out / CURVE_FILE, lines.encode())

    # -- the end of a run ---------------------------------------------------------------------------------
    def finish(
        self, policy: Any, config: Any, outputs: dict[str, Any] | None = None, preferences: np.ndarray | None = None
    ) -> Path:
        """Evaluate ``policy`` with the task's protocol on a fresh env, then write the run directory."""
        if self._bar is not None:
            self._bar.close()
        self._sync_wall()
        self._write_curve()
        # a fresh env: its own oracle (evaluation is not training) and the protocol's evaluation contexts
        eval_task = make(self.env_id, **evaluation_env_kwargs(self.task, self.env_kwargs)).unwrapped
        record = evaluate_on_env(
            policy,
            eval_task,
            self.seed,
            preferences=preferences,
            samples_per_preference=self.eval_samples,
            prior=self.prior,
            progress=self.progress,
        )
        record["method"] = self.method
        compute = {
            **self.ledger,
            "oracle_calls": self.oracle.calls,
            "budget": self.budget.to_dict(),
            "evaluation_seconds": time.perf_counter() - self._started,
        }  # best-of-N selects while evaluating
        write_evaluation(self.out, record)
        path = write_run(
            self.out,
            {
                "status": "complete",
                "method": self.method,
                "env": spec_to_dict(self.task),
                "seed": self.seed,
                "config": _config_dict(config),
                "compute": compute,
                "outputs": outputs or {},
            },
        )
        remove_tree(self.out / "checkpoint")  # the run is complete; its evaluation and outputs are written
        return path


def _config_dict(config: Any) -> Any:
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return copy.deepcopy(config)
