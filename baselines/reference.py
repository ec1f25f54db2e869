"""Reference rows: the untuned prior, and best-of-N sampling from the prior selected by ``w . r``.

The prior spends nothing (no training, no oracle calls: its budget usage is 0 by definition). Best-of-N spends
sampled tokens and oracle calls at evaluation: for every evaluation sample it draws ``n`` candidates from the
prior, scores them with the training oracle and keeps the one with the highest ``w . r``.

With a budget, ``n`` comes from the measured per-sample cost: a pilot batch of prior samples (charged to the
budget) gives the mean tokens and oracle calls per candidate; the candidates the rest of the budget pays for
(keeping a reserve of one worst-case candidate round) are spread evenly: every evaluation sample gets ``n`` and
the first ``extra`` samples of every preference get ``n + 1``, identically at every preference. Candidates are drawn
in rounds (one per sample; consecutive rounds share one sampling call); a round runs only if its worst case still
fits, so the budget is never exceeded.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from morbench.baselines.training import RunContext, Trained
from morbench.core import Context
from morbench.errors import ConfigError
from morbench.evaluation import LMPolicy
from morbench.sampling import PolicySamples, sample_sequences
from morbench.seeding import best_of_n_seed, pilot_seed

__all__ = ["BestOfNConfig", "PriorConfig", "train_best_of_n", "train_prior"]


@dataclasses.dataclass
class PriorConfig:
    """The untuned prior: no training, no options."""


def train_prior(run: RunContext, config: PriorConfig) -> Trained:
    """The untuned prior as the policy of every preference, and the run's outputs; nothing is trained or spent."""
    return LMPolicy(run.prior, run.task), {
        "model": "the task's prior (unchanged)",
        "serving": "one model for all preferences (spends no budget)",
    }


@dataclasses.dataclass
class BestOfNConfig:
    """Best-of-N's options: the candidates per evaluation sample, and the pilot batch that measures their cost."""

    n: int | None = dataclasses.field(
        default=None, metadata={"help": "candidates per sample; None = from the budget (else 8); a budget caps it"}
    )
    pilot_samples: int = dataclasses.field(
        default=128, metadata={"help": "prior samples of the pilot batch that measures the cost per candidate"}
    )

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 1:
            raise ConfigError(f"BestOfNConfig.n must be >= 1, got {self.n}")
        if self.pilot_samples < 1:
            raise ConfigError(f"BestOfNConfig.pilot_samples must be >= 1, got {self.pilot_samples}")


class BestOfNPolicy(LMPolicy):
    def __init__(self, run: RunContext, n: int, extra: int, outputs: dict) -> None:
        super().__init__(run.prior, run.task)
        self.run, self.n, self.extra, self.outputs = run, n, extra, outputs
        self.limit = run.limit()

    def sample(self, preference: np.ndarray, contexts: list[Context | None], seed: int) -> PolicySamples:
        started = time.perf_counter()
        counts = np.full(len(contexts), self.n)
        counts[: self.extra] += 1
        best: list[str | None] = [None] * len(contexts)
        best_utility = np.full(len(contexts), -np.inf)
        rounds, first = int(counts.max()), 0
        while first < rounds:
            # as many of the next rounds at once as their worst case allows (one sampling call for all of them)
            chosen_rounds, worst = [], {"sampled_tokens": 0, "oracle_calls": 0}
            for round_index in range(first, rounds):
                members = np.flatnonzero(counts > round_index)
                more = {"sampled_tokens": len(members) * self.task.max_length, "oracle_calls": len(members)}
                total = {name: worst[name] + more[name] for name in worst}
                if not self.run.fits(total, self.limit):
                    break
                chosen_rounds.append(members)
                worst = total
            if not chosen_rounds:  # never past the budget: the remaining rounds are dropped
                self.outputs["rounds_dropped"] = self.outputs.get("rounds_dropped", 0) + rounds - first
                break
            members = np.concatenate(chosen_rounds)
            chosen = [contexts[i] for i in members]
            sequences, tokens = _sample_prior(self, chosen, best_of_n_seed(seed, first))
            rewards = self.task.score(sequences, chosen).rewards  # the run's (training) oracle
            self.run.charge(sampled_tokens=tokens)
            utility = rewards @ preference
            for j, i in enumerate(members):
                if best[i] is None or utility[j] > best_utility[i]:
                    best[i], best_utility[i] = sequences[j], utility[j]
            first += len(chosen_rounds)
        # best-of-N's compute is spent here, at evaluation time: count it as the method's wall time
        self.run.charge(wall_seconds=time.perf_counter() - started)
        missing = [i for i, s in enumerate(best) if s is None]
        if missing:
            raise ConfigError(
                f"best-of-N ran out of its budget {self.run.budget.to_dict()} before one candidate for {len(missing)} "
                "evaluation samples; raise the budget"
            )
        # the selected samples' probability under best-of-n is not the prior's: no log-probability (no KL)
        return PolicySamples([s for s in best if s is not None], None)


