"""Evaluate any policy with a task's standard protocol and write the same evaluation file the baselines write.

A *policy* maps a preference vector to samples. Three kinds are supported:

* :class:`LMPolicy`: one transformers causal LM for every preference (the prior, a MORLHF model);
* :class:`PreferenceLMPolicy`: a function ``preference -> causal LM`` (Rewarded Soups merges weights per
  preference);
* any callable ``fn(preference, num_samples, seed)`` (or ``fn(preference, num_samples, seed, contexts=...)``
  for prompt-conditioned tasks) returning a list of sequences, or ``(sequences, logprobs)``.

``morbench.evaluate(policy, "morbench/QM9-v0", seeds=[0, 1, 2], out="runs/mine")`` samples
``protocol.samples_per_preference`` sequences at every preference of the task's grid for each seed, scores them
with the training oracle and the held-out judge, computes the prior's log-probabilities for the KL estimate,
and writes one run directory per seed that ``morbench score`` and the leaderboard read.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from morbench.core import Context, TokenEnv
from morbench.errors import ConfigError
from morbench.preferences import validate_preference
from morbench.runs import write_evaluation, write_run
from morbench.sampling import PolicySamples, model_device, prompt_tensors, sample_sequences
from morbench.seeding import preference_seed

__all__ = [
    "CallablePolicy",
    "LMPolicy",
    "Policy",
    "PolicySamples",
    "PreferenceLMPolicy",
    "evaluate",
    "evaluate_on_env",
    "make_evaluation_task",
    "prior_logprobs",
    "with_temperature",
]


class Policy(Protocol):
    """A policy as the protocol uses it: :meth:`sample` at one preference (``as_policy`` wraps LMs and callables)."""

    def sample(self, preference: np.ndarray, contexts: list[Context | None], seed: int) -> PolicySamples:
        """One sample per entry of ``contexts`` (None for unconditional tasks) at ``preference``, seeded by ``seed``."""


class LMPolicy:
    """The same causal LM for every preference."""

    def __init__(
        self, model: torch.nn.Module, task: TokenEnv, temperature: float | None = None, top_p: float | None = None
    ) -> None:
        self.model = model.eval()
        self.task = task
        self.temperature = temperature if temperature is not None else task.protocol.temperature
        self.top_p = top_p if top_p is not None else task.protocol.top_p

    def model_for(self, preference: np.ndarray) -> torch.nn.Module:
        """The causal LM that serves ``preference``: here the one model."""
        return self.model

    def sample(self, preference: np.ndarray, contexts: list[Context | None], seed: int) -> PolicySamples:
        """One sample per context from ``model_for(preference)`` at this policy's temperature and top-p."""
        return sample_sequences(self.model_for(preference), self.task, contexts, seed, self.temperature, self.top_p)


class PreferenceLMPolicy(LMPolicy):
    """A causal LM built per preference by ``model_for(preference)`` (e.g. an interpolation of experts)."""

    def __init__(self, model_for: Callable[[np.ndarray], torch.nn.Module], task: TokenEnv, **kwargs: Any) -> None:
        self._model_for = model_for
        self.task = task
        self.temperature = kwargs.get("temperature") or task.protocol.temperature
        self.top_p = kwargs.get("top_p") or task.protocol.top_p

    def model_for(self, preference: np.ndarray) -> torch.nn.Module:
        """The causal LM built for ``preference``, in eval mode."""
        return self._model_for(preference).eval()


