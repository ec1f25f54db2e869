"""Shared machinery of the baselines: token-level PPO (rollout, GAE, clipped update), weight merging, budgets.

Read top to bottom: :class:`PPOConfig` -> :class:`PolicyValueModel` -> :func:`collect_rollout` ->
:func:`ppo_update` -> :class:`PPOLearner` (one learner = one policy trained on one scalar reward) ->
:func:`merge_state_dicts`, then the helpers several methods share (saving policies, counting their iterations).
The training schedule's loop, checkpointing and compute accounting live in ``baselines/training.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from morbench.errors import ConfigError, MorbenchError
from morbench.sampling import Generation, model_device, prompt_tensors, sample
from morbench.vector import TokenVectorEnv

__all__ = [
    "PRECISIONS",
    "MergeError",
    "MinibatchLoss",
    "PPOConfig",
    "PPOLearner",
    "PPOMethodConfig",
    "PolicyValueModel",
    "Rollout",
    "collect_rollout",
    "identity_config",
    "iterations_per",
    "merge_state_dicts",
    "minibatch_loss",
    "ppo_update",
    "precision_context",
    "save_policies",
    "token_logprobs",
]

PRECISIONS = ("fp32", "bf16")  # PPOConfig.precision: the forward passes' matmul precision (see precision_context)


@dataclasses.dataclass
class PPOConfig:
    """Hyperparameters of the token-level PPO learner shared by MORLHF, Rewarded Soups and IterativeRS.

    Defaults follow the IterativeRS reference code (TRL PPO) except the learning rate, scaled up for the small
    CPU-sized priors, and the sampling temperature, 1.0 so that the trained policy is exactly the evaluated one.
    """

    batch_size: int = dataclasses.field(default=128, metadata={"help": "sequences sampled per PPO iteration"})
    minibatch_size: int = dataclasses.field(default=32, metadata={"help": "sequences per gradient step"})
    ppo_epochs: int = dataclasses.field(default=4, metadata={"help": "passes over each rollout batch"})
    learning_rate: float = dataclasses.field(default=5e-5, metadata={"help": "Adam learning rate"})
    weight_decay: float = dataclasses.field(default=0.01, metadata={"help": "AdamW weight decay"})
    kl_coef: float = dataclasses.field(default=0.05, metadata={"help": "beta of the per-token KL penalty to the prior"})
    clip_range: float = dataclasses.field(default=0.2, metadata={"help": "PPO ratio clipping epsilon"})
    value_clip_range: float = dataclasses.field(default=0.2, metadata={"help": "value-function clipping epsilon"})
    vf_coef: float = dataclasses.field(default=0.1, metadata={"help": "weight of the value loss"})
    gamma: float = dataclasses.field(default=1.0, metadata={"help": "discount over tokens"})
    gae_lambda: float = dataclasses.field(default=0.95, metadata={"help": "GAE lambda"})
    max_grad_norm: float = dataclasses.field(default=1.0, metadata={"help": "gradient clipping norm"})
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "sampling temperature during training"})
    whiten_advantages: bool = dataclasses.field(default=True, metadata={"help": "normalise advantages per batch"})
    group_by_length: bool = dataclasses.field(
        default=True,
        metadata={"help": "minibatches of similar-length sequences, trimmed to their longest (less padding)"},
    )
    mask_special_tokens: bool = dataclasses.field(
        default=True, metadata={"help": "never sample special tokens other than EOS (as the evaluation protocol)"}
    )
    lora_rank: int = dataclasses.field(
        default=0,
        metadata={"help": "0: full fine-tuning; r > 0: the policy is LoRA adapters of rank r on the frozen prior"},
    )
    lora_alpha: float | None = dataclasses.field(
        default=None, metadata={"help": "LoRA scaling numerator (delta W = alpha / r * B A); None = 2 * lora_rank"}
    )
    lora_target_modules: list[str] | None = dataclasses.field(
        default=None,
        metadata={"help": "modules LoRA adapts; None = every linear layer of the blocks (GPT-2, Llama defaults)"},
    )
    precision: str = dataclasses.field(
        default="fp32",
        metadata={
            "help": "'fp32', or 'bf16': bf16 autocast for the policy's and the prior's full-sequence passes (rollout "
            "log-probabilities and update; sampling stays fp32); log-probabilities, KL, values, advantages, "
            "losses, weights and AdamW stay fp32"
        },
    )

    def __post_init__(self) -> None:
        positive = ("batch_size", "minibatch_size", "ppo_epochs", "learning_rate", "temperature", "max_grad_norm")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.batch_size % self.minibatch_size:
            raise ConfigError(
                f"PPOConfig.batch_size ({self.batch_size}) must be a multiple of minibatch_size "
                f"({self.minibatch_size}); e.g. set minibatch_size={math.gcd(self.batch_size, self.minibatch_size)}"
            )
        for name in ("kl_coef", "clip_range", "value_clip_range", "vf_coef", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"PPOConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ConfigError(f"PPOConfig.gamma and gae_lambda must be in [0, 1], got {self.gamma}, {self.gae_lambda}")
        if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
            raise ConfigError(
                f"PPOConfig.lora_rank must be an integer >= 0 (0: full fine-tuning), got {self.lora_rank!r}"
            )
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise ConfigError(f"PPOConfig.lora_alpha must be > 0 (or None: 2 * lora_rank), got {self.lora_alpha!r}")
        if self.lora_target_modules is not None and (
            not self.lora_target_modules or not all(isinstance(t, str) and t for t in self.lora_target_modules)
        ):
            raise ConfigError(
                f"PPOConfig.lora_target_modules must be a non-empty list of module names or None (the "
                f"architecture's default), got {self.lora_target_modules!r}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"PPOConfig.precision must be one of {list(PRECISIONS)} ('fp32': full precision, the results of "
                f"every run made before the option existed), got {self.precision!r}"
            )

    @property
    def scaling_alpha(self) -> float:
        """LoRA's alpha (``delta W = alpha / r * B A``)."""
        return float(self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank)


