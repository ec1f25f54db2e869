"""Rewards-in-Context (Yang et al., ICML 2024): supervised fine-tuning conditioned on reward tokens.

1. **Offline stage.** Sample sequences from the prior, score them with the oracle, keep the valid ones (invalid
   samples carry no reward information: they are not labelled with floor levels), quantize each objective's
   reward into ``levels`` linear bins between the offline minimum and maximum, and fine-tune the prior on
   ``[BOS] <r_1=q_1> ... <r_K=q_K> sequence [EOS]`` with the loss on the sequence only. The reward tokens are
   ``K * levels`` ids appended to the vocabulary (embeddings initialised to the mean embedding); they are never
   sampled as output.
2. **Online stage** (rounds). Generate at targeted preferences (one objective at a random level, the others at
   the top level, as RiC's goal sampling), score, relabel each valid sample with the levels it *achieved*
   (hindsight), keep those with any reward at or above the ``quantile`` of its objective over the round's valid
   samples (multi-objective rejection sampling), add them to the data and continue fine-tuning: ``online_epochs``
   epochs over all the data (the default; the supervised work grows with the square of the rounds), or
   ``online_steps`` batches drawn from it, as RiC's own code (``online_training_steps``).
3. **Inference.** A preference ``w`` maps to RiC's ``linf`` target: objectives with ``w_k >= 1/K`` get the top
   level ``L-1``, the others ``round(K * w_k * (L-1))``; the target is then moved to the nearest level
   combination that occurs in the training data (Euclidean distance over levels; ties: higher ``w . levels``, then
   the smaller combination), so the model is never asked for a combination it has never seen.

Budget (schedule that fills it): sampling goes in batches of ``batch_size``, each run only if its worst case
(``batch_size * max_length`` tokens, ``batch_size`` calls) fits. The offline stage may spend ``offline_fraction``
of the budget (and at most ``offline_samples``); online rounds of ``online_samples`` then continue until the next
batch no longer fits (the last round is shortened), so the run ends within one batch's worst case of the budget.
Without a budget: ``offline_samples``, then ``online_iterations`` (default 2) rounds.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import torch

from morbench.baselines.training import RunContext, Trained
from morbench.core import Context, TokenEnv
from morbench.errors import ConfigError
from morbench.evaluation import LMPolicy
from morbench.sampling import PolicySamples, model_device, sample_for_task, sample_sequences
from morbench.seeding import ric_goal_rng, ric_offline_seed, ric_online_seed

__all__ = ["RewardsInContextConfig", "preference_to_levels", "train"]


@dataclasses.dataclass
class RewardsInContextConfig:
    """Rewards-in-Context's options: the offline and online stages' sizes, the reward levels, SFT and sampling."""

    offline_samples: int = dataclasses.field(
        default=2048, metadata={"help": "prior samples scored for the offline data"}
    )
    levels: int = dataclasses.field(default=10, metadata={"help": "quantization levels (reward tokens) per objective"})
    offline_epochs: int = dataclasses.field(default=4, metadata={"help": "SFT epochs of the offline stage"})
    online_iterations: int | None = dataclasses.field(
        default=None,
        metadata={"help": "online rounds at most; None = until the budget is spent (2 without a budget)"},
    )
    offline_fraction: float = dataclasses.field(
        default=0.5, metadata={"help": "with a budget: the share of it the offline data may spend"}
    )
    online_samples: int = dataclasses.field(default=512, metadata={"help": "generations per online round"})
    online_epochs: int = dataclasses.field(
        default=2, metadata={"help": "SFT epochs over the whole data after each online round (without online_steps)"}
    )
    online_steps: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "SFT gradient steps after each online round, batches drawn from the whole data (RiC's "
            "online_training_steps); None: online_epochs epochs over the data"
        },
    )
    quantile: float = dataclasses.field(
        default=0.7, metadata={"help": "MORS filter: keep if any reward >= this quantile"}
    )
    learning_rate: float = dataclasses.field(default=3e-4, metadata={"help": "AdamW learning rate (offline)"})
    online_learning_rate: float = dataclasses.field(default=1e-4, metadata={"help": "AdamW learning rate (online)"})
    batch_size: int = dataclasses.field(
        default=64, metadata={"help": "sequences per gradient step and per sampling batch"}
    )
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "sampling temperature for data generation"})

    def __post_init__(self) -> None:
        for name in ("offline_samples", "levels", "offline_epochs", "online_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"RewardsInContextConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.levels < 2:
            raise ConfigError("RewardsInContextConfig.levels must be >= 2")
        if not 0 < self.offline_fraction <= 1:
            raise ConfigError(f"RewardsInContextConfig.offline_fraction must be in (0, 1], got {self.offline_fraction}")
        if (self.online_iterations is not None and self.online_iterations < 0) or self.online_epochs < 0:
            raise ConfigError("online_iterations and online_epochs must be >= 0")
        if self.online_steps is not None and self.online_steps < 1:
            raise ConfigError(f"RewardsInContextConfig.online_steps must be >= 1 or None, got {self.online_steps}")
        if not 0 < self.quantile < 1:
            raise ConfigError(f"RewardsInContextConfig.quantile must be in (0, 1), got {self.quantile}")


def preference_to_levels(preference: np.ndarray, levels: int) -> np.ndarray:
    """RiC's ``linf`` mapping from a preference to target levels (see the module docstring)."""
    k = len(preference)
    top = levels - 1
    targets = np.round(np.minimum(k * np.asarray(preference), 1.0) * top).astype(int)
    targets[np.asarray(preference) >= 1.0 / k - 1e-9] = top
    return targets


