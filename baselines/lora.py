"""LoRA experts through ``peft``: adapters on a frozen base, exact weight-space merges, adapter folders.

With ``PPOConfig.lora_rank = r > 0`` a PPO policy is the frozen base ``W0`` plus, in every targeted linear layer,
a trainable low-rank update ``s * B A`` (``A``: r x in, ``B``: out x r, ``s = lora_alpha / r``); the value head
stays a small full module. This module holds what the methods do with such policies:

* :func:`attach`: fresh adapters on a base (``A`` drawn from a seeded generator, ``B = 0``: the policy starts
  exactly at its base), never touching torch's global random state;
* :func:`adapter_state`: the canonical *adapter state* of a policy, peft's saved keys
  (``base_model.model.<module>.lora_A.weight`` / ``...lora_B.weight``) with the scaling folded into ``B``, so
  that ``delta W = B A`` needs no config;
* :func:`merge_adapters`: ``W0 + sum_i l_i B_i A_i`` as a plain transformers model. It is peft's
  ``add_weighted_adapter(..., combination_type="cat")``: the adapters are concatenated along the rank
  (``A = [l_1 A_1; ...; l_K A_K]``, ``B = [B_1 ... B_K]``) so ``B A = sum_i l_i B_i A_i`` exactly; peft's
  ``"linear"`` type averages ``A`` and ``B`` separately, which gives ``(sum l_i B_i)(sum l_i A_i)``, a different
  (and wrong) model whenever the experts differ. ``tests/baselines/test_lora.py`` checks both against the merge
  of the experts' full weights.
* :func:`save_adapter`: a peft adapter folder (``adapter_model.safetensors`` + ``adapter_config.json`` with
  ``lora_alpha = r``, the scaling being folded into ``B``): ``peft.PeftModel.from_pretrained(base, folder)``
  loads it, and :mod:`morbench.serving` rebuilds it from safetensors alone.

IterativeRS restarts (``PPOLearner.load_policy``) *fold* the merge into a new base: the merged full weights
become the base of every expert of the next round, each with fresh adapters; the KL reference stays the original
prior. The final experts are adapters on the base of the last round, saved with that base.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from morbench.errors import ConfigError, MissingDependencyError

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_FILE",
    "DEFAULT_TARGET_MODULES",
    "adapter_seed",
    "adapter_state",
    "attach",
    "base_state",
    "is_adapter_state",
    "merge_adapters",
    "save_adapter",
    "target_modules",
]

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PREFIX = "base_model.model."  # peft's prefix of a causal LM's modules in its saved keys
A_SUFFIX, B_SUFFIX = ".lora_A.weight", ".lora_B.weight"
# every linear layer of the transformer blocks (attention and MLP); embeddings and the LM head stay frozen
DEFAULT_TARGET_MODULES = {
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def _peft() -> Any:
    try:
        import peft
    except ImportError:  # pragma: no cover - peft is in the test extra
        raise MissingDependencyError(
            "LoRA experts (ppo.lora_rank > 0, or a saved LoRA adapter) need peft: pip install 'morbench[lora]'"
        ) from None
    return peft


def target_modules(model: nn.Module, requested: Sequence[str] | None) -> list[str]:
    """The module names LoRA adapts: ``requested``, or the default of the model's architecture.

    Every name must match a module of ``model`` (peft's rule: the full name, or its last components).
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if requested is None:
        if model_type in DEFAULT_TARGET_MODULES:
            return list(DEFAULT_TARGET_MODULES[model_type])
        mapping = _peft().utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
        if model_type in mapping:
            return list(mapping[model_type])
        raise ConfigError(
            f"no default LoRA target modules for a {model_type!r} model; name them, e.g. "
            '--set ppo.lora_target_modules=\'["q_proj", "v_proj"]\''
        )
    names = [name for name, _ in model.named_modules()]
    unmatched = [t for t in requested if not any(n == t or n.endswith("." + t) for n in names)]
    if unmatched or not requested:
        raise ConfigError(
            f"ppo.lora_target_modules {list(requested)}: {unmatched or 'empty'} match no module of the "
            f"{model_type} prior; its linear layers are e.g. {sorted({n.rsplit('.', 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear) or type(m).__name__ == 'Conv1D'})[:8]}"
        )
    return list(requested)


def _lora_layers(model: nn.Module) -> list[tuple[str, Any]]:
    layer_type = _peft().tuners.lora.LoraLayer
    return [(name, module) for name, module in model.named_modules() if isinstance(module, layer_type)]


def _quiet_rng(device: torch.device) -> Any:
    """Isolate torch's global generators (peft draws its own init, which :func:`attach` then replaces)."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


def attach(model: nn.Module, rank: int, alpha: float, targets: Sequence[str], seed: int) -> nn.Module:
    """Wrap ``model`` (in place) as a peft model with fresh adapters: ``A`` from a generator seeded by ``seed``
    (peft's Kaiming-uniform rule), ``B = 0``. Only the adapters are trainable."""
    peft = _peft()
    device = next(model.parameters()).device
    config = peft.LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"
    )
    with warnings.catch_warnings(), _quiet_rng(device):
        warnings.simplefilter("ignore")  # GPT-2's Conv1D: peft notes that it sets fan_in_fan_out itself
        wrapped = peft.get_peft_model(model, config)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for _, layer in _lora_layers(wrapped):
            a = layer.lora_A["default"].weight
            fresh = torch.empty(a.shape, dtype=a.dtype)
            nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
            a.copy_(fresh)
            layer.lora_B["default"].weight.zero_()
    return wrapped


def adapter_seed(seed: int, iterations: int) -> int:
    """The seed of the adapters a learner attaches after ``iterations`` PPO iterations (at start or a restart)."""
    return int(np.random.SeedSequence([int(seed), int(iterations), 0x10AA]).generate_state(1)[0])


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter state of a peft model's active adapter: ``A`` and ``s * B`` under peft's saved keys."""
    state = {}
    for name, layer in _lora_layers(model):
        scale = float(layer.scaling["default"])
        state[name + A_SUFFIX] = layer.lora_A["default"].weight.detach().clone()
        state[name + B_SUFFIX] = layer.lora_B["default"].weight.detach().clone() * scale
    return state


def base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The frozen base weights of a peft model, under the plain model's keys."""
    inner = getattr(model, "get_base_model", lambda: model)()
    return {
        key.replace(".base_layer.", "."): value.detach().clone()
        for key, value in inner.state_dict().items()
        if ".lora_" not in key
    }


def is_adapter_state(state: Any) -> bool:
    """Whether a state dict is an adapter state (LoRA ``A``/``B`` matrices) rather than full weights."""
    return bool(state) and all(key.endswith((A_SUFFIX, B_SUFFIX)) for key in state)


def _modules(state: dict[str, torch.Tensor]) -> list[str]:
    return sorted(key[len(PREFIX) : -len(A_SUFFIX)] for key in state if key.endswith(A_SUFFIX))


def _check(adapters: Sequence[dict[str, torch.Tensor]]) -> list[str]:
    from morbench.baselines.common import MergeError

    if not adapters:
        raise MergeError("no adapters to merge")
    modules = _modules(adapters[0])
    for i, state in enumerate(adapters):
        if not is_adapter_state(state) or not all(k.startswith(PREFIX) for k in state):
            raise MergeError(f"adapter {i} is not an adapter state (LoRA A/B matrices under peft's keys)")
        if _modules(state) != modules or len(state) != 2 * len(modules):
            raise MergeError(f"adapter {i} adapts other modules than adapter 0")
    return modules


def merge_adapters(
    base: nn.Module,
    adapters: Sequence[dict[str, torch.Tensor]],
    weights: Sequence[float] | np.ndarray,
    combination: str = "cat",
) -> nn.Module:
    """A copy of ``base`` holding ``W0 + sum_i weights[i] * B_i A_i`` in every adapted layer (a plain model).

    ``combination`` is peft's ``add_weighted_adapter`` type: ``"cat"`` (the default) is the exact weight-space
    merge; ``"linear"`` is accepted only to show, in the tests, that it is not.
    """
    from morbench.baselines.common import MergeError

    peft = _peft()
    modules = _check(adapters)
    w = [float(x) for x in np.asarray(weights, dtype=np.float64)]
    if len(w) != len(adapters):
        raise MergeError(f"got {len(adapters)} adapters but {len(w)} weights")
    model = copy.deepcopy(base)
    device = next(model.parameters()).device
    wrapped: Any = None
    with warnings.catch_warnings(), _quiet_rng(device):
        warnings.simplefilter("ignore")
        for i, state in enumerate(adapters):
            rank = int(state[PREFIX + modules[0] + A_SUFFIX].shape[0])
            config = peft.LoraConfig(r=rank, lora_alpha=rank, target_modules=modules, lora_dropout=0.0, bias="none")
            if wrapped is None:
                wrapped = peft.get_peft_model(model, config, adapter_name="a0")
            else:
                wrapped.add_adapter(f"a{i}", config)
            loaded = peft.set_peft_model_state_dict(wrapped, dict(state), adapter_name=f"a{i}")
            if getattr(loaded, "unexpected_keys", None):
                raise MergeError(f"adapter {i} has keys the model does not: {sorted(loaded.unexpected_keys)[:5]}")
        names = [f"a{i}" for i in range(len(adapters))]
        if len(adapters) == 1 and w[0] == 1.0:
            active = "a0"
        else:
            if combination != "cat" and len({int(s[PREFIX + modules[0] + A_SUFFIX].shape[0]) for s in adapters}) > 1:
                raise MergeError(f"combination {combination!r} needs adapters of one rank")
            wrapped.add_weighted_adapter(names, w, "merged", combination_type=combination)
            active = "merged"
        wrapped.set_adapter(active)
        merged = wrapped.merge_and_unload(adapter_names=[active])
    return merged.eval()


def save_adapter(state: dict[str, torch.Tensor], folder: str | Path, base_model: str | None = None) -> Path:
    """Write an adapter state as a peft adapter folder (safetensors; ``lora_alpha = r``: the scaling is in ``B``)."""
    from safetensors.torch import save_file

    modules = _check([state])
    rank = int(state[PREFIX + modules[0] + A_SUFFIX].shape[0])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(folder / ADAPTER_FILE))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": rank,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": modules,
        "base_model_name_or_path": base_model,
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    return folder
