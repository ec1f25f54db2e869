"""Blood-brain-barrier permeability classifiers: feature matrices, the torch model, saving/loading, AUROC.

A model is a small torch network (an MLP, or with no hidden layer a logistic regression) over a
:class:`~morbench.envs.cns.featurize.FeatureSpec`: fingerprint bits plus standardized RDKit descriptors. It is
saved as ``<name>.safetensors`` (weights) and ``<name>.json`` (architecture, feature names and the
standardization statistics); nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from morbench.envs.cns.featurize import FeatureSpec, MoleculeRecord

__all__ = ["BBBModel", "BBBModelConfig", "feature_matrix", "load_bbb_model", "save_bbb_model"]


@dataclasses.dataclass
class BBBModelConfig:
    """Architecture and inputs of a BBB classifier (stored beside its weights as JSON)."""

    spec: FeatureSpec
    hidden: tuple[int, ...] = (256, 64)  # () is a logistic regression
    dropout: float = 0.2
    descriptor_mean: tuple[float, ...] = ()
    descriptor_std: tuple[float, ...] = ()

    @property
    def input_dim(self) -> int:
        return self.spec.fingerprint_bits + len(self.spec.descriptors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprints": list(self.spec.fingerprints),
            "descriptors": list(self.spec.descriptors),
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "descriptor_mean": list(self.descriptor_mean),
            "descriptor_std": list(self.descriptor_std),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BBBModelConfig:
        return cls(
            spec=FeatureSpec(tuple(data["fingerprints"]), tuple(data["descriptors"])),
            hidden=tuple(int(h) for h in data["hidden"]),
            dropout=float(data["dropout"]),
            descriptor_mean=tuple(float(v) for v in data["descriptor_mean"]),
            descriptor_std=tuple(float(v) for v in data["descriptor_std"]),
        )


class BBBModel(torch.nn.Module):
    """Features -> hidden ReLU layers -> one logit; ``probability`` gives P(BBB+)."""

    descriptor_mean: torch.Tensor  # buffers, registered in __init__
    descriptor_std: torch.Tensor

    def __init__(self, config: BBBModelConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[torch.nn.Module] = []
        width = config.input_dim
        for hidden in config.hidden:
            layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Dropout(config.dropout)]
            width = hidden
        layers.append(torch.nn.Linear(width, 1))
        self.net = torch.nn.Sequential(*layers)
        count = len(config.spec.descriptors)
        mean = config.descriptor_mean or (0.0,) * count
        std = config.descriptor_std or (1.0,) * count
        self.register_buffer("descriptor_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("descriptor_std", torch.tensor(std, dtype=torch.float32))

    def forward(self, bits: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        scaled = (descriptors - self.descriptor_mean) / self.descriptor_std
        return self.net(torch.cat([bits, scaled], dim=1)).squeeze(1)

    @torch.inference_mode()
    def probability(self, bits: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
        """P(BBB+) for a batch: one forward pass, float64 ``(n,)``."""
        if len(bits) == 0:
            return np.zeros(0)
        self.eval()
        logits = self(torch.from_numpy(bits.astype(np.float32)), torch.from_numpy(descriptors.astype(np.float32)))
        return torch.sigmoid(logits).double().numpy()


def feature_matrix(records: Sequence[MoleculeRecord], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Unpack records into ``(n, bits)`` uint8 and ``(n, descriptors)`` float64 arrays."""
    n, width = len(records), spec.fingerprint_bits
    bits = np.zeros((n, width), dtype=np.uint8)
    descriptors = np.zeros((n, len(spec.descriptors)), dtype=np.float64)
    if n:
        packed = np.frombuffer(b"".join(r.fingerprint for r in records), dtype=np.uint8).reshape(n, -1)
        bits[:] = np.unpackbits(packed, axis=1, count=width)
        descriptors[:] = np.asarray([r.descriptors for r in records], dtype=np.float64)
    return bits, descriptors


def save_bbb_model(model: BBBModel, directory: Path, name: str, extra: dict[str, Any] | None = None) -> None:
    """Write ``name.safetensors`` and ``name.json`` (config plus ``extra`` figures such as AUROC)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / f"{name}.safetensors"))
    payload = {"config": model.config.to_dict(), **(extra or {})}
    (directory / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")


def load_bbb_model(directory: Path, name: str) -> BBBModel:
    """Load a model saved by :func:`save_bbb_model` (safetensors only)."""
    payload = json.loads((directory / f"{name}.json").read_text())
    model = BBBModel(BBBModelConfig.from_dict(payload["config"]))
    model.load_state_dict(load_file(str(directory / f"{name}.safetensors")))
    return model.eval()