def nearest_supported(target: np.ndarray, preference: np.ndarray, support: np.ndarray) -> np.ndarray:
    """The level combination of ``support`` (rows) nearest to ``target``.

    The distance is Euclidean over levels (the balanced combination wins over lopsided ones at equal L1 distance);
    ties go to the higher ``preference . levels``, then to the first row (``support`` is sorted).
    """
    distance = ((support - target[None, :]) ** 2).sum(axis=1)
    candidates = np.flatnonzero(distance == distance.min())
    utility = support[candidates] @ np.asarray(preference, dtype=np.float64)
    return support[candidates[int(np.argmax(utility))]]


class _Quantizer:
    """Linear bins between the offline data's minimum and maximum of each objective (RiC's z-scores are linear too).

    Values outside the range fall into the end bins.
    """

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = edges  # (K, levels - 1) inner bin edges

    @classmethod
    def fit(cls, rewards: np.ndarray, levels: int) -> _Quantizer:
        low, high = rewards.min(axis=0), rewards.max(axis=0)
        fractions = np.linspace(0, 1, levels + 1)[1:-1]
        return cls(low[:, None] + (high - low)[:, None] * fractions[None, :])

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        return np.stack(
            [np.searchsorted(self.edges[k], rewards[:, k], side="right") for k in range(rewards.shape[1])], axis=1
        )


class RiCPolicy(LMPolicy):
    """Samples conditioned on the reward tokens of the preference's target levels."""

    def __init__(self, model: torch.nn.Module, task: TokenEnv, base_vocab: int, levels: int) -> None:
        super().__init__(model, task)
        self.base_vocab, self.levels = base_vocab, levels
        self.support: np.ndarray | None = None  # level combinations of the training data (set after training)

    def targets(self, preference: np.ndarray) -> np.ndarray:
        target = preference_to_levels(preference, self.levels)
        return target if self.support is None else nearest_supported(target, preference, self.support)

    def prefix(self, levels_per_objective: np.ndarray) -> list[int]:
        return [self.base_vocab + k * self.levels + int(q) for k, q in enumerate(levels_per_objective)]

    def forbidden(self) -> list[int]:
        extra = range(self.base_vocab, self.base_vocab + self.task.reward_dim * self.levels)
        return [*self.task.forbidden_token_ids.tolist(), *extra]

    def sample(self, preference: np.ndarray, contexts: list[Context | None], seed: int) -> PolicySamples:
        prefix = self.prefix(self.targets(preference))
        return sample_sequences(
            self.model,
            self.task,
            contexts,
            seed,
            self.temperature,
            self.top_p,
            prefix_ids=prefix,
            forbid_token_ids=self.forbidden(),
        )