class CallablePolicy:
    """Wraps ``fn(preference, num_samples, seed[, contexts])`` -> sequences or (sequences, logprobs)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.takes_contexts = "contexts" in inspect.signature(fn).parameters

    def sample(self, preference: np.ndarray, contexts: list[Context | None], seed: int) -> PolicySamples:
        """Call the function for one sample per context (it gets a copy of ``preference``).

        Raises :class:`ConfigError` unless it returns exactly that many strings (and logprobs, if any, of that
        length).
        """
        kwargs = {"contexts": contexts} if self.takes_contexts else {}
        out = self.fn(preference.copy(), len(contexts), seed, **kwargs)
        sequences, logprobs = out if isinstance(out, tuple) else (out, None)
        sequences = list(sequences)
        if len(sequences) != len(contexts) or not all(isinstance(s, str) for s in sequences):
            raise ConfigError(
                f"the policy returned {len(sequences)} items for {len(contexts)} requested samples; "
                "it must return exactly that many strings"
            )
        if logprobs is not None:
            logprobs = np.asarray(logprobs, dtype=np.float64)
            if logprobs.shape != (len(sequences),):
                raise ConfigError(f"the policy's logprobs have shape {logprobs.shape}; expected ({len(sequences)},)")
        return PolicySamples(sequences, logprobs)


def as_policy(policy: Any, task: TokenEnv) -> Policy:
    if hasattr(policy, "sample") and callable(policy.sample) and not isinstance(policy, torch.nn.Module):
        return policy
    if isinstance(policy, torch.nn.Module):
        return LMPolicy(policy, task)
    if callable(policy):
        return CallablePolicy(policy)
    raise ConfigError(f"cannot evaluate {type(policy).__name__}: pass a causal LM, a Policy or a callable")


def with_temperature(policy: Policy, temperature: float) -> Policy:
    """A copy of ``policy`` that samples at ``temperature`` (a study-only decoding override; never ranked).

    Only policies that sample from a causal LM with a ``temperature`` attribute (:class:`LMPolicy` and its
    subclasses: every baseline's policy) can be re-tempered; a callable policy cannot, and raises
    :class:`ConfigError`.
    """
    import copy

    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise ConfigError(f"temperature={temperature!r} must be a number > 0")
    if not isinstance(getattr(policy, "temperature", None), (int, float)):
        raise ConfigError(
            f"cannot decode a {type(policy).__name__} at temperature {temperature}: only causal-LM policies "
            "(morbench.evaluation.LMPolicy and its subclasses) have a temperature; evaluate it without one"
        )
    tempered = copy.copy(policy)
    tempered.temperature = float(temperature)  # type: ignore[attr-defined]
    return tempered


@torch.no_grad()
def prior_logprobs(
    prior: torch.nn.Module, task: TokenEnv, sequences: list[str], contexts: list[Context | None], batch_size: int = 256
) -> np.ndarray:
    """Log-probability of each sequence under the prior as the protocol samples it, from re-tokenized text.

    Temperature 1, special tokens other than EOS masked out; EOS is included unless the sequence filled
    ``max_length``. A batch longer than the prior's context gets NaN (no estimate). Runs on the prior's device.
    """
    device = model_device(prior)
    out = np.full(len(sequences), np.nan)
    max_positions = getattr(prior.config, "n_positions", None) or getattr(prior.config, "max_position_embeddings", None)
    ids = task.tokenizer(sequences, add_special_tokens=False)["input_ids"]
    for start in range(0, len(sequences), batch_size):
        rows = list(range(start, min(start + batch_size, len(sequences))))
        prompt_ids, prompt_mask = prompt_tensors(task, [contexts[i] for i in rows])
        bodies = [[*ids[i], task.eos_token_id] if len(ids[i]) < task.max_length else list(ids[i]) for i in rows]
        width = max(len(b) for b in bodies)
        body = torch.full((len(rows), width), task.pad_token_id, dtype=torch.long)
        body_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for j, b in enumerate(bodies):
            body[j, : len(b)] = torch.tensor(b)
            body_mask[j, : len(b)] = True
        input_ids = torch.cat([prompt_ids, body], dim=1).to(device)
        mask = torch.cat([prompt_mask, body_mask], dim=1).long().to(device)
        if max_positions is not None and input_ids.shape[1] > max_positions:
            continue  # longer than the prior's context: no estimate (NaN)
        logits = prior(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits
        p = prompt_ids.shape[1]
        scaled = logits[:, p - 1 : p - 1 + width].float()
        scaled[..., torch.as_tensor(task.forbidden_token_ids, dtype=torch.long, device=device)] = float("-inf")
        logp = torch.log_softmax(scaled, dim=-1)
        token_logp = logp.gather(2, body.to(device)[..., None]).squeeze(-1).masked_fill(~body_mask.to(device), 0.0)
        out[rows] = token_logp.sum(dim=1).cpu().numpy()
    return out


def evaluation_env_kwargs(task: TokenEnv, env_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The env kwargs of evaluation: the training kwargs, with the protocol's context split (e.g. test documents)."""
    kwargs = dict(env_kwargs or {})
    if task.protocol.context_split is not None:
        kwargs["split"] = task.protocol.context_split
    return kwargs


def make_evaluation_task(
    env_id: str, env_kwargs: dict[str, Any] | None = None, training_task: TokenEnv | None = None
) -> TokenEnv:
    """The (unwrapped) env the protocol evaluates on: ``env_id`` with the training kwargs and the protocol's split.

    The protocol's context split is e.g. the test documents. The env is a fresh one, with its own oracle:
    evaluation is not training. ``training_task`` (that env made with ``env_kwargs``, if the caller has it) saves
    making it again.
    """
    from morbench.registry import make

    kwargs = dict(env_kwargs or {})
    if training_task is None:
        task = cast(TokenEnv, make(env_id, **kwargs).unwrapped)
        if evaluation_env_kwargs(task, kwargs) == kwargs:
            return task  # made just now (fresh) and already the protocol's
        training_task = task
    return cast(TokenEnv, make(env_id, **evaluation_env_kwargs(training_task, kwargs)).unwrapped)


def evaluation_contexts(task: TokenEnv, num_samples: int, seed: int) -> list[Context | None]:
    """The contexts of one preference's samples: None for unconditional tasks, else the eval split in order."""
    if task.contexts is None:
        return [None] * num_samples
    return [task.contexts[i % len(task.contexts)] for i in range(num_samples)]


def evaluate_on_env(
    policy: Any,
    task: TokenEnv,
    seed: int,
    preferences: Sequence[Sequence[float]] | None = None,
    samples_per_preference: int | None = None,
    prior: torch.nn.Module | None = None,
    progress: bool = True,
    device: Any = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Sample and score ``policy`` at every preference; returns the evaluation record (not yet written).

    Sampling runs on the policy's models' devices and the KL estimate on the prior's; ``device`` (``cpu``,
    ``cuda``, ``cuda:N``, ``auto``; :func:`morbench.runs.resolve_device`) first moves the prior and a policy given
    as a causal LM there. Scoring stays on the CPU.

    ``temperature`` (default: the protocol's) is a study-only override of the decoding temperature
    (``morbench study``'s paper-decoding rows, :func:`with_temperature`). A record made at another temperature
    says so: its ``protocol.temperature`` is the one sampled at and ``decoding_override`` names the protocol's;
    ``morbench submit`` refuses such runs and leaderboard validation refuses a submission whose protocol
    decoding differs from the task's, so it is never ranked as a protocol result.
    """
    from morbench.models import load_prior
    from morbench.registry import spec_to_dict
    from morbench.runs import resolve_device

    target = resolve_device(device) if device is not None else None
    if target is not None and isinstance(policy, torch.nn.Module):
        policy = policy.to(target)
    policy = as_policy(policy, task)
    protocol = task.protocol.to_dict()
    override = None
    if temperature is not None and float(temperature) != float(task.protocol.temperature):
        policy = with_temperature(policy, float(temperature))
        override = {"temperature": float(temperature), "protocol_temperature": float(task.protocol.temperature)}
        protocol["temperature"] = float(temperature)  # what was sampled at: the record never claims the protocol's
    grid = task.preference_grid if preferences is None else np.asarray(preferences, dtype=np.float64)
    grid = np.asarray([validate_preference(w, task.reward_dim) for w in grid])
    n = samples_per_preference or task.protocol.samples_per_preference
    if n < 1:
        raise ConfigError(f"samples_per_preference must be >= 1, got {n}")
    prior = prior if prior is not None else load_prior(task)
    if target is not None:
        prior = prior.to(target)
    calls_before = task.oracle.calls
    entries = []
    start = time.perf_counter()
    for p, weights in enumerate(tqdm(grid, desc="evaluate", unit="pref", disable=not progress)):
        contexts = evaluation_contexts(task, n, seed)
        samples = policy.sample(weights, contexts, seed=preference_seed(seed, p))
        result = task.score(samples.sequences, contexts)
        judged = task.judge is not None and task.protocol.judges(weights)
        judge = task.judge_score(samples.sequences, contexts) if judged else None
        entries.append(
            {
                "weights": weights.tolist(),
                "sequences": samples.sequences,
                "rewards": result.rewards.tolist(),
                "valid": result.valid.tolist(),
                "reasons": result.reasons,
                "judge_rewards": judge.rewards.tolist() if judge is not None else None,
                "logprobs": samples.logprobs.tolist() if samples.logprobs is not None else None,
                "prior_logprobs": prior_logprobs(prior, task, samples.sequences, contexts).tolist(),
                "contexts": [c.key for c in contexts if c is not None] if task.contexts is not None else None,
            }
        )
    record = {
        "env": spec_to_dict(task) if task.spec is not None else {"id": type(task).__name__, "version": 0},
        "objective_names": list(task.objective_names),
        "reference_point": task.reference_point.tolist(),
        "protocol": {**protocol, "samples_per_preference": n},
        "seed": seed,
        "preferences": entries,
        "evaluation_compute": {
            "oracle_calls": task.oracle.calls - calls_before,
            "wall_seconds": time.perf_counter() - start,
        },
    }
    if override is not None:
        record["decoding_override"] = override
    return record


def evaluate(
    policy: Any,
    env_id: str,
    seeds: Sequence[int] | None = None,
    out: str | Path | None = None,
    method: str = "custom",
    config: dict[str, Any] | None = None,
    compute: dict[str, Any] | None = None,
    samples_per_preference: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    device: Any = None,
) -> list[dict[str, Any]]:
    """Run the task's standard evaluation protocol on ``policy`` for each seed.

    With ``out``, writes ``out/seed_<s>/`` run directories (``run.json`` + ``evaluation.json.gz``) that
    ``morbench score`` and ``morbench submit`` accept exactly like a baseline's. ``compute`` should describe
    what training used (``oracle_calls``, ``sampled_tokens``, ``wall_seconds``, ``gradient_steps``). ``device``
    places a causal-LM policy and the prior (see :func:`evaluate_on_env`); it is recorded in ``run.json``.
    """
    from morbench.runs import resolve_device

    task = make_evaluation_task(env_id, env_kwargs)
    seeds = list(task.protocol.seeds if seeds is None else seeds)
    records = []
    for seed in seeds:
        record = evaluate_on_env(
            policy, task, seed, samples_per_preference=samples_per_preference, progress=progress, device=device
        )
        record["method"] = method
        records.append(record)
        if out is not None:
            run_dir = Path(out) / f"seed_{seed}"
            write_evaluation(run_dir, record)
            write_run(
                run_dir,
                {
                    "status": "complete",
                    "method": method,
                    "env": record["env"],
                    "seed": seed,
                    "config": config or {},
                    "compute": compute or {},
                    "device": str(resolve_device(device)) if device is not None else None,
                },
            )
    return records
