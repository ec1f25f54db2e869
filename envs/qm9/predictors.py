"""Property predictors of QM9's alpha, HOMO-LUMO gap and U0: a fingerprint MLP (training oracle) and a graph
convolution network (held-out judge), with a shared composition baseline, training loop and safetensors I/O."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from rdkit import Chem
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from morbench.envs.qm9.molecules import (
    ATOM_FEATURE_NAMES,
    COMPOSITION_NAMES,
    DESCRIPTOR_NAMES,
    FINGERPRINT_BITS,
    MAX_HEAVY_ATOMS,
    DenseGraphs,
    composition,
    dense_graphs,
    fingerprint_features,
)

PROPERTY_NAMES = ("alpha_bohr3", "gap_ev", "u0_hartree")
PROPERTY_UNITS = {"alpha_bohr3": "bohr^3", "gap_ev": "eV", "u0_hartree": "hartree"}
HARTREE_TO_EV = 27.211386245988

__all__ = [
    "HARTREE_TO_EV",
    "PROPERTY_NAMES",
    "PROPERTY_UNITS",
    "FingerprintMLP",
    "GraphConvNet",
    "PropertyNetwork",
    "PropertyPredictor",
    "TargetScaler",
    "TrainingConfig",
    "TrainingResult",
    "regression_metrics",
    "train_predictor",
]


# -- targets ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TargetScaler:
    """Maps raw properties to what a network learns: ``z = (y - baseline(composition) - mean) / std``.

    The baseline is an ordinary least-squares fit of each property on the counts of C, N, O, F and H plus an
    intercept. It carries the extensive, composition-driven part (almost all of U0's variance: roughly the sum
    of the free atoms' energies), so the network only learns the structure-dependent remainder.
    """

    coefficients: np.ndarray  # (P, 6): one row per property, 5 counts + intercept
    residual_mean: np.ndarray  # (P,)
    residual_std: np.ndarray  # (P,)

    @staticmethod
    def _design(counts: np.ndarray) -> np.ndarray:
        return np.concatenate([counts, np.ones((len(counts), 1))], axis=1)

    @classmethod
    def fit(cls, counts: np.ndarray, targets: np.ndarray) -> TargetScaler:
        design = cls._design(counts)
        coefficients, *_ = np.linalg.lstsq(design, targets, rcond=None)
        residual = targets - design @ coefficients
        return cls(coefficients.T.copy(), residual.mean(axis=0), residual.std(axis=0))

    def baseline(self, counts: np.ndarray) -> np.ndarray:
        return self._design(counts) @ self.coefficients.T

    def encode(self, counts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return (targets - self.baseline(counts) - self.residual_mean) / self.residual_std

    def decode(self, counts: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.baseline(counts) + self.residual_mean + self.residual_std * z

    def to_dict(self) -> dict[str, Any]:
        return {
            "coefficients": self.coefficients.tolist(),
            "coefficient_names": [*COMPOSITION_NAMES, "intercept"],
            "residual_mean": self.residual_mean.tolist(),
            "residual_std": self.residual_std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetScaler:
        return cls(
            np.asarray(data["coefficients"], dtype=np.float64),
            np.asarray(data["residual_mean"], dtype=np.float64),
            np.asarray(data["residual_std"], dtype=np.float64),
        )


# -- networks -----------------------------------------------------------------------------------------------
class PropertyNetwork(nn.Module):
    """What :class:`PropertyPredictor` needs of a network: ``featurize`` a list of molecules once, then
    ``tensors`` picks the network's inputs for a batch of rows."""

    kind: ClassVar[str]  # the name it is saved and loaded under (NETWORKS)
    config: dict[str, Any]  # the constructor's keyword arguments, saved beside the weights

    @staticmethod
    def featurize(mols: list[Chem.Mol]) -> Any:
        raise NotImplementedError

    @staticmethod
    def tensors(inputs: Any, index: np.ndarray) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


class FingerprintMLP(PropertyNetwork):
    """Standardized Morgan-count + descriptor features -> SiLU MLP -> one output per property."""

    kind = "fingerprint_mlp"
    feature_mean: torch.Tensor  # buffers, registered in __init__
    feature_std: torch.Tensor

    def __init__(self, input_dim: int, hidden: int = 512, layers: int = 2, dropout: float = 0.1, outputs: int = 3):
        super().__init__()
        self.config = {
            "input_dim": input_dim,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
            "outputs": outputs,
        }
        self.register_buffer("feature_mean", torch.zeros(input_dim))
        self.register_buffer("feature_std", torch.ones(input_dim))
        blocks: list[nn.Module] = []
        width = input_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.SiLU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, outputs))
        self.net = nn.Sequential(*blocks)

    def set_feature_scaling(self, features: np.ndarray) -> None:
        self.feature_mean.copy_(torch.from_numpy(features.mean(axis=0)))
        self.feature_std.copy_(torch.from_numpy(np.maximum(features.std(axis=0), 1e-3)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.feature_mean) / self.feature_std)

    @staticmethod
    def featurize(mols: list[Chem.Mol]) -> np.ndarray:
        return fingerprint_features(mols)

    @staticmethod
    def tensors(inputs: np.ndarray, index: np.ndarray) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy(inputs[index]),)