def _generate(
    run: RunContext,
    model: torch.nn.Module,
    level_targets: np.ndarray | None,
    count: int,
    seed: int,
    config: RewardsInContextConfig,
    policy: RiCPolicy | None = None,
    limit: dict | None = None,
) -> tuple[list, list, np.ndarray, np.ndarray, int]:
    """Sample up to ``count`` sequences (conditioned on ``level_targets`` rows when given) and score them.

    A batch is sampled only if its worst case fits in ``limit``. Returns the generated token rows, their context
    indices (-1 for unconditional tasks), the reward vectors, their validity and the number of sampled tokens.
    """
    task = run.task
    generator = torch.Generator(device=model_device(model)).manual_seed(seed)  # samples on the model's device
    rng = np.random.default_rng(seed)
    forbid = policy.forbidden() if policy is not None else task.forbidden_token_ids.tolist()
    rows: list[list[int]] = []
    context_ids: list[int] = []
    rewards: list[np.ndarray] = []
    valid: list[np.ndarray] = []
    tokens = 0
    all_contexts = task.contexts
    for start in range(0, count, config.batch_size):
        n = min(config.batch_size, count - start)
        worst = {"sampled_tokens": n * task.max_length, "oracle_calls": n}
        if limit is not None and not run.fits(worst, limit, pending={"sampled_tokens": tokens}):
            break
        picks = rng.integers(0, len(all_contexts), size=n) if all_contexts is not None else np.full(n, -1)
        contexts = [all_contexts[i] if all_contexts is not None and i >= 0 else None for i in picks]
        prefixes = None
        if level_targets is not None and policy is not None:
            prefixes = torch.tensor([policy.prefix(t) for t in level_targets[start : start + n]], dtype=torch.long)
        generation = sample_for_task(
            model, task, contexts, generator, config.temperature, prefixes=prefixes, forbid_token_ids=forbid
        )
        generated = generation.rows()
        rows.extend(generated)
        context_ids.extend(int(i) for i in picks)
        scores = task.score_token_ids(generated, contexts)
        rewards.append(scores.rewards)
        valid.append(scores.valid)
        tokens += generation.num_tokens
    if not rows:
        return [], [], np.zeros((0, task.reward_dim), dtype=np.float32), np.zeros(0, dtype=bool), 0
    return rows, context_ids, np.concatenate(rewards), np.concatenate(valid), tokens


def _prompt_ids(task: TokenEnv, context_id: int) -> list[int]:
    """The prompt of a training row: its context's prompt, or BOS for unconditional tasks (context id -1)."""
    if context_id < 0 or task.contexts is None:
        return [task.bos_token_id]
    return [*task.contexts[context_id].prompt_ids]


