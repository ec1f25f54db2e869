"""Serving rules: how saved causal-LM folders answer every preference of a task's grid.

The leaderboard's ``verify`` rebuilds a policy from model folders and a declared rule, then re-samples it with
:func:`morbench.evaluation.evaluate_on_env` (the protocol's seeds). The rules:

* ``single``: one model for every preference (the prior, a single MORLHF policy);
* ``per_preference``: model ``mapping[key]`` at the preference whose :func:`~morbench.preferences.preference_key`
  is ``key`` (one model per trained preference, or the nearest trained one);
* ``interpolate``: K experts (one per objective, in objective order) merged as ``theta(w) = sum_k w_k theta_k``
  with :func:`morbench.baselines.common.merge_state_dicts`, the Rewarded Soups merge, so results are bit-identical;
* ``conditioned``: one model, prompted with ``mapping[key]`` extra token ids after the prompt (reward or
  preference tokens), with ``forbid_token_ids`` masked out while sampling.

LoRA experts (a baseline trained with ``ppo.lora_rank > 0``) are peft adapter folders; :func:`load_state` reads
their ``A``/``B`` matrices like any weights, and :func:`model_from_state` / :func:`interpolation_policy` apply them
to the template (the base: the prior, or the run's saved ``base`` folder) with the exact merge
``W0 + sum_k w_k B_k A_k`` (:func:`morbench.baselines.lora.merge_adapters`). Models load on the CPU.

Model folders are read from safetensors only (no pickle is ever unpickled), after checking every file's sha256
against the declared digests. :func:`load_model_folder` is the loader for external policies;
:func:`model_from_state` loads weights into a copy of a template (the task's prior), exactly as the baselines'
``policy_from_state`` does, which keeps a re-sampled baseline bit-exact.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import torch

from morbench.assets import sha256_file
from morbench.errors import VerificationError
from morbench.evaluation import LMPolicy, PreferenceLMPolicy
from morbench.preferences import preference_key
from morbench.sampling import PolicySamples, sample_sequences

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from morbench.core import Context

__all__ = [
    "SERVING_RULES",
    "ConditionedPolicy",
    "check_folder",
    "file_sha256",
    "folder_digests",
    "interpolation_policy",
    "load_model_folder",
    "load_state",
    "model_from_state",
    "nearest_policy",
    "per_preference_policy",
    "policy_from_provenance",
]

SERVING_RULES = ("single", "per_preference", "interpolate", "conditioned")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")


file_sha256 = sha256_file  # the assets' streaming sha256 of a file, under the name the serving rules use


def folder_digests(folder: str | Path) -> dict[str, str]:
    """Every file under ``folder`` (relative POSIX path) -> its sha256."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def check_folder(folder: Path, expected: Mapping[str, str], what: str) -> None:
    """Every declared file exists with its digest, no other weight file is there, and no pickle format is used."""
    if not folder.is_dir():
        raise VerificationError(f"{what}: {folder} is not a directory; pass the folder holding it with --artifacts")
    actual = folder_digests(folder)
    pickled = sorted(name for name in actual if name.endswith(PICKLE_SUFFIXES))
    if pickled:
        raise VerificationError(f"{what}: {folder} holds pickle-format files {pickled[:5]}; only safetensors is loaded")
    missing = sorted(set(expected) - set(actual))
    changed = sorted(name for name in expected if name in actual and actual[name] != expected[name])
    extra = sorted(name for name in set(actual) - set(expected) if name.endswith(".safetensors"))
    if missing or changed or extra:
        raise VerificationError(
            f"{what}: {folder} does not match its declared sha256 digests (missing {missing[:5]}, changed "
            f"{changed[:5]}, undeclared weight files {extra[:5]}); the submission names other model files"
        )
    if not any(name.endswith(".safetensors") for name in expected):
        raise VerificationError(f"{what}: no .safetensors weights declared for {folder}")


