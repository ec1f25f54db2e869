"""Batched token sampling from a causal LM with a KV cache, optionally driving a morbench vector env."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from morbench.core import Context, TokenEnv

__all__ = [
    "Generation",
    "PolicySamples",
    "bos_prompts",
    "model_device",
    "new_kv_cache",
    "prompt_tensors",
    "sample",
    "sample_for_task",
    "sample_sequences",
]


@dataclasses.dataclass
class Generation:
    """``B`` sampled continuations of at most ``T`` tokens.

    ``tokens[b, t]`` is the t-th generated token (``pad_token_id`` after the sequence ended); ``mask[b, t]`` is
    True for generated positions up to and including EOS; ``logprobs`` are those of the sampling distribution
    (temperature applied, before top-p truncation). ``prompt_ids``/``prompt_mask`` are the left-padded prompts.
    """

    tokens: torch.Tensor  # (B, T) long
    mask: torch.Tensor  # (B, T) bool
    logprobs: torch.Tensor  # (B, T) float
    prompt_ids: torch.Tensor  # (B, P) long
    prompt_mask: torch.Tensor  # (B, P) bool

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` generated tokens per row, EOS included."""
        return self.mask.sum(dim=1)

    @property
    def num_tokens(self) -> int:
        """Generated tokens over all rows, EOS included (what a budget's ``sampled_tokens`` counts)."""
        return int(self.mask.sum())

    def rows(self) -> list[list[int]]:
        """Generated ids per row, EOS included, padding removed."""
        return [row[m].tolist() for row, m in zip(self.tokens, self.mask, strict=True)]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def bos_prompts(batch_size: int, bos_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt of unconditional tasks: a single BOS token per row."""
    return torch.full((batch_size, 1), bos_token_id, dtype=torch.long), torch.ones(batch_size, 1, dtype=torch.bool)


def new_kv_cache(model: torch.nn.Module) -> tuple[str, Any]:
    """An empty ``DynamicCache`` for ``model`` and the name of the ``forward`` argument that takes it.

    The cache object is filled in place by every forward pass. transformers 5.x names that argument ``cache``
    where ``past_key_values`` is deprecated (removed in 5.40) and ``past_key_values`` where it is not yet
    renamed; the signature says which.
    """
    from transformers import DynamicCache

    inner = getattr(model, "get_base_model", lambda: model)()  # a peft model: its transformer
    parameters = inspect.signature(inner.forward).parameters
    argument = "cache" if "cache" in parameters else "past_key_values"
    return argument, DynamicCache(config=model.config)  # type: ignore[arg-type]


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    remove = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the smallest set reaching top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


@torch.inference_mode()
def sample(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    *,
    eos_token_id: int,
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    on_step: Callable[[np.ndarray], np.ndarray | None] | None = None,
    forbid_token_ids: list[int] | None = None,
) -> Generation:
    """Sample up to ``max_new_tokens`` per row with a KV cache; stop early once every row has emitted EOS.

    ``on_step(tokens)`` is called after each step with the sampled ids as a NumPy array (finished rows carry
    ``pad_token_id``); a vector env's ``step`` wrapped this way runs the env alongside generation. If it returns
    a boolean array, rows marked True are treated as finished (e.g. truncated by the env).
    ``forbid_token_ids`` get zero probability (e.g. PAD and BOS).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    device = model_device(model)
    batch = prompt_ids.shape[0]
    prompt_ids = prompt_ids.to(device)
    attention = prompt_mask.to(device=device, dtype=torch.long)
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    tokens = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((batch, max_new_tokens), dtype=torch.bool, device=device)
    logprobs = torch.zeros((batch, max_new_tokens), dtype=torch.float32, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    forbidden = torch.tensor(forbid_token_ids or [], dtype=torch.long, device=device)

    cache_argument, cache = new_kv_cache(model)
    inputs, position_ids = prompt_ids, positions
    for t in range(max_new_tokens):
        out = model(
            input_ids=inputs,
            attention_mask=attention,
            position_ids=position_ids,
            use_cache=True,
            **{cache_argument: cache},  # the model appends this step's keys and values to ``cache`` in place
        )
        logits = out.logits[:, -1, :].float() / temperature
        if forbidden.numel():
            logits[:, forbidden] = float("-inf")
        logp = torch.log_softmax(logits, dim=-1)
        probs = torch.softmax(_top_p_filter(logits, top_p) if top_p < 1.0 else logits, dim=-1)
        next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        next_ids = torch.where(finished, torch.full_like(next_ids, pad_token_id), next_ids)
        tokens[:, t] = next_ids
        mask[:, t] = ~finished
        logprobs[:, t] = torch.where(finished, 0.0, logp.gather(1, next_ids[:, None]).squeeze(1))
        finished |= next_ids == eos_token_id
        if on_step is not None:
            ended = on_step(next_ids.cpu().numpy())
            if ended is not None:
                finished |= torch.as_tensor(ended, device=device)
        if bool(finished.all()):
            break
        inputs = next_ids[:, None]
        attention = torch.cat([attention, torch.ones((batch, 1), dtype=attention.dtype, device=device)], dim=1)
        position_ids = position_ids[:, -1:] + 1
    steps = t + 1 if max_new_tokens else 0
    return Generation(tokens[:, :steps], mask[:, :steps], logprobs[:, :steps], prompt_ids, prompt_mask.to(device))


@dataclasses.dataclass
class PolicySamples:
    """A policy's samples at one preference: the decoded sequences, and what the sampler knows about them."""

    sequences: list[str]
    logprobs: np.ndarray | None = None  # sequence log-probability under the sampling distribution
    sampled_tokens: int | None = None  # tokens generated (EOS included), where the sampler knows it


def prompt_tensors(task: TokenEnv, contexts: list[Context | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask for ``contexts`` (a single BOS per row for unconditional tasks)."""
    if contexts[0] is None:
        return bos_prompts(len(contexts), task.bos_token_id)
    ids = torch.as_tensor(task.prompt_array(contexts))
    lengths = torch.tensor([min(len(c.prompt_ids), task.max_prompt_length) for c in contexts if c is not None])
    return ids, torch.arange(ids.shape[1])[None, :] >= (ids.shape[1] - lengths)[:, None]


def sample_for_task(
    model: torch.nn.Module,
    task: TokenEnv,
    contexts: list[Context | None],
    generator: torch.Generator,
    temperature: float = 1.0,
    top_p: float = 1.0,
    prefixes: torch.Tensor | None = None,
    forbid_token_ids: Sequence[int] | None = None,
) -> Generation:
    """One continuation per context with the task's prompts, length, EOS and padding (:func:`sample`).

    ``prefixes`` (rows of extra token ids, e.g. reward tokens) follow each row's prompt; ``forbid_token_ids``
    (default: the task's forbidden ids, every special token but EOS) are never sampled.
    """
    prompt_ids, prompt_mask = prompt_tensors(task, contexts)
    if prefixes is not None:
        prompt_ids = torch.cat([prompt_ids, prefixes], dim=1)
        prompt_mask = torch.cat([prompt_mask, torch.ones_like(prefixes, dtype=torch.bool)], dim=1)
    return sample(
        model,
        prompt_ids,
        prompt_mask,
        task.max_length,
        eos_token_id=task.eos_token_id,
        pad_token_id=task.pad_token_id,
        temperature=temperature,
        top_p=top_p,
        generator=generator,
        forbid_token_ids=list(task.forbidden_token_ids if forbid_token_ids is None else forbid_token_ids),
    )


def sample_sequences(
    model: torch.nn.Module,
    task: TokenEnv,
    contexts: list[Context | None],
    seed: int,
    temperature: float,
    top_p: float,
    batch_size: int = 256,
    prefix_ids: Sequence[int] = (),
    forbid_token_ids: Sequence[int] | None = None,
) -> PolicySamples:
    """Sample one sequence per context from a causal LM (optionally after extra ``prefix_ids``).

    Special tokens other than EOS are masked out (the evaluation protocol), so every sample decodes to text.
    The sampling generator lives on the model's device (a CUDA model samples with a CUDA generator).
    """
    generator = torch.Generator(device=model_device(model)).manual_seed(seed)
    sequences: list[str] = []
    logprobs: list[float] = []
    tokens = 0
    for start in range(0, len(contexts), batch_size):
        chunk = contexts[start : start + batch_size]
        extra = torch.tensor(list(prefix_ids), dtype=torch.long).expand(len(chunk), -1) if prefix_ids else None
        generation = sample_for_task(model, task, chunk, generator, temperature, top_p, extra, forbid_token_ids)
        decoded, _ = task.decode_token_ids(generation.rows())
        sequences.extend(decoded)
        logprobs.extend((generation.logprobs * generation.mask).sum(dim=1).tolist())
        tokens += generation.num_tokens
    return PolicySamples(sequences, np.asarray(logprobs), tokens)