def _sft(
    run: RunContext,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rows: list[list[int]],
    context_ids: list[int],
    labels: np.ndarray,
    prefix_fn: Callable[[np.ndarray], list[int]],
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    steps: int | None = None,
) -> tuple[float, int]:
    """Fine-tune by next-token NLL on ``prompt reward-tokens sequence``, the loss on the sequence tokens only.

    ``epochs`` passes over the rows, or with ``steps`` that many full batches (fewer if the rows are fewer than a
    batch) drawn from consecutive shuffles of the rows. The prompt length is explicit (no template search).
    Returns the mean loss and the number of gradient steps.
    """
    task = run.task
    model.train()
    losses = []
    for idx in _batches(len(rows), batch_size, generator, epochs, steps):
        prompts = [_prompt_ids(task, context_ids[i]) for i in idx]
        prompts = [[*p, *prefix_fn(labels[i])] for p, i in zip(prompts, idx, strict=True)]
        bodies = [[*p, *rows[i]] for p, i in zip(prompts, idx, strict=True)]
        width = max(len(b) for b in bodies)
        ids = torch.full((len(idx), width), task.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        target_mask = torch.zeros((len(idx), width - 1), dtype=torch.long)
        for j, (p, b) in enumerate(zip(prompts, bodies, strict=True)):
            ids[j, : len(b)] = torch.tensor(b)
            mask[j, : len(b)] = 1
            target_mask[j, len(p) - 1 : len(b) - 1] = 1  # predict the sequence tokens only
        device = model_device(model)
        ids, mask, target_mask = ids.to(device), mask.to(device), target_mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
        ).view_as(target_mask)
        loss = (nll * target_mask).sum() / target_mask.sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return float(np.mean(losses)) if losses else float("nan"), len(losses)


def _batches(
    rows: int, batch_size: int, generator: torch.Generator, epochs: int, steps: int | None
) -> Iterator[list[int]]:
    """The row indices of each SFT batch.

    ``epochs`` shuffled passes (the last batch of each may be short), or, with ``steps``, that many batches of
    ``min(batch_size, rows)`` cut from consecutive shuffles (every row once per shuffle; none without rows).
    """
    if steps is None:
        for _ in range(epochs):
            order = torch.randperm(rows, generator=generator).tolist()
            yield from (order[start : start + batch_size] for start in range(0, rows, batch_size))
        return
    width = min(batch_size, rows)
    pool: list[int] = []
    for _ in range(steps if rows else 0):
        while len(pool) < width:
            pool += torch.randperm(rows, generator=generator).tolist()
        yield pool[:width]
        pool = pool[width:]


def _mors_filter(rewards: np.ndarray, quantile: float) -> np.ndarray:
    if len(rewards) == 0:
        return np.zeros(0, dtype=bool)
    thresholds = np.quantile(rewards, quantile, axis=0)
    return np.any(rewards >= thresholds[None, :], axis=1)


