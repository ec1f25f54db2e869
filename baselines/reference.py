"""Reference rows: the untuned prior, and best-of-N sampling from the prior selected by ``w . r``.

Best-of-N spends oracle calls instead of gradient steps: for every evaluation sample it draws ``n`` candidates
from the prior, scores them with the training oracle and keeps the one with the highest ``w . r`` for the
preference ``w``. With a budget of oracle calls (or sampled tokens), ``n`` is the largest value whose worst-case
cost fits: ``n = budget // (samples_per_preference * len(preference_grid))`` (tokens: also divided by max_length).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from morbench.baselines.training import RunContext
from morbench.errors import ConfigError
from morbench.evaluation import LMPolicy, PolicySamples, sample_sequences

__all__ = ["BestOfNConfig", "PriorConfig", "train_best_of_n", "train_prior"]


@dataclasses.dataclass
class PriorConfig:
    """The untuned prior: no training, no options."""


def train_prior(run: RunContext, config: PriorConfig):
    return LMPolicy(run.prior, run.task), {"model": "the task's prior (unchanged)"}


@dataclasses.dataclass
class BestOfNConfig:
    n: int | None = dataclasses.field(
        default=None, metadata={"help": "candidates per sample; None = from the budget (else 8)"}
    )

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 1:
            raise ConfigError(f"BestOfNConfig.n must be >= 1, got {self.n}")


class BestOfNPolicy(LMPolicy):
    def __init__(self, run: RunContext, n: int) -> None:
        super().__init__(run.prior, run.task)
        self.run, self.n = run, n

    def sample(self, preference, contexts, seed) -> PolicySamples:
        started = time.perf_counter()
        expanded = [c for c in contexts for _ in range(self.n)]
        candidates = sample_sequences(self.model, self.task, expanded, seed, self.temperature, self.top_p)
        rewards = self.task.score(candidates.sequences, expanded).rewards  # the run's (training) oracle
        self.run.ledger["sampled_tokens"] += sum(
            len(self.task.tokenizer(s, add_special_tokens=False)["input_ids"]) + 1 for s in candidates.sequences
        )
        utility = (rewards @ preference).reshape(len(contexts), self.n)
        best = utility.argmax(axis=1) + np.arange(len(contexts)) * self.n
        # best-of-N's compute is spent here, at evaluation time: count it as the method's wall time
        self.run.ledger["wall_seconds"] += time.perf_counter() - started
        # the selected samples' probability under best-of-n is not the prior's: no log-probability (no KL)
        return PolicySamples([candidates.sequences[i] for i in best], None)


def train_best_of_n(run: RunContext, config: BestOfNConfig):
    task = run.task
    samples = (run.eval_samples or task.protocol.samples_per_preference) * len(task.preference_grid)
    n = config.n
    if n is None:
        limits = []
        if run.budget.oracle_calls is not None:
            limits.append(run.budget.oracle_calls // samples)
        if run.budget.sampled_tokens is not None:
            limits.append(run.budget.sampled_tokens // (samples * task.max_length))
        n = min(limits) if limits else 8
    if n < 1:
        raise ConfigError(
            f"the budget {run.budget.to_dict()} does not cover one candidate per evaluation sample ({samples} samples)"
        )
    return BestOfNPolicy(run, n), {"n": n, "selection": "argmax of w . r under the training oracle"}