def load_state(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a (possibly sharded) safetensors model folder, without executing any code."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(path)))
    if not state:
        raise VerificationError(f"{folder}: no .safetensors weights")
    return state


def model_from_state(template: PreTrainedModel, state: Mapping[str, torch.Tensor]) -> PreTrainedModel:
    """A copy of ``template`` holding ``state`` (the vocabulary resized when the weights add tokens).

    Keys missing from ``state`` are accepted only for parameters tied to a loaded one (an LM head tied to the
    embeddings, which ``save_pretrained`` stores once); any other missing or unexpected key is an error. A LoRA
    adapter state (peft's ``lora_A``/``lora_B`` keys) is applied to ``template``: ``W0 + B A``.
    """
    from morbench.baselines.lora import is_adapter_state, merge_adapters

    if is_adapter_state(state):
        return _merged(merge_adapters, template, [dict(state)], [1.0])
    lm = copy.deepcopy(template)
    embeddings = cast(torch.Tensor, lm.get_input_embeddings().weight)
    key = next((name for name, p in lm.named_parameters(remove_duplicate=False) if p is embeddings), None)
    if key is not None and key in state and state[key].shape[0] != embeddings.shape[0]:
        # the weights add tokens (e.g. Rewards-in-Context's reward tokens)
        lm.resize_token_embeddings(state[key].shape[0], mean_resizing=False)
    missing, unexpected = lm.load_state_dict(dict(state), strict=False)
    tensors = dict(lm.named_parameters(remove_duplicate=False))
    loaded = {id(tensors[k]) for k in state if k in tensors}
    untied = [k for k in missing if k not in tensors or id(tensors[k]) not in loaded]
    if untied or unexpected:
        raise VerificationError(
            f"the weights do not fit the model: missing {sorted(untied)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return lm.eval()


def _merged(merge: Any, template: Any, states: list[dict[str, torch.Tensor]], weights: Any) -> PreTrainedModel:
    """``merge`` (the adapter merge), with a :class:`VerificationError` if the adapters do not fit the template."""
    from morbench.baselines.common import MergeError

    try:
        return cast("PreTrainedModel", merge(template, states, weights))
    except (MergeError, ValueError, KeyError, RuntimeError) as exc:
        raise VerificationError(f"the LoRA adapters do not fit the model they are served on: {exc}") from None


def load_model_folder(folder: Path) -> PreTrainedModel:
    """An external policy's transformers causal-LM folder, from safetensors only, with no remote code."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), use_safetensors=True, local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError) as exc:
        raise VerificationError(
            f"{folder}: not a loadable transformers causal-LM folder in safetensors ({exc})"
        ) from None
    return model.float().eval()


class _ByKey(LMPolicy):
    """A model looked up by the preference's key."""

    def __init__(self, models: Mapping[str, torch.nn.Module], task: Any, temperature: float, top_p: float) -> None:
        self.models, self.task, self.temperature, self.top_p = dict(models), task, temperature, top_p

    def model_for(self, preference: np.ndarray) -> torch.nn.Module:
        key = preference_key(preference)
        if key not in self.models:
            raise VerificationError(f"the serving rule names no model for preference {key}")
        return self.models[key].eval()


def per_preference_policy(
    models: Sequence[torch.nn.Module], mapping: Mapping[str, int], task: Any, temperature: float, top_p: float
) -> LMPolicy:
    """``mapping[preference_key(w)]`` is the index of the model that serves ``w``."""
    return _ByKey({key: models[index] for key, index in mapping.items()}, task, temperature, top_p)


def nearest_policy(
    models: Mapping[str, torch.nn.Module],
    task: Any,
    temperature: float | None = None,
    top_p: float | None = None,
    points: npt.ArrayLike | None = None,
) -> LMPolicy:
    """Every grid point served by the nearest of the models, as MORLHF serves the preferences it did not train.

    The models were trained at ``points`` (default: the grid points, else the preferences their keys name), in
    training order; nearest is L1, ties go to the first in that order.
    """
    keys = list(models)
    if points is None:
        grid = {preference_key(w): np.asarray(w, dtype=np.float64) for w in task.preference_grid}
        trained = np.asarray(
            [grid[key] if key in grid else [float(x) for x in key.split("_")] for key in keys], dtype=np.float64
        )
    else:
        trained = np.asarray(points, dtype=np.float64)
    if trained.shape[0] != len(keys):
        raise VerificationError(f"{len(keys)} trained models but {trained.shape[0]} trained preferences")
    mapping = {}
    for weights in task.preference_grid:
        mapping[preference_key(weights)] = keys[int(np.argmin(np.abs(trained - weights).sum(axis=1)))]
    return _ByKey(
        {k: models[v] for k, v in mapping.items()},
        task,
        temperature if temperature is not None else task.protocol.temperature,
        top_p if top_p is not None else task.protocol.top_p,
    )


def interpolation_policy(
    template: PreTrainedModel,
    states: Sequence[Mapping[str, torch.Tensor]],
    task: Any,
    temperature: float | None = None,
    top_p: float | None = None,
) -> PreferenceLMPolicy:
    """Experts merged per preference with Rewarded Soups' own merge (one merged model in memory at a time).

    LoRA experts (adapter states) are merged exactly on ``template``, their base: ``W0 + sum_k w_k B_k A_k``.
    """
    from morbench.baselines.common import merge_state_dicts
    from morbench.baselines.lora import is_adapter_state, merge_adapters

    cache: dict[tuple, torch.nn.Module] = {}
    adapters = any(is_adapter_state(s) for s in states)

    def model_for(preference: np.ndarray) -> torch.nn.Module:
        key = tuple(np.round(preference, 12))
        if key not in cache:
            cache.clear()
            weights = cast("Sequence[float]", preference)
            if adapters:
                cache[key] = _merged(merge_adapters, template, [dict(s) for s in states], weights)
            else:
                cache[key] = model_from_state(template, merge_state_dicts([dict(s) for s in states], weights))
        return cache[key]

    return PreferenceLMPolicy(model_for, task, temperature=temperature, top_p=top_p)


class ConditionedPolicy(LMPolicy):
    """One model prompted with a preference's declared prefix token ids; ``forbid`` ids are never sampled."""

    def __init__(
        self,
        model: PreTrainedModel,
        task: Any,
        prefixes: Mapping[str, Sequence[int]],
        forbid: Sequence[int],
        temperature: float,
        top_p: float,
    ) -> None:
        super().__init__(model, task, temperature, top_p)
        self.prefixes = {key: [int(t) for t in ids] for key, ids in prefixes.items()}
        self.forbid = [*task.forbidden_token_ids.tolist(), *[int(t) for t in forbid]]
        vocab = cast(torch.Tensor, model.get_input_embeddings().weight).shape[0]
        bad = sorted({t for ids in self.prefixes.values() for t in ids if t >= vocab})
        if bad:
            raise VerificationError(f"prefix token ids {bad[:5]} are outside the model's vocabulary of {vocab}")

    def sample(self, preference: np.ndarray, contexts: list[Context | None], seed: int) -> PolicySamples:
        """Sample from the model prompted with ``preference``'s declared prefix."""
        key = preference_key(preference)
        if key not in self.prefixes:
            raise VerificationError(f"the serving rule names no prefix for preference {key}")
        return sample_sequences(
            self.model,
            self.task,
            contexts,
            seed,
            self.temperature,
            self.top_p,
            prefix_ids=self.prefixes[key],
            forbid_token_ids=self.forbid,
        )


def policy_from_provenance(provenance: Mapping[str, Any], artifacts: str | Path, task: Any, seed: int) -> Any:
    """The policy a ``{"kind": "policy"}`` provenance declares, with its model folders under ``artifacts``.

    Every folder is checked against its declared sha256 digests before anything is loaded. This is what
    ``morbench leaderboard verify`` re-samples; a submitter produces the submitted samples with it too:
    ``morbench.evaluate(policy_from_provenance(p, dir, task, seed), env_id, seeds=[seed], ...)``.
    """
    artifacts = Path(artifacts)
    by_seed = provenance.get("models_by_seed")
    models_spec = by_seed[str(seed)] if by_seed else provenance["models"]
    folders = []
    for i, model in enumerate(models_spec):
        folder = (artifacts / model["path"]).resolve()
        root = artifacts.resolve()
        if os.path.commonpath([root, folder]) != str(root):
            raise VerificationError(f"models[{i}].path {model['path']!r} leaves the artifacts folder {artifacts}")
        check_folder(folder, model["sha256"], f"seed {seed}, models[{i}]")
        folders.append(folder)
    temperature, top_p = float(provenance["decoding"]["temperature"]), float(provenance["decoding"]["top_p"])
    rule, mapping = provenance["serving"], provenance.get("mapping") or {}
    if rule not in SERVING_RULES:
        raise VerificationError(f"serving rule {rule!r} is not one of {SERVING_RULES}")
    if rule == "interpolate":
        template = load_model_folder(folders[0])
        return interpolation_policy(template, [load_state(f) for f in folders], task, temperature, top_p)
    models = [load_model_folder(f) for f in folders]
    if rule == "single":
        keys = [preference_key(w) for w in task.preference_grid]
        return per_preference_policy(models, dict.fromkeys(keys, 0), task, temperature, top_p)
    if rule == "per_preference":
        return per_preference_policy(models, mapping, task, temperature, top_p)
    forbid = provenance.get("forbid_token_ids") or []
    return ConditionedPolicy(models[0], task, mapping, forbid, temperature, top_p)