def identity_config(config: Any) -> Any:
    """A config dict as the run identity records it.

    The LoRA fields of a full fine-tuning ``ppo``, its ``precision`` when it is ``"fp32"``, and Rewards-in-Context's
    ``online_steps`` when it is None (epochs over the data), are left out, so the identity of every run made
    before those options existed is unchanged.
    """
    if isinstance(config, dict):
        out = {key: identity_config(value) for key, value in config.items()}
        if "lora_rank" in out and not out["lora_rank"]:
            out = {key: value for key, value in out.items() if not key.startswith("lora_")}
        if "lora_rank" in config and out.get("precision") == "fp32":  # a PPOConfig's dict
            out.pop("precision")
        if "online_epochs" in config and out.get("online_steps", 0) is None:  # a RewardsInContextConfig's dict
            out.pop("online_steps")
        return out
    return config


def precision_context(config: PPOConfig, device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """The context the PPO forward passes run in: nothing for ``"fp32"``, bf16 autocast on ``device``'s type.

    Under autocast the matmuls (linear layers, attention) run in bf16 with fp32 weights; what reads their outputs
    casts back: :func:`token_logprobs` takes the log-softmax of fp32 logits and :class:`PolicyValueModel` runs its
    value head in fp32. Every pass whose log-probabilities PPO compares (the rollout's policy and prior passes,
    every update pass) runs in this same context, so a sequence's old and new log-probabilities come from one
    numerical path: the ratio of the first minibatch is 1 as in fp32, and the KL penalty compares like with like.
    Each pass enters its own context, left before ``backward`` and the optimizer step: autocast caches the bf16
    copies of the weights until its region ends, so one region around a whole update would run every matmul of
    every minibatch with the weights of the first pass (the ratios barely move, the clipping hardly acts).

    On the CPU, attention runs PyTorch's composed (math) kernel under bf16: the fused CPU kernel's bf16 backward
    is about 8x slower than its fp32 one (measured on an avx512_bf16 CPU), the composed one runs bf16 matmuls.
    """
    if config.precision == "fp32":
        return contextlib.nullcontext()
    return _bf16_autocast(torch.device(device).type)


@contextlib.contextmanager
def _bf16_autocast(device_type: str) -> Iterator[None]:
    attention = sdpa_kernel(SDPBackend.MATH) if device_type == "cpu" else contextlib.nullcontext()
    with torch.autocast(device_type, dtype=torch.bfloat16), attention:
        yield


class PolicyValueModel(nn.Module):
    """A causal LM (the policy) with a scalar value head on its last hidden state (shared trunk)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(int(lm.config.hidden_size), 1)  # type: ignore[union-attr,arg-type]
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LM's logits ``(B, L, V)`` and the value of every position ``(B, L)``.

        Position ids count attended tokens only, so left padding does not shift them.
        """
        positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        out = self.lm(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, output_hidden_states=True
        )
        hidden = out.hidden_states[-1]
        if torch.is_autocast_enabled(hidden.device.type):  # PPOConfig.precision="bf16": the value head in fp32
            with torch.autocast(hidden.device.type, enabled=False):
                return out.logits, self.value_head(hidden.float()).squeeze(-1)
        return out.logits, self.value_head(hidden).squeeze(-1)

    @property
    def lora(self) -> bool:
        """Whether the policy is LoRA adapters on a frozen base (a peft model)."""
        return hasattr(self.lm, "peft_config")

    def policy_state(self) -> dict[str, torch.Tensor]:
        """The LM weights only (what Rewarded Soups and IterativeRS merge); a LoRA policy's adapter state."""
        if self.lora:
            from morbench.baselines.lora import adapter_state

            return adapter_state(self.lm)
        return {k: v.detach().clone() for k, v in self.lm.state_dict().items()}


def token_logprobs(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    prompt_length: int,
    temperature: float,
    forbidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-probabilities of the generated ``tokens`` (B, T) given full-sequence ``logits`` (B, P+T, V).

    ``forbidden`` token ids get probability zero (the distribution the sampler actually used).
    """
    steps = tokens.shape[1]
    scaled = logits[:, prompt_length - 1 : prompt_length - 1 + steps].float() / temperature
    if forbidden is not None and forbidden.numel():
        scaled = scaled.index_fill(-1, forbidden, float("-inf"))
    gathered = torch.log_softmax(scaled, dim=-1).gather(2, tokens[..., None]).squeeze(-1)
    return gathered.masked_fill(torch.isinf(gathered), 0.0)  # padding after EOS may be a forbidden id


@dataclasses.dataclass
class Rollout:
    """One batch of sampled sequences with everything PPO needs (all tensors (B, T) unless noted)."""

    generation: Generation
    input_ids: torch.Tensor  # (B, P+T) prompt + generated tokens
    attention_mask: torch.Tensor  # (B, P+T)
    logprobs: torch.Tensor  # policy log-probs at sampling time
    ref_logprobs: torch.Tensor  # prior log-probs
    values: torch.Tensor
    rewards: torch.Tensor  # per-token: -kl_coef * (logp - ref_logp), plus the score at the last token
    advantages: torch.Tensor
    returns: torch.Tensor
    scores: np.ndarray  # (B,) scalarized sequence score
    reward_vectors: np.ndarray  # (B, K) the env's reward vectors
    valid: np.ndarray  # (B,) bool
    forbidden: torch.Tensor  # token ids the sampler masked out

    @property
    def mask(self) -> torch.Tensor:
        """True at the generated positions, up to and including EOS."""
        return self.generation.mask


@torch.no_grad()
def collect_rollout(
    model: PolicyValueModel,
    ref_model: nn.Module,
    venv: TokenVectorEnv,
    scalarize: Callable[[np.ndarray], np.ndarray],
    config: PPOConfig,
    generator: torch.Generator,
    env_seed: int,
) -> Rollout:
    """Sample one batch by driving the vector env token by token, then compute PPO's targets.

    ``scalarize`` maps the env's ``(B, K)`` reward vectors to ``(B,)`` scores (``w @ r`` for MORLHF, one
    column for a single-objective expert).
    """
    if venv.autoreset_mode != AutoresetMode.DISABLED:
        raise ConfigError("collect_rollout needs a vector env made with autoreset_mode=DISABLED")
    if venv.num_envs != config.batch_size:
        raise ConfigError(f"vector env has {venv.num_envs} sub-envs but PPOConfig.batch_size is {config.batch_size}")
    model.eval()
    venv.reset(seed=env_seed)
    prompt_ids, prompt_mask = prompt_tensors(venv.env, venv.current_contexts)
    reward_vectors = np.zeros((venv.num_envs, venv.reward_dim), dtype=np.float32)
    valid = np.zeros(venv.num_envs, dtype=bool)

    def on_step(tokens: np.ndarray) -> np.ndarray:
        _, rewards, terminated, truncated, info = venv.step(tokens)
        done = terminated | truncated
        if done.any() and not venv.defer_scoring:
            reward_vectors[done] = rewards[done]
            valid[done] = info["valid"][done]
        return done

    forbidden = _forbidden(venv, config).to(generator.device)
    generation = sample(  # in fp32 whatever config.precision: the KV-cached steps' small matmuls gain nothing
        model.lm,
        prompt_ids,
        prompt_mask,
        venv.max_length,
        eos_token_id=venv.eos_token_id,
        pad_token_id=venv.pad_token_id,
        temperature=config.temperature,
        generator=generator,
        on_step=on_step,
        forbid_token_ids=forbidden.tolist(),
    )
    if not venv.finished.all():
        raise MorbenchError("a rollout ended before every sequence finished; the env and sampler disagree")
    if venv.defer_scoring:  # the whole batch in one oracle call
        reward_vectors, info = venv.score_finished()
        valid = np.asarray(info["valid"], dtype=bool)
    input_ids = torch.cat([generation.prompt_ids, generation.tokens], dim=1)
    attention_mask = torch.cat([generation.prompt_mask, generation.mask], dim=1).long()
    prompt_length = generation.prompt_ids.shape[1]
    with precision_context(config, input_ids.device):  # the update's numerical path (precision_context)
        logits, values = model(input_ids, attention_mask)
    logprobs = token_logprobs(logits, generation.tokens, prompt_length, config.temperature, forbidden)
    with precision_context(config, input_ids.device):
        ref_logits = ref_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=(attention_mask.cumsum(1) - 1).clamp(min=0),
        ).logits
    ref_logprobs = token_logprobs(ref_logits, generation.tokens, prompt_length, config.temperature, forbidden)
    values = values[:, prompt_length - 1 : prompt_length - 1 + generation.tokens.shape[1]]

    mask = generation.mask.float()
    scores = scalarize(reward_vectors).astype(np.float32)
    rewards = -config.kl_coef * (logprobs - ref_logprobs) * mask
    last = (generation.lengths - 1).clamp(min=0)
    rewards[torch.arange(len(last), device=last.device), last] += torch.from_numpy(scores).to(rewards.device)
    advantages, returns = _gae(rewards, values * mask, mask, config.gamma, config.gae_lambda)
    if config.whiten_advantages:
        advantages = _whiten(advantages, mask)
    return Rollout(
        generation,
        input_ids,
        attention_mask,
        logprobs,
        ref_logprobs,
        values * mask,
        rewards,
        advantages,
        returns,
        scores,
        reward_vectors,
        valid,
        forbidden,
    )


def _forbidden(venv: TokenVectorEnv, config: PPOConfig) -> torch.Tensor:
    ids = venv.env.forbidden_token_ids if config.mask_special_tokens else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(ids, dtype=torch.long)


def _gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = (
            values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros(rewards.shape[0], device=rewards.device)
        )
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def _whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    n = mask.sum().clamp(min=1)
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / n
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def ppo_update(
    model: PolicyValueModel,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    config: PPOConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """``ppo_epochs`` passes of clipped-objective minibatch updates over one rollout; returns mean statistics."""
    model.train()
    batch = rollout.input_ids.shape[0]
    lengths = rollout.generation.lengths
    stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "approx_kl": [], "clip_fraction": []}
    for _ in range(config.ppo_epochs):
        order = torch.randperm(batch, generator=generator, device=generator.device)
        if config.group_by_length:  # sort the shuffled batch by length, then shuffle the minibatches' order
            order = order[torch.argsort(lengths[order], stable=True)]
        minibatches = list(order.split(config.minibatch_size))
        if config.group_by_length:
            minibatches = [
                minibatches[i] for i in torch.randperm(len(minibatches), generator=generator, device=generator.device)
            ]
        for idx in minibatches:
            terms = minibatch_loss(model, rollout, idx, config)
            mask, n = terms.mask, terms.mask.sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()

            with torch.no_grad():
                stats["policy_loss"].append(float((terms.policy_loss * mask).sum() / n))
                stats["value_loss"].append(float((terms.value_loss * mask).sum() / n))
                stats["approx_kl"].append(float((0.5 * terms.log_ratio**2 * mask).sum() / n))
                clipped = ((terms.ratio - 1).abs() > config.clip_range).float()
                stats["clip_fraction"].append(float((clipped * mask).sum() / n))
    model.eval()
    return {k: float(np.mean(v)) for k, v in stats.items()}


class MinibatchLoss(NamedTuple):
    """PPO's loss on one minibatch and its per-token terms (``(b, steps)``: trimmed to its longest sequence)."""

    loss: torch.Tensor  # scalar: mean over the generated tokens of policy_loss + vf_coef * value_loss
    mask: torch.Tensor  # 1.0 at generated tokens
    new_logprobs: torch.Tensor
    log_ratio: torch.Tensor  # new - old log-probabilities (0 at padding)
    ratio: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor


def minibatch_loss(model: PolicyValueModel, rollout: Rollout, idx: torch.Tensor, config: PPOConfig) -> MinibatchLoss:
    """PPO's clipped losses on the sequences ``idx`` of ``rollout``, with the policy's current weights.

    Only the forward pass runs in ``config.precision`` (:func:`precision_context`); the log-probabilities, the
    ratio, the advantages, the value targets and both losses are fp32.
    """
    prompt_length = rollout.generation.prompt_ids.shape[1]
    steps = int(rollout.generation.lengths[idx].max())  # trim the padding every sequence of this minibatch shares
    mask = rollout.mask[idx, :steps].float()
    n = mask.sum().clamp(min=1)
    with precision_context(config, rollout.input_ids.device):
        logits, values = model(
            rollout.input_ids[idx, : prompt_length + steps], rollout.attention_mask[idx, : prompt_length + steps]
        )
    new_logprobs = token_logprobs(
        logits, rollout.generation.tokens[idx, :steps], prompt_length, config.temperature, rollout.forbidden
    )
    values = values[:, prompt_length - 1 : prompt_length - 1 + steps]

    log_ratio = (new_logprobs - rollout.logprobs[idx, :steps]) * mask
    ratio = torch.exp(log_ratio)
    advantages = rollout.advantages[idx, :steps]
    policy_loss = torch.max(
        -advantages * ratio, -advantages * ratio.clamp(1 - config.clip_range, 1 + config.clip_range)
    )
    old_values = rollout.values[idx, :steps]
    clipped_values = old_values + (values - old_values).clamp(-config.value_clip_range, config.value_clip_range)
    returns = rollout.returns[idx, :steps]
    value_loss = 0.5 * torch.max((values - returns) ** 2, (clipped_values - returns) ** 2)
    loss = ((policy_loss + config.vf_coef * value_loss) * mask).sum() / n
    return MinibatchLoss(loss, mask, new_logprobs, log_ratio, ratio, policy_loss, value_loss)


class PPOLearner:
    """One policy (with its value head and optimizer) trained by PPO on one scalarization of the env's rewards.

    The KL reference is always the frozen *original* prior, whatever the policy was restarted from. Everything
    lives on the prior's device (its generator too); with ``config.lora_rank > 0`` the policy is LoRA adapters on
    a frozen copy of ``prior`` (:mod:`morbench.baselines.lora`) and only they and the value head are trained.
    """

    def __init__(self, prior: nn.Module, ref_model: nn.Module, venv: TokenVectorEnv, config: PPOConfig, seed: int):
        self.config = config
        self.venv = venv
        self.ref_model = ref_model.eval()
        for parameter in self.ref_model.parameters():
            parameter.requires_grad_(False)
        self.device = model_device(prior)
        self.template = prior  # what a restart copies (the prior's architecture)
        self.seed = seed
        self.iterations = 0
        self.gradient_steps = 0
        self.sampled_tokens = 0
        self.model = PolicyValueModel(self._policy_lm(prior)).to(self.device)
        if not config.lora_rank:
            self.model.requires_grad_(True)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.reset_optimizer()

    def _policy_lm(self, base: nn.Module, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """A trainable copy of ``base`` (holding ``state`` if given): the LM itself, or fresh LoRA adapters on it."""
        import copy

        lm = copy.deepcopy(base)
        if state is not None:
            lm.load_state_dict(state, strict=True)
        if not self.config.lora_rank:
            return lm
        from morbench.baselines import lora

        lm.requires_grad_(False)
        targets = lora.target_modules(lm, self.config.lora_target_modules)
        seed = lora.adapter_seed(self.seed, self.iterations)
        return lora.attach(lm, self.config.lora_rank, self.config.scaling_alpha, targets, seed)

    def reset_optimizer(self) -> None:
        """Replace the optimizer by a fresh AdamW (no moments): at the start, and when a merge restarts the policy."""
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )

    def load_policy(self, lm_state: dict[str, torch.Tensor]) -> None:
        """Restart the policy from merged weights (the value head and optimizer are handled by the caller).

        A LoRA policy folds them into a new frozen base and starts fresh adapters on it (seeded by the learner's
        seed and iteration count, so a resumed run draws the same ones).
        """
        if self.model.lora:
            self.model.lm = self._policy_lm(self.template, lm_state)
            return
        self.model.lm.load_state_dict(lm_state, strict=True)

    def base_state(self) -> dict[str, torch.Tensor] | None:
        """The frozen base weights a LoRA policy's adapters apply to (None for full fine-tuning)."""
        if not self.model.lora:
            return None
        from morbench.baselines.lora import base_state

        return base_state(self.model.lm)

    def iteration(self, scalarize: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
        """One PPO iteration: a rollout of ``batch_size`` sequences and ``ppo_epochs`` of updates."""
        env_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator, device=self.generator.device))
        rollout = collect_rollout(
            self.model, self.ref_model, self.venv, scalarize, self.config, self.generator, env_seed
        )
        stats = ppo_update(self.model, self.optimizer, rollout, self.config, self.generator)
        self.iterations += 1
        gradient_steps = self.config.ppo_epochs * (self.config.batch_size // self.config.minibatch_size)
        self.gradient_steps += gradient_steps
        tokens = rollout.generation.num_tokens
        self.sampled_tokens += tokens
        kl = float(((rollout.logprobs - rollout.ref_logprobs) * rollout.mask).sum(1).mean())
        return {
            **stats,
            "score_mean": float(rollout.scores.mean()),
            "reward_mean": rollout.reward_vectors.mean(axis=0).tolist(),
            "valid_fraction": float(rollout.valid.mean()),
            "kl_to_prior": kl,
            "tokens": tokens,
            "gradient_steps": gradient_steps,
        }

    # -- checkpoint state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a checkpoint needs to resume this learner exactly: weights, optimizer, generator, counters."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "counters": {
                "iterations": self.iterations,
                "gradient_steps": self.gradient_steps,
                "sampled_tokens": self.sampled_tokens,
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore the learner from a :meth:`state` record (in place)."""
        self.model.load_state_dict(state["model"], strict=True)
        self.reset_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        for key, value in state["counters"].items():
            setattr(self, key, int(value))


class MergeError(MorbenchError, ValueError):
    """State dicts cannot be merged: keys, shapes or dtypes differ, or the weights are not a preference."""


def merge_state_dicts(
    states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float] | np.ndarray
) -> dict[str, torch.Tensor]:
    """``sum_k weights[k] * states[k]`` key by key, with a strict check that every state has the same keys.

    A weight of exactly 1 on one state returns a bit-exact copy of it (no floating-point round trip).
    """
    if len(states) != len(weights) or not states:
        raise MergeError(f"got {len(states)} state dicts but {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if np.any(w < 0) or abs(w.sum() - 1) > 1e-6:
        raise MergeError(f"merge weights {w.tolist()} must be non-negative and sum to 1")
    keys = set(states[0])
    for i, state in enumerate(states[1:], 1):
        if set(state) != keys:
            missing, extra = sorted(keys - set(state)), sorted(set(state) - keys)
            raise MergeError(f"state dict {i} does not match state dict 0: missing {missing[:5]}, extra {extra[:5]}")
        for key in keys:
            if state[key].shape != states[0][key].shape:
                raise MergeError(f"{key}: shape {tuple(state[key].shape)} != {tuple(states[0][key].shape)}")
    from morbench.baselines.lora import is_adapter_state

    if any(is_adapter_state(state) for state in states):
        raise MergeError(
            "these are LoRA adapter states: averaging A and B separately is not their weight-space merge; "
            "use baselines.lora.merge_adapters (W0 + sum_k w_k B_k A_k)"
        )
    one_hot = np.flatnonzero(w == 1.0)
    if one_hot.size == 1:
        return {key: value.detach().clone() for key, value in states[int(one_hot[0])].items()}
    merged = {}
    for key, first in states[0].items():
        if not torch.is_floating_point(first):
            merged[key] = first.clone()  # integer buffers (e.g. masks) are identical by construction
            continue
        total = torch.zeros_like(first, dtype=torch.float64)
        for weight, state in zip(w, states, strict=True):
            total += float(weight) * state[key].to(total.device).double()
        merged[key] = total.to(first.dtype)
    return merged


# -- what several methods share ------------------------------------------------------------------------------------
@dataclasses.dataclass
class PPOMethodConfig:
    """What every PPO-trained method's config has (subclasses add their own fields and may restate a default)."""

    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    iterations: int = dataclasses.field(
        default=20, metadata={"help": "at most this many PPO iterations per policy (a budget may stop it earlier)"}
    )
    checkpoint_every: int = dataclasses.field(default=5, metadata={"help": "PPO iterations between checkpoints"})

    def __post_init__(self) -> None:
        if isinstance(self.ppo, dict):
            self.ppo = PPOConfig(**self.ppo)
        if self.iterations < 1 or self.checkpoint_every < 1:
            raise ConfigError(f"{type(self).__name__}.iterations and checkpoint_every must be >= 1")


def save_policies(run: Any, states: dict[str, dict[str, torch.Tensor]], folder: str) -> dict[str, str]:
    """Write each policy's weights as a transformers folder ``<out>/<folder>/<name>`` (safetensors).

    A LoRA adapter state is written as a peft adapter folder instead (:func:`morbench.baselines.lora.save_adapter`:
    ``adapter_model.safetensors`` + ``adapter_config.json``), the adapters only: the base they apply to is the
    task's prior unless the run's outputs name a saved ``base`` folder. Returns the run-relative paths by name (the
    run's ``outputs`` record).
    """
    from morbench.baselines.lora import is_adapter_state, save_adapter

    paths = {}
    for name, state in states.items():
        if is_adapter_state(state):
            save_adapter(state, run.out / folder / name, base_model=run.env_id)
        else:
            run.policy_from_state(state).save_pretrained(run.out / folder / name, safe_serialization=True)
        paths[name] = f"{folder}/{name}"
    return paths


def iterations_per(run: Any, tag: str, names: Sequence[str]) -> dict[str, int]:
    """PPO iterations each policy ran, from the learning curve (they depend on the tokens actually sampled)."""
    return {name: sum(1 for entry in run.curve if entry.get(tag) == name) for name in names}
