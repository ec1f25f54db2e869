"""What every baseline run shares: the env and prior, budgets, compute accounting, the training schedule's loop,
checkpoints, resume and run output.

Methods declare, the run executes. A method's ``train(run, config)`` says *what* to train with a small vocabulary:

* :class:`Learner`: a policy to train (name, seed, :mod:`~morbench.scalarization` it is trained on, log tags);
* :meth:`RunContext.train_each`: one block of PPO iterations per learner, one after the other, each from the
  prior with an equal share of what is left of the budget (Rewarded Soups: one learner per objective; MORLHF:
  one per trained preference);
* :meth:`RunContext.train_rounds` with :class:`Rounds`: rounds of ``block`` iterations per learner, every block
  starting from the last merge, and a hook at the end of each round that makes the next merge (IterativeRS);
* :meth:`RunContext.stage`: a named stage that runs once (a resumed run gets its recorded result back): RiC's
  data, SFT and online rounds, IterativeRS's per-preference trajectories.

The loop (:meth:`RunContext._iterate`) owns iteration counting, budget checks, logging, progress and checkpoints;
the position of a schedule lives in ``run.state`` under the schedule's name, so no method tracks resume cursors.
``RunContext.resume`` restores ``run.state``, the oracle's cache and counters, the learning curve and the compute
ledger from the last checkpoint, so a resumed run continues deterministically and ends with the same result as
an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
import transformers
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from morbench.baselines import lora
from morbench.baselines.checkpoint import AppendLog, checkpoint_source, load_checkpoint, save_checkpoint
from morbench.baselines.common import PPOConfig, PPOLearner, identity_config, merge_state_dicts
from morbench.core import Oracle, TokenEnv
from morbench.errors import CheckpointError, ConfigError, InvalidRunError
from morbench.evaluation import Policy, evaluate_on_env, make_evaluation_task
from morbench.models import load_prior
from morbench.registry import make, spec_to_dict
from morbench.runs import (
    CURVE_FILE,
    atomic_write_bytes,
    cpu_kernels,
    cpu_name,
    git_commit,
    identity_difference,
    remove_tree,
    resolve_device,
    run_identity,
    write_evaluation,
    write_run,
)
from morbench.scalarization import ObjectiveColumn, Scalarization
from morbench.seeding import expert_seed
from morbench.vector import TokenVectorEnv

__all__ = ["Budget", "Learner", "Rounds", "RunContext", "Trained", "objective_experts"]

transformers.utils.logging.disable_progress_bar()  # save_pretrained's shard bars; ours are the tqdm bars below


RESOURCES = ("sampled_tokens", "oracle_calls")
CONVENTIONS = ("total", "per_expert")
SCHEDULE_FORMAT = 2  # the layout of a schedule's position in ``run.state`` (checkpoints of another are refused)
ORACLE_CACHE_FILE = "oracle-cache.jsonl"  # the oracle cache, appended at each checkpoint (checkpoint.AppendLog)
CHECKPOINT_SECONDS = 60.0  # periodic checkpoints inside a schedule: at most one per this many seconds
T = TypeVar("T")
StateDict = dict[str, torch.Tensor]
Trained = tuple[Policy, dict[str, Any]]  # what a method's train(run, config) returns: the policy to evaluate, outputs


@dataclasses.dataclass
class Budget:
    """A compute budget for a whole run, in sampled policy tokens and/or oracle calls.

    A run is charged what it actually spends (the tokens it samples, the oracle calls its samples cost) and keeps
    going while the worst case of its next step (a PPO iteration: ``batch_size * max_length`` tokens and
    ``batch_size`` calls) still fits: it never exceeds the budget and ends within one worst-case step of it.
    ``convention`` says how methods that train several policies (experts) share it: ``"total"`` (every method
    spends the same total), or ``"per_expert"`` (every trained policy gets the whole budget: the paper's
    equal-iterations-per-expert convention, under which a method with K experts spends K times the budget).
    """

    sampled_tokens: int | None = None
    oracle_calls: int | None = None
    convention: str = "total"

    def __post_init__(self) -> None:
        for name in RESOURCES:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"budget {name}={value!r} must be a positive integer or None")
        if self.convention not in CONVENTIONS:
            raise ConfigError(f"budget convention {self.convention!r} must be one of {list(CONVENTIONS)}")

    @property
    def limited(self) -> bool:
        return self.sampled_tokens is not None or self.oracle_calls is not None

    def to_dict(self) -> dict[str, int | str | None]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Learner:
    """A policy a schedule trains: ``name`` keys its weights and log entries, ``seed`` its sampling and minibatch
    order, ``scalarization`` the scalar reward PPO maximises, ``tags`` what its learning-curve entries carry."""

    name: str
    seed: int
    scalarization: Scalarization
    tags: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Rounds:
    """Rounds of ``block`` PPO iterations per learner, each block restarting from the last merge.

    ``members(r)`` says which learners (indices) train in round ``r`` (default: all); ``merge_weights(members)``
    is the hook at a round's end: the coefficients (summing to 1) of the merge of that round's learners, which
    every block of the next round starts from (:meth:`RunContext.merge_policies`: the weighted sum of their
    weights, or of their LoRA updates on the round's base). Every learner keeps its value head across rounds; its
    optimizer is reset at the start of each block (the moments describe a trajectory the merge has left).
    Training stops after ``iterations`` per learner, or when not even one iteration per member fits in the
    budget; a round's block is shortened to what fits, so the members of a round always get equal iterations.
    """

    learners: Sequence[Learner]
    block: int
    iterations: int
    merge_weights: Callable[[list[int]], Any]
    members: Callable[[int], list[int]] | None = None


def objective_experts(run: RunContext) -> list[Learner]:
    """One expert per objective, trained on that objective alone (Rewarded Soups, IterativeRS)."""
    return [
        Learner(name, expert_seed(run.seed, k), ObjectiveColumn(k), {"expert": name})
        for k, name in enumerate(run.task.objective_names)
    ]


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
        config: Any = None,
        checkpoint_seconds: float | None = None,
        device: Any = "cpu",
    ) -> None:
        self.method = method
        self.device = resolve_device(device)  # a bad device string fails before anything loads
        self.config = config
        self.env_id = env_id
        self.out = Path(out)
        self.seed = int(seed)
        self.budget = budget or Budget()
        self.env_kwargs = dict(env_kwargs or {})
        self.eval_samples = eval_samples
        self.progress = progress
        self.task = cast(TokenEnv, make(env_id, **self.env_kwargs).unwrapped)
        # the prior (the KL reference and every policy's starting point) lives on the run's device; env arrays,
        # the oracle and scoring stay on the CPU
        self.prior = load_prior(self.task, seed=self.seed).eval().to(self.device)
        for parameter in self.prior.parameters():
            parameter.requires_grad_(False)
        self._venvs: dict[int, Any] = {}
        self.state: dict[str, Any] = {"schedule_format": SCHEDULE_FORMAT}
        self.curve: list[dict[str, Any]] = []
        self.ledger = {"sampled_tokens": 0, "gradient_steps": 0, "ppo_iterations": 0, "wall_seconds": 0.0}
        self.trained_on = [cpu_kernels()]  # the CPUs the run trained on, in order (several: resumed on another)
        self._started = time.perf_counter()
        git_commit()  # read the checkout's commit now: run.json records the code this run started with
        self._bar: tqdm | None = None
        self.checkpoint_seconds = CHECKPOINT_SECONDS if checkpoint_seconds is None else float(checkpoint_seconds)
        self._last_checkpoint = self._started
        self._cache_log = AppendLog(self.out / ORACLE_CACHE_FILE)
        torch.manual_seed(self.seed)

    # -- environment and learners -------------------------------------------------------------------------
    def vector_env(self, batch_size: int) -> TokenVectorEnv:
        """A training vector env (DISABLED autoreset, each rollout scored in one oracle call) over the run's task:
        every learner and every scoring call of the run shares the task's oracle, so its cache and call count cover
        the whole run."""
        if batch_size not in self._venvs:
            self._venvs[batch_size] = TokenVectorEnv(self.task, batch_size, AutoresetMode.DISABLED, defer_scoring=True)
        return self._venvs[batch_size]

    @property
    def oracle(self) -> Oracle:
        return self.task.oracle

    def learner(self, config: PPOConfig, seed: int, policy: torch.nn.Module | None = None) -> PPOLearner:
        """A PPO learner starting from ``policy`` (default: the prior), with KL to the original prior."""
        return PPOLearner(
            policy if policy is not None else self.prior, self.prior, self.vector_env(config.batch_size), config, seed
        )

    def policy_from_state(
        self, lm_state: dict[str, torch.Tensor], base: StateDict | None = None
    ) -> transformers.PreTrainedModel:
        """A copy of the prior's architecture holding ``lm_state`` (strict: every key must match).

        A LoRA adapter state is applied to ``base`` (full weights; default: the prior): ``W0 + B A``.
        """
        if lora.is_adapter_state(lm_state):
            return cast(transformers.PreTrainedModel, lora.merge_adapters(self._base(base), [lm_state], [1.0]))
        lm = copy.deepcopy(self.prior)
        lm.load_state_dict(lm_state, strict=True)
        return cast(transformers.PreTrainedModel, lm.eval())

    def _base(self, base: StateDict | None) -> torch.nn.Module:
        return self.prior if base is None else self.policy_from_state(base)

    def merge_policies(self, states: Sequence[StateDict], weights: Any, base: StateDict | None = None) -> StateDict:
        """The weight-space merge ``sum_k w_k theta_k`` of policy states, as full weights.

        Full weights: :func:`~morbench.baselines.common.merge_state_dicts`. LoRA adapter states (all on ``base``,
        default the prior): ``W0 + sum_k w_k B_k A_k`` exactly (:func:`~morbench.baselines.lora.merge_adapters`).
        """
        if states and lora.is_adapter_state(states[0]):
            merged = lora.merge_adapters(self._base(base), list(states), weights)
            return {key: value.detach().clone() for key, value in merged.state_dict().items()}
        return merge_state_dicts(list(states), weights)

    # -- budgets ---------------------------------------------------------------------------------------------
    def spent(self) -> dict[str, int]:
        """What the run has spent so far: sampled tokens (the ledger) and oracle calls (the run's oracle)."""
        return {"sampled_tokens": int(self.ledger["sampled_tokens"]), "oracle_calls": int(self.oracle.calls)}

    def ppo_cost(self, config: PPOConfig) -> dict[str, int]:
        """The worst case of one PPO iteration: every sequence runs to ``max_length`` and costs an oracle call."""
        return {"sampled_tokens": config.batch_size * self.task.max_length, "oracle_calls": config.batch_size}

    def limit(self, parts: int = 1, policies: int = 1) -> dict[str, int | None]:
        """The spending limit (absolute ledger values) of the next of ``parts`` consumers that share what is left
        of the budget equally; ``policies`` is how many policies the method trains in all (the ``per_expert``
        convention gives each of them the whole budget). None: that resource is unlimited."""
        spent = self.spent()
        scale = policies if self.budget.convention == "per_expert" else 1
        limits: dict[str, int | None] = {}
        for name in RESOURCES:
            total = getattr(self.budget, name)
            limits[name] = None if total is None else spent[name] + max(0, total * scale - spent[name]) // parts
        return limits

    def fits(self, cost: dict[str, int], limit: dict[str, int | None], pending: dict[str, int] | None = None) -> bool:
        """Whether spending ``cost`` more (after ``pending``, spent but not logged yet) stays within ``limit``."""
        spent = self.spent()
        pending = pending or {}
        return all(
            (bound := limit.get(name)) is None or spent[name] + pending.get(name, 0) + cost[name] <= bound
            for name in RESOURCES
        )

    def require(self, cost: dict[str, int], limit: dict[str, int | None], what: str) -> None:
        """Raise :class:`ConfigError` when not even one ``what`` (of worst case ``cost``) fits in ``limit``."""
        if not self.fits(cost, limit):
            raise ConfigError(
                f"the budget {self.budget.to_dict()} does not cover one {what} (worst case {cost}, "
                f"limit {limit}, already spent {self.spent()}); raise it"
            )

    # -- the schedule's loop -----------------------------------------------------------------------------------
    def stage(self, name: str, fn: Callable[[], T]) -> T:
        """Run the declared stage ``name`` once. Its result is kept in the checkpoint taken at its end, so a
        resumed run gets it back without running the stage again; a stage cut short by a crash runs again from
        its start (or from its own schedule's last checkpoint, for stages that train with one)."""
        stages = self.state.setdefault("stages", {})
        if name not in stages:
            stages[name] = fn()
            self.checkpoint()
        return stages[name]

    def train_each(
        self, ppo: PPOConfig, learners: Sequence[Learner], iterations: int, checkpoint_every: int, name: str = "each"
    ) -> dict[str, StateDict]:
        """Train each learner from the prior, one after the other, for at most ``iterations`` PPO iterations.

        Each gets an equal share of what is left of the budget when it starts (``limit``: the i-th of n learners
        may spend ``remaining / (n - i)``, so what one leaves unspent goes to the next ones) and runs while the
        worst case of its next iteration fits. Returns every learner's final policy weights by name.
        """
        state = self.state.setdefault(name, {"done": {}})
        cost = self.ppo_cost(ppo)
        self.start_progress(len(learners) * iterations)
        for index, spec in enumerate(learners):
            if spec.name in state["done"]:
                continue
            learner = self.learner(ppo, seed=spec.seed)
            if state.get("current") == spec.name:  # resuming in the middle of this learner
                learner.load_state(state["learner"])
                limit = state["limit"]
            else:
                limit = self.limit(parts=len(learners) - index, policies=len(learners))
                self.require(
                    cost, limit, f"PPO iteration for each of the {len(learners) - index} policies left to train"
                )

            def save(learner: PPOLearner = learner, spec: Learner = spec, limit: dict = limit) -> None:
                state.update(current=spec.name, learner=learner.state(), limit=limit)

            self._iterate(learner, spec.scalarization, iterations, spec.tags, checkpoint_every, save, cost, limit)
            state["done"][spec.name] = learner.model.policy_state()
            for key in ("learner", "current", "limit"):
                state.pop(key, None)
            self.checkpoint()
        return dict(state["done"])

    def train_rounds(
        self,
        ppo: PPOConfig,
        rounds: Rounds,
        checkpoint_every: int,
        parts: int = 1,
        policies: int | None = None,
        name: str = "rounds",
        tags: dict[str, Any] | None = None,
    ) -> tuple[list[StateDict], int, StateDict | None]:
        """Run ``rounds`` (see :class:`Rounds`); return the learners' final policy weights, the rounds run, and the
        base their LoRA adapters apply to (full weights; None for full fine-tuning).

        The schedule's budget is fixed when it starts: ``run.limit(parts, policies)``, the next of ``parts``
        schedules sharing what is left, for a method that trains ``policies`` policies in all (default: these
        learners). A round's block is the largest ``b <= block`` (and <= what is left of ``iterations``) whose
        worst case for every member fits.
        """
        specs = list(rounds.learners)
        state = self.state.setdefault(name, {})
        members_of = rounds.members or (lambda _round: list(range(len(specs))))
        cost = self.ppo_cost(ppo)
        self.start_progress(len(specs) * rounds.iterations * parts)
        if "limit" not in state:
            width = len(members_of(0))
            state["limit"] = self.limit(parts=parts, policies=policies or len(specs))
            self.require(
                {key: width * value for key, value in cost.items()},
                state["limit"],
                f"PPO iteration for each of the {width} experts of a round",
            )
        limit = state["limit"]
        learners = [self.learner(ppo, seed=spec.seed) for spec in specs]
        for learner, saved in zip(learners, state.get("learners", [None] * len(specs)), strict=True):
            if saved is not None:  # resuming
                learner.load_state(saved)
        merged = state.get("merged", self.prior.state_dict())
        round_index, done = state.get("round", 0), state.get("done", 0)

        def save(position: int) -> None:
            state.update(
                learners=[learner.state() for learner in learners],
                merged=merged,
                round=round_index,
                position=position,
                done=done,
            )

        while True:
            members = members_of(round_index)
            if state.get("block") is None:  # the start of a round: how many iterations each member gets
                block = min(rounds.block, rounds.iterations - done)
                while block > 0 and not self.fits({k: len(members) * block * v for k, v in cost.items()}, limit):
                    block -= 1
                if block == 0:
                    break
                state["block"] = block
            block = state["block"]
            for position in range(state.get("position", 0), len(members)):
                learner, spec = learners[members[position]], specs[members[position]]
                if state.get("block_start") is None:  # the start of this learner's block: restart from the merge
                    learner.load_policy(merged)
                    learner.reset_optimizer()
                    state["block_start"] = learner.iterations
                entry_tags = {**spec.tags, "round": round_index, **(tags or {})}
                stop = state["block_start"] + block
                self._iterate(learner, spec.scalarization, stop, entry_tags, checkpoint_every, partial(save, position))
                state["block_start"] = None
                self._periodic_checkpoint(partial(save, position + 1))
            merged = self.merge_policies(
                [learners[k].model.policy_state() for k in members],
                rounds.merge_weights(members),
                learners[members[0]].base_state(),  # LoRA: every member restarted from the same base this round
            )
            round_index, done = round_index + 1, done + block
            state.update(position=0, block=None)
            self._periodic_checkpoint(partial(save, 0))
        self.state.pop(name)
        return [learner.model.policy_state() for learner in learners], round_index, learners[0].base_state()

    def _iterate(
        self,
        learner: PPOLearner,
        scalarization: Scalarization,
        stop: int,
        tags: dict[str, Any],
        checkpoint_every: int,
        save: Callable[[], None],
        cost: dict[str, int] | None = None,
        limit: dict[str, int | None] | None = None,
    ) -> None:
        """The one training loop: PPO iterations until the learner has run ``stop`` in all (or, with a ``limit``,
        until the worst case ``cost`` of the next one no longer fits); logged, with a checkpoint (``save``
        records the schedule's position first) every ``checkpoint_every`` iterations of the learner."""
        while learner.iterations < stop and (limit is None or self.fits(cost or {}, limit)):
            self.log(learner.iteration(scalarization), **tags)
            if learner.iterations % checkpoint_every == 0:
                self._periodic_checkpoint(save)

    # -- progress, logging, checkpoints ---------------------------------------------------------------------
    def start_progress(self, total: int | None, desc: str = "train") -> None:
        """A progress bar over PPO iterations (``total``: an estimate, shown only when no budget decides); the
        first call of a run starts it, later ones keep it."""
        if self._bar is not None:
            return
        done = int(self.ledger["ppo_iterations"])
        total = None if self.budget.limited else total
        self._bar = tqdm(total=total, initial=done, desc=f"{self.method} {desc}", unit="it", disable=not self.progress)

    def charge(self, sampled_tokens: int = 0, wall_seconds: float = 0.0) -> None:
        """Charge work done outside a training iteration (best-of-N's candidates, its pilot batch)."""
        self.ledger["sampled_tokens"] += int(sampled_tokens)
        self.ledger["wall_seconds"] += float(wall_seconds)

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
        """Save everything a resumed run needs as ``<out>/checkpoint``: the schedule's position and learners
        (``run.state``), the oracle (counters; its cache as an appended log), the curve, the compute ledger, the
        torch thread count (:meth:`resume` continues with it) and the CPUs the run has trained on."""
        self._sync_wall()
        if self.oracle.cached_count() < self._cache_log.entries:  # the cache was cleared: start the log afresh
            self._cache_log = AppendLog(self._cache_log.path)
        self._cache_log.append(self.oracle.cache_records(self._cache_log.entries))
        oracle = {
            "calls": self.oracle.calls,
            "requests": self.oracle.requests,
            "budget": self.oracle.budget,
            "cache": self._cache_log.pin(),
        }
        save_checkpoint(
            self.out / "checkpoint",
            {
                "state": self.state,
                "oracle": json.dumps(oracle),
                "curve": json.dumps(self.curve),
                "ledger": dict(self.ledger),
                "identity": self._identity(),
                "torch_threads": torch.get_num_threads(),
                "trained_on": self.trained_on,
            },
            links=(self._cache_log.path,),
        )
        self._write_curve()
        self._last_checkpoint = time.perf_counter()

    def _periodic_checkpoint(self, save: Callable[[], None]) -> None:
        """A checkpoint inside a schedule, once ``checkpoint_seconds`` have passed since the last one; ``save``
        first records the schedule's position in ``run.state``. Schedule boundaries (a learner or stage done)
        always checkpoint: a crash loses at most this interval (and one iteration) of work."""
        if time.perf_counter() - self._last_checkpoint >= self.checkpoint_seconds:
            save()
            self.checkpoint()

    def resume(self) -> bool:
        """Restore the last checkpoint (if any); returns whether one was found.

        The checkpoint is verified (checksums, structure, run identity) completely before anything is restored:
        on any error the run's state is untouched and :class:`CheckpointError` / :class:`InvalidRunError` says
        which file is wrong and what to do.

        The run continues with the torch thread count its checkpoint was made with (this process is switched to
        it, and says so): the thread count changes the last bits of CPU gradients (backward reductions split
        differently), so a run resumed with another would silently diverge from the uninterrupted run.

        A checkpoint made on another CPU model, or one whose torch kernels use another instruction set
        (:func:`~morbench.runs.cpu_kernels`), resumes with a warning: the run's floats round differently from here on,
        so it will not be bit-identical to an uninterrupted run on either machine. ``run.json`` then lists every CPU
        the run trained on (``hardware.trained_on``), and a study re-run that must reproduce a committed record says so.
        """
        where = self.out / "checkpoint"
        saved = load_checkpoint(where)
        source = checkpoint_source(where)
        if saved is None or source is None:
            return False
        identity = self._identity()
        if saved.get("identity") != identity:
            raise InvalidRunError(
                f"the checkpoint in {self.out} belongs to another run ({identity_difference(saved.get('identity'), identity)}); "
                f"resume with the original settings, use another --out, or delete {where} to start over"
            )
        try:
            state, ledger = saved["state"], dict(saved["ledger"])
            oracle_state = json.loads(saved["oracle"])
            curve = json.loads(saved["curve"])
            if not isinstance(state, dict) or not isinstance(curve, list) or not isinstance(oracle_state, dict):
                raise TypeError("state, curve and oracle state must be an object, a list and an object")
            if state.get("schedule_format") != SCHEDULE_FORMAT:
                raise ValueError(
                    f"its schedule position has format {state.get('schedule_format')!r}, this morbench reads "
                    f"{SCHEDULE_FORMAT} (it was written by another version)"
                )
            threads = saved.get("torch_threads")  # None: a checkpoint made before it was recorded
            if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
                raise ValueError(f"its torch thread count {threads!r} is not a positive integer")
            trained_on = saved.get("trained_on", [])  # []: a checkpoint made before the CPUs were recorded
            if not isinstance(trained_on, list) or not all(
                isinstance(cpu, dict) and cpu and all(isinstance(k, str) and isinstance(v, str) for k, v in cpu.items())
                for cpu in trained_on
            ):
                raise ValueError(f"its list of CPUs the run trained on {trained_on!r} is malformed")
            if set(ledger) != set(self.ledger) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in ledger.values()
            ):
                raise ValueError(f"the compute ledger {ledger!r} is malformed")
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{where / 'state.json'}: not a checkpoint of this morbench ({type(exc).__name__}: {exc}); "
                f"delete {where} to start the run over"
            ) from None
        oracle_state["cache"] = self._cache_log.restore(source, oracle_state.get("cache"))
        try:
            self.oracle.load_state_dict(oracle_state)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{where / 'state.json'}: the oracle state does not load ({type(exc).__name__}: {exc}); "
                f"delete {where} to start the run over"
            ) from None
        self.state, self.curve, self.ledger = state, curve, ledger
        if threads is not None and threads != torch.get_num_threads():
            print(
                f"{self.out}: resuming with {threads} torch thread(s) as its checkpoint was made, not this process's "
                f"{torch.get_num_threads()} (the thread count changes the last bits of CPU gradients)",
                file=sys.stderr,
            )
            torch.set_num_threads(threads)
        here = cpu_kernels()
        if trained_on[-1:] not in ([], [here]):
            print(
                f"{self.out}: WARNING: resuming on another CPU ({cpu_name(here)}) than its checkpoint was made on "
                f"({cpu_name(trained_on[-1])}): torch's CPU kernels round differently across CPU models, so from "
                "here on this run is not bit-identical to an uninterrupted one (run.json's hardware.trained_on will "
                "list both); to reproduce a run exactly, finish it on the CPU model it started on",
                file=sys.stderr,
            )
        self.trained_on = trained_on if trained_on[-1:] == [here] else [*trained_on, here]
        return True

    def _identity(self) -> dict[str, Any]:
        """What must match for a checkpoint or a finished run directory to be this run (see ``run_identity``)."""
        return run_identity(
            self.method,
            self.env_id,
            self.task.spec.version if self.task.spec is not None else None,
            self.env_kwargs,
            identity_config(_config_dict(self.config)),
            self.budget.to_dict(),
            self.seed,
            self.eval_samples,
            device=self.device.type,
        )

    def _sync_wall(self) -> None:
        now = time.perf_counter()
        self.ledger["wall_seconds"] = float(self.ledger["wall_seconds"]) + (now - self._started)
        self._started = now

    def _write_curve(self) -> None:
        lines = "".join(json.dumps(entry) + "\n" for entry in self.curve)
        atomic_write_bytes(self.out / CURVE_FILE, lines.encode())

    # -- the end of a run ---------------------------------------------------------------------------------
    def finish(self, policy: Any, config: Any, outputs: dict[str, Any] | None = None, preferences: Any = None) -> Path:
        """Evaluate ``policy`` with the task's protocol on a fresh env, then write the run directory."""
        if self._bar is not None:
            self._bar.close()
        self._sync_wall()
        self._write_curve()
        # a fresh env: its own oracle (evaluation is not training) and the protocol's evaluation contexts
        eval_task = make_evaluation_task(self.env_id, self.env_kwargs, training_task=self.task)
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
                "identity": self._identity(),
                "method": self.method,
                "env": spec_to_dict(self.task),
                "seed": self.seed,
                "config": _config_dict(config),
                "compute": compute,
                "outputs": outputs or {},
                "device": str(self.device),
                "trained_on": self.trained_on if len(self.trained_on) > 1 else None,
            },
        )
        remove_tree(self.out / "checkpoint")  # the run is complete; its evaluation and outputs are written
        self._cache_log.path.unlink(missing_ok=True)
        return path


def _config_dict(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return copy.deepcopy(config)