class GraphConvNet(PropertyNetwork):
    """A dense relational graph convolution network over heavy-atom graphs (at most 9 atoms).

    Each layer mixes every atom's state with the sum of its neighbours' states along each bond type
    (single, double, triple, aromatic), followed by SiLU, a residual connection and LayerNorm. The readout
    concatenates the sum and the mean of the atom states (extensive and intensive parts) and maps them to one
    output per property with a small MLP.
    """

    kind = "graph_conv"

    def __init__(self, atom_dim: int, hidden: int = 128, layers: int = 4, bond_types: int = 4, outputs: int = 3):
        super().__init__()
        self.config = {
            "atom_dim": atom_dim,
            "hidden": hidden,
            "layers": layers,
            "bond_types": bond_types,
            "outputs": outputs,
        }
        self.embed = nn.Linear(atom_dim, hidden)
        self.mix = nn.ModuleList(nn.Linear((bond_types + 1) * hidden, hidden) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.readout = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, outputs))

    def forward(self, atoms: torch.Tensor, bonds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        node_mask = mask.unsqueeze(-1).to(atoms.dtype)  # (B, N, 1)
        h = self.embed(atoms) * node_mask
        batch, nodes, _ = h.shape
        for mix, norm in zip(self.mix, self.norms, strict=True):
            neighbours = torch.einsum("btij,bjh->btih", bonds, h)  # (B, T, N, H): sum over bonded atoms per type
            stacked = torch.cat([h.unsqueeze(1), neighbours], dim=1).permute(0, 2, 1, 3).reshape(batch, nodes, -1)
            h = norm(h + nn.functional.silu(mix(stacked))) * node_mask
        total = h.sum(dim=1)
        mean = total / node_mask.sum(dim=1).clamp(min=1)
        return self.readout(torch.cat([total, mean], dim=1))

    @staticmethod
    def featurize(mols: list[Chem.Mol]) -> DenseGraphs:
        return dense_graphs(mols)

    @staticmethod
    def tensors(inputs: DenseGraphs, index: np.ndarray) -> tuple[torch.Tensor, ...]:
        return (
            torch.from_numpy(inputs.atoms[index]),
            torch.from_numpy(inputs.bonds[index]),
            torch.from_numpy(inputs.mask[index]),
        )


NETWORKS: dict[str, type[PropertyNetwork]] = {FingerprintMLP.kind: FingerprintMLP, GraphConvNet.kind: GraphConvNet}


# -- predictor ------------------------------------------------------------------------------------------------
class PropertyPredictor:
    """A trained network plus its :class:`TargetScaler`: RDKit molecules -> ``(n, 3)`` raw properties.

    Columns follow :data:`PROPERTY_NAMES`: alpha in bohr^3, HOMO-LUMO gap in eV, U0 in hartree.
    Saved as ``<name>.safetensors`` (weights and feature scaling) and ``<name>.json`` (architecture, scaler).
    """

    def __init__(self, network: PropertyNetwork, scaler: TargetScaler, metadata: dict[str, Any] | None = None) -> None:
        self.network = network.eval()
        self.scaler = scaler
        self.metadata = dict(metadata or {})

    @property
    def kind(self) -> str:
        return self.network.kind

    @torch.inference_mode()
    def predict(self, mols: list[Chem.Mol], batch_size: int = 4096) -> np.ndarray:
        if not mols:
            return np.zeros((0, len(PROPERTY_NAMES)))
        inputs = self.network.featurize(mols)
        outputs = []
        for start in range(0, len(mols), batch_size):
            index = np.arange(start, min(start + batch_size, len(mols)))
            outputs.append(self.network(*self.network.tensors(inputs, index)).double().numpy())
        return self.scaler.decode(composition(mols), np.concatenate(outputs))

    def save(self, directory: str | Path, name: str) -> list[str]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().contiguous() for key, value in self.network.state_dict().items()}
        save_file(state, directory / f"{name}.safetensors", metadata={"kind": self.kind})
        record = {
            "kind": self.kind,
            "network": self.network.config,
            "property_names": list(PROPERTY_NAMES),
            "property_units": PROPERTY_UNITS,
            "scaler": self.scaler.to_dict(),
            "features": _feature_description(self.kind),
            **self.metadata,
        }
        (directory / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        return [f"{name}.safetensors", f"{name}.json"]

    @classmethod
    def load(cls, directory: str | Path, name: str) -> PropertyPredictor:
        directory = Path(directory)
        record = json.loads((directory / f"{name}.json").read_text())
        network = NETWORKS[record["kind"]](**record["network"])
        network.load_state_dict(load_file(directory / f"{name}.safetensors"))
        metadata = {k: v for k, v in record.items() if k not in ("kind", "network", "scaler")}
        return cls(network, TargetScaler.from_dict(record["scaler"]), metadata)


def _feature_description(kind: str) -> dict[str, Any]:
    if kind == FingerprintMLP.kind:
        return {
            "morgan_count_fingerprint": {"radius": 2, "bits": FINGERPRINT_BITS, "transform": "log1p"},
            "descriptors": list(DESCRIPTOR_NAMES),
        }
    return {"atom_features": list(ATOM_FEATURE_NAMES), "max_atoms": MAX_HEAVY_ATOMS}


# -- training ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainingConfig:
    """How a predictor is trained: L1 loss on scaled targets, AdamW, cosine decay, early stopping on valid MAE."""

    kind: str = FingerprintMLP.kind  # "fingerprint_mlp" or "graph_conv"
    network: dict[str, Any] = dataclasses.field(default_factory=dict)  # keyword arguments of the network
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8  # epochs without a better validation MAE before stopping
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in NETWORKS:
            raise ValueError(f"unknown predictor kind {self.kind!r}; choose one of {sorted(NETWORKS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must all be >= 1")


@dataclasses.dataclass
class TrainingResult:
    predictor: PropertyPredictor
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]
    seconds: float
    num_parameters: int