def train(run: RunContext, config: RewardsInContextConfig) -> Trained:
    """Run the offline stage, then the online rounds, each a stage of the run (see the module docstring).

    Returns the reward-conditioned policy, its targets moved into the training data's support, and the run's
    outputs (the model, the level edges and support, the samples generated per stage).
    """
    task = run.task
    k_objectives = task.reward_dim
    base_vocab = task.vocab_size
    needed = task.max_prompt_length + 1 + k_objectives + task.max_length
    positions = getattr(run.prior.config, "n_positions", None) or run.prior.config.max_position_embeddings
    if needed > positions:
        raise ConfigError(
            f"Rewards-in-Context needs {needed} positions (prompt + {k_objectives} reward tokens + "
            f"max_length) but the prior has {positions}; rebuild the prior with a longer context"
        )
    model = copy.deepcopy(run.prior)
    model.requires_grad_(True)
    model.resize_token_embeddings(base_vocab + k_objectives * config.levels, mean_resizing=False)
    with torch.no_grad():  # new reward-token embeddings start at the mean embedding
        embeddings = model.get_input_embeddings().weight
        embeddings[base_vocab:] = embeddings[:base_vocab].mean(dim=0)
    policy = RiCPolicy(model, task, base_vocab, config.levels)
    generator = torch.Generator().manual_seed(run.seed)
    if "model" in run.state:  # resuming: the model and SFT generator as the last finished stage left them
        model.load_state_dict(run.state["model"])
        generator.set_state(run.state["generator"])
    limits = run.stage("budget", partial(_limits, run, config))
    rounds = config.online_iterations
    if rounds is None:
        rounds = None if run.budget.limited else 2
    run.start_progress(None if rounds is None else 2 + rounds)

    # -- offline stage: score prior samples, keep the valid ones, quantize, conditional SFT ---------------------
    offline = run.stage("offline-data", lambda: _offline_data(run, config, limits["offline"]))
    rewards = np.asarray(offline["rewards"], dtype=np.float32)
    quantizer = _Quantizer.fit(rewards, config.levels)

    def offline_sft() -> None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
        labels = quantizer(rewards)
        loss, steps = _sft(
            run, model, optimizer, offline["rows"], offline["context_ids"], labels, policy.prefix,
            config.offline_epochs, config.batch_size, generator,
        )  # fmt: skip
        keep = _mors_filter(rewards, config.quantile)
        run.state["data"] = {
            "rows": [r for r, k in zip(offline["rows"], keep, strict=True) if k],
            "context_ids": [c for c, k in zip(offline["context_ids"], keep, strict=True) if k],
            "rewards": rewards[keep].tolist(),
        }
        _record(run, model, generator, {"loss": loss, "gradient_steps": steps, "stage": "offline-sft"})

    run.stage("offline-sft", offline_sft)

    # -- online stage: targeted generation, hindsight relabelling, MORS filter, continued SFT ------------------
    # rounds continue while a batch still fits in the budget (or ``online_iterations`` rounds are done)
    online_generated: list[int] = []
    for iteration in itertools.count(1) if rounds is None else range(1, rounds + 1):
        online_round = partial(
            _online_round, run, config, model, policy, generator, quantizer, limits, iteration, rounds
        )
        outcome = run.stage(f"online-{iteration}", online_round)
        if outcome["generated"] is None:
            break
        online_generated.append(outcome["generated"])
        if outcome["stop"]:
            break

    # the level combinations the model was trained on: targets are moved into this support
    data_rewards = np.asarray(run.state["data"]["rewards"], dtype=np.float32)
    labels = np.concatenate([quantizer(rewards), quantizer(data_rewards)])
    policy.support = np.unique(labels.reshape(-1, k_objectives), axis=0)
    model.save_pretrained(run.out / "model", safe_serialization=True)
    outputs = {
        "model": "model",
        "base_vocab_size": base_vocab,
        "levels": config.levels,
        "level_edges": quantizer.edges.tolist(),
        "mapping": "linf target, moved to the nearest level combination of the training data "
        "(Euclidean over levels; ties: higher w . levels)",
        "support": policy.support.tolist(),
        "reward_token_id": "base_vocab_size + objective_index * levels + level",
        "offline_generated": int(offline["generated"]),
        "offline_valid": len(offline["rows"]),
        "online_generated_per_round": online_generated,
        "serving": "one model conditioned on reward tokens (target levels from w, inside the data's support)",
    }
    return policy, outputs


def _limits(run: RunContext, config: RewardsInContextConfig) -> dict:
    """The budget split, fixed at the start: the offline stage's share, then the whole budget."""
    total, spent = run.limit(), run.spent()
    offline = {
        name: None if value is None else spent[name] + int(config.offline_fraction * (value - spent[name]))
        for name, value in total.items()
    }
    return {"offline": offline, "total": total}


def _offline_data(run: RunContext, config: RewardsInContextConfig, limit: dict) -> dict:
    """Prior samples, scored; the valid ones are the offline data."""
    task = run.task
    first = min(config.batch_size, config.offline_samples)
    run.require({"sampled_tokens": first * task.max_length, "oracle_calls": first}, limit, "offline batch")
    rows, context_ids, rewards, valid, tokens = _generate(
        run, run.prior, None, config.offline_samples, ric_offline_seed(run.seed), config, limit=limit
    )
    if not valid.any():
        raise ConfigError(f"none of the {len(rows)} offline prior samples is valid; raise the budget")
    run.log({"tokens": tokens, "stage": "offline-data", "valid": int(valid.sum()), "generated": len(rows)})
    return {
        "rows": [r for r, v in zip(rows, valid, strict=True) if v],
        "context_ids": [c for c, v in zip(context_ids, valid, strict=True) if v],
        "rewards": rewards[valid].tolist(),
        "generated": len(rows),
    }