def _sample_prior(policy: LMPolicy, contexts: list, seed: int) -> tuple[list[str], int]:
    """One prior sample per context (the evaluation protocol's decoding) and the tokens actually sampled."""
    samples = sample_sequences(policy.model, policy.task, contexts, seed, policy.temperature, policy.top_p)
    return samples.sequences, int(samples.sampled_tokens or 0)


def train_best_of_n(run: RunContext, config: BestOfNConfig) -> Trained:
    """Choose ``n`` (from the budget when there is one, see the module docstring); nothing is trained.

    Returns the policy, which draws and scores the candidates when it is evaluated (charging the run), and the
    run's outputs (``n``, the samples that get ``n + 1``, the measured cost per candidate).
    """
    task = run.task
    per_preference = run.eval_samples or task.protocol.samples_per_preference
    grid = len(task.preference_grid)
    outputs: dict = {"selection": "argmax of w . r under the training oracle"}
    n, extra = config.n or 8, 0
    if run.budget.limited:
        limit = run.limit()
        worst = {"sampled_tokens": config.pilot_samples * task.max_length, "oracle_calls": config.pilot_samples}
        run.require(worst, limit, f"pilot batch of {config.pilot_samples} prior samples")
        # the pilot batch measures the cost of one candidate; it is charged to the budget
        contexts = (
            [task.contexts[i % len(task.contexts)] for i in range(config.pilot_samples)]
            if task.contexts
            else [None] * config.pilot_samples
        )
        calls_before = run.oracle.calls
        sequences, tokens = _sample_prior(LMPolicy(run.prior, task), contexts, pilot_seed(run.seed))
        task.score(sequences, contexts)
        run.charge(sampled_tokens=tokens)  # charged like the candidates (no training iteration)
        pilot = {"tokens": tokens, "calls": run.oracle.calls - calls_before}
        per_candidate = {
            "sampled_tokens": pilot["tokens"] / config.pilot_samples,
            "oracle_calls": max(pilot["calls"], 1) / config.pilot_samples,
        }
        spent = run.spent()
        reserve = {"sampled_tokens": per_preference * task.max_length, "oracle_calls": per_preference}
        affordable = min(
            int((bound - spent[name] - reserve[name]) / per_candidate[name]) // grid
            for name in per_candidate
            if (bound := limit[name]) is not None
        )  # candidates per preference
        if config.n is not None:
            affordable = min(affordable, config.n * per_preference)
        n, extra = divmod(max(affordable, 0), per_preference)
        if n < 1:
            raise ConfigError(
                f"the budget {run.budget.to_dict()} pays for {max(affordable, 0)} candidates per preference at the "
                f"measured cost {per_candidate}, fewer than one per evaluation sample ({per_preference}); raise it"
            )
        outputs.update(pilot_samples=config.pilot_samples, measured_cost_per_candidate=per_candidate)
    outputs.update(
        n=n,
        samples_with_n_plus_1=extra,
        serving=f"best of n prior samples by w . r (n = {n}; the first {extra} samples of every preference get n + 1)",
    )
    return BestOfNPolicy(run, n, extra, outputs), outputs