def _scaled_mae(network: PropertyNetwork, inputs: Any, targets: np.ndarray, batch_size: int) -> np.ndarray:
    network.eval()
    errors = []
    with torch.inference_mode():
        for start in range(0, len(targets), batch_size):
            index = np.arange(start, min(start + batch_size, len(targets)))
            prediction = network(*network.tensors(inputs, index)).double().numpy()
            errors.append(np.abs(prediction - targets[index]))
    return np.concatenate(errors).mean(axis=0)


def train_predictor(
    config: TrainingConfig,
    train_mols: list[Chem.Mol],
    train_targets: np.ndarray,
    valid_mols: list[Chem.Mol],
    valid_targets: np.ndarray,
    progress: bool = True,
) -> TrainingResult:
    """Fit a predictor on the training molecules; keep the epoch with the lowest validation MAE (scaled units)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    network_class = NETWORKS[config.kind]
    train_counts = composition(train_mols)
    scaler = TargetScaler.fit(train_counts, train_targets)
    z_train = scaler.encode(train_counts, train_targets).astype(np.float32)
    z_valid = scaler.encode(composition(valid_mols), valid_targets)
    train_inputs = network_class.featurize(train_mols)
    valid_inputs = network_class.featurize(valid_mols)
    network: PropertyNetwork
    if config.kind == FingerprintMLP.kind:
        network = mlp = FingerprintMLP(train_inputs.shape[1], **config.network)
        mlp.set_feature_scaling(train_inputs)
    else:
        network = GraphConvNet(train_inputs.atoms.shape[-1], **config.network)

    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(z_train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    targets = torch.from_numpy(z_train)
    best: tuple[float, int, dict[str, torch.Tensor] | None] = (math.inf, 0, None)  # score, epoch, weights
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"train {config.kind}", disable=not progress, unit="epoch")
    for epoch in bar:
        network.train()
        order = rng.permutation(len(z_train))
        loss_sum = 0.0
        for first in range(0, len(order), config.batch_size):
            index = order[first : first + config.batch_size]
            loss = (network(*network.tensors(train_inputs, index)) - targets[index]).abs().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(index)
        valid_mae = _scaled_mae(network, valid_inputs, z_valid, 4096)
        score = float(valid_mae.mean())
        history.append({"epoch": epoch + 1, "train_l1": loss_sum / len(order), "valid_scaled_mae": score})
        bar.set_postfix(train=f"{loss_sum / len(order):.4f}", valid=f"{score:.4f}")
        if score < best[0]:
            best = (score, epoch + 1, {k: v.detach().clone() for k, v in network.state_dict().items()})
        elif epoch + 1 - best[1] >= config.patience:
            break
    bar.close()
    if best[2] is None:
        raise ValueError(
            f"no epoch gave a validation MAE that is a number ({len(history)} run), so there are no weights to "
            "keep; check the targets and features for NaN, or lower the learning rate"
        )
    network.load_state_dict(best[2])
    network.eval()
    metadata = {"training": dataclasses.asdict(config), "best_epoch": best[1]}
    return TrainingResult(
        predictor=PropertyPredictor(network, scaler, metadata),
        best_epoch=best[1],
        epochs_run=len(history),
        history=history,
        seconds=time.perf_counter() - start,
        num_parameters=sum(p.numel() for p in network.parameters()),
    )


def regression_metrics(truth: np.ndarray, prediction: np.ndarray) -> dict[str, dict[str, float]]:
    """Per property: MAE, RMSE (raw units) and R^2."""
    out = {}
    for k, name in enumerate(PROPERTY_NAMES):
        error = prediction[:, k] - truth[:, k]
        variance = float(np.sum((truth[:, k] - truth[:, k].mean()) ** 2))
        out[name] = {
            "mae": float(np.mean(np.abs(error))),
            "rmse": float(np.sqrt(np.mean(error**2))),
            "r2": float(1 - np.sum(error**2) / variance),
        }
    return out