def _online_round(
    run: RunContext,
    config: RewardsInContextConfig,
    model: torch.nn.Module,
    policy: RiCPolicy,
    generator: torch.Generator,
    quantizer: _Quantizer,
    limits: dict[str, Any],
    iteration: int,
    rounds: int | None,
) -> dict[str, Any]:
    """One online round: goals, targeted generation, MORS filter, SFT on the grown data.

    Returns how many samples it generated (None: the budget did not cover a batch, so no round ran) and whether
    the rounds stop here.
    """
    task = run.task
    goal_rng = ric_goal_rng(run.seed)
    if "goal_rng" in run.state:
        goal_rng.bit_generator.state = run.state["goal_rng"]
    goals = _sample_goals(goal_rng, config.online_samples, task.reward_dim, config.levels)
    run.state["goal_rng"] = goal_rng.bit_generator.state
    first = min(config.batch_size, config.online_samples)
    if not run.fits({"sampled_tokens": first * task.max_length, "oracle_calls": first}, limits["total"]):
        return {"generated": None, "stop": True}
    before = run.spent()
    new_rows, new_contexts, new_rewards, valid, tokens = _generate(
        run,
        model,
        goals,
        config.online_samples,
        ric_online_seed(run.seed, iteration),
        config,
        policy,
        limit=limits["total"],
    )
    keep = np.zeros(len(new_rows), dtype=bool)
    keep[valid] = _mors_filter(new_rewards[valid], config.quantile)  # valid samples only
    data = run.state["data"]
    data["rows"] += [r for r, k in zip(new_rows, keep, strict=True) if k]
    data["context_ids"] += [c for c, k in zip(new_contexts, keep, strict=True) if k]
    data["rewards"] += new_rewards[keep].tolist()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.online_learning_rate, weight_decay=0.01)
    labels = quantizer(np.asarray(data["rewards"], dtype=np.float32))
    loss, steps = _sft(
        run, model, optimizer, data["rows"], data["context_ids"], labels, policy.prefix,
        config.online_epochs, config.batch_size, generator, config.online_steps,
    )  # fmt: skip
    stats = {
        "loss": loss,
        "tokens": tokens,
        "gradient_steps": steps,
        "stage": f"online-{iteration}",
        "generated": len(new_rows),
        "valid": int(valid.sum()),
        "kept": int(keep.sum()),
        "reward_mean": new_rewards[valid].mean(axis=0).tolist() if valid.any() else None,
    }
    _record(run, model, generator, stats)
    after = run.spent()
    # a round that spent nothing the budget counts (e.g. every sample cached) would never fill it: stop
    spent_nothing = all(limits["total"][n] is None or after[n] == before[n] for n in after)
    return {"generated": len(new_rows), "stop": rounds is None and spent_nothing}


def _sample_goals(rng: np.random.Generator, count: int, k_objectives: int, levels: int) -> np.ndarray:
    """RiC's goal sampling: one random objective at a uniform random level, every other one at the top level."""
    goals = np.full((count, k_objectives), levels - 1, dtype=int)
    which = rng.integers(0, k_objectives, size=count)
    goals[np.arange(count), which] = rng.integers(0, levels, size=count)
    return goals


def _record(run: RunContext, model: torch.nn.Module, generator: torch.Generator, stats: dict[str, Any]) -> None:
    """Log a stage and keep the model and SFT generator in the state its checkpoint saves."""
    run.state.update(
        model={k: v.detach().clone() for k, v in model.state_dict().items()}, generator=generator.get_state()
    )
    run.log(stats)
