"""The Enhancer task's classifiers: a CNN (the training oracle) and a k-mer-count MLP (the held-out judge).

Both map a batch of 200-bp sequences (integer codes, see :mod:`sequences`) to one logit per cell type; the
probability ``sigmoid(logit)`` is the objective. Weights are stored as safetensors with a JSON config beside them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from morbench.envs.enhancer.sequences import one_hot, reverse_complement
from morbench.metrics import auroc
from morbench.models import flush_subnormal_weights

__all__ = [
    "ActivityCNN",
    "CNNConfig",
    "KmerMLP",
    "KmerMLPConfig",
    "SequenceClassifier",
    "TrainConfig",
    "TrainResult",
    "load_network",
    "predict_logits",
    "save_network",
    "train_classifier",
]


@dataclasses.dataclass
class CNNConfig:
    """Three conv blocks over the one-hot sequence, global max pooling and a small MLP head."""

    num_outputs: int = 3
    channels: int = 128  # filters of every conv layer
    first_kernel: int = 15  # bp seen by a first-layer filter (a long TF motif)
    hidden: int = 64
    dropout: float = 0.2


@dataclasses.dataclass
class KmerMLPConfig:
    """Log counts of canonical k-mers (a k-mer and its reverse complement pooled) into a one-hidden-layer MLP."""

    num_outputs: int = 3
    k: int = 6
    hidden: int = 96
    dropout: float = 0.3


ClassifierConfig: TypeAlias = "CNNConfig | KmerMLPConfig"


class SequenceClassifier(nn.Module):
    """What training, prediction and saving need of a classifier: ``featurize`` turns ``(N, L)`` codes into the
    network's input; a model that is not ``strand_symmetric`` is scored on both strands."""

    strand_symmetric: ClassVar[bool]
    config: ClassifierConfig  # the architecture, saved as JSON beside the weights

    def featurize(self, codes: np.ndarray) -> torch.Tensor:
        raise NotImplementedError


class ActivityCNN(SequenceClassifier):
    """Conv(15) -> pool 4 -> Conv(7) -> pool 4 -> Conv(5) -> global max -> MLP; scored on both strands."""

    strand_symmetric = False  # predictions average the forward and reverse-complement passes
    config: CNNConfig

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.features = nn.Sequential(
            nn.Conv1d(4, c, config.first_kernel, padding=config.first_kernel // 2),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(c, c, 7, padding=3),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(c, c, 5, padding=2),
            nn.ReLU(),
            nn.AdaptiveMaxPool1d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(c, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.num_outputs),
        )

    @staticmethod
    def featurize(codes: np.ndarray) -> torch.Tensor:
        """``(N, L)`` codes to a ``(N, 4, L)`` one-hot tensor."""
        return torch.from_numpy(one_hot(codes)).transpose(1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _canonical_kmer_index(k: int) -> tuple[np.ndarray, int]:
    """Map every k-mer index to the index of its canonical class (k-mer and reverse complement share one)."""
    kmers = np.arange(4**k)
    digits = (kmers[:, None] // (4 ** np.arange(k - 1, -1, -1))) % 4
    rc = ((3 - digits[:, ::-1]) * (4 ** np.arange(k - 1, -1, -1))).sum(axis=1)
    canonical = np.minimum(kmers, rc)
    classes, index = np.unique(canonical, return_inverse=True)
    return index.astype(np.int64), len(classes)


class KmerMLP(SequenceClassifier):
    """A bag-of-k-mers classifier: no positions, no convolutions; strand-symmetric by construction."""

    strand_symmetric = True
    config: KmerMLPConfig

    def __init__(self, config: KmerMLPConfig) -> None:
        super().__init__()
        self.config = config
        self._index, self.num_features = _canonical_kmer_index(config.k)
        self.net = nn.Sequential(
            nn.Linear(self.num_features, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_outputs),
        )

    def featurize(self, codes: np.ndarray) -> torch.Tensor:
        """``(N, L)`` codes to ``(N, F)`` float32 ``log1p`` canonical k-mer counts (windows with -1 skipped)."""
        k = self.config.k
        codes = codes.astype(np.int64)
        n = codes.shape[0]
        windows = np.lib.stride_tricks.sliding_window_view(codes, k, axis=1)
        ok = np.all(windows >= 0, axis=2)
        index = self._index[(np.clip(windows, 0, 3) * (4 ** np.arange(k - 1, -1, -1))).sum(axis=2)]
        flat = (index + np.arange(n)[:, None] * self.num_features)[ok]
        counts = np.bincount(flat, minlength=n * self.num_features).reshape(n, self.num_features)
        return torch.from_numpy(np.log1p(counts).astype(np.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ARCHITECTURES: dict[str, tuple[type[SequenceClassifier], type[ClassifierConfig]]] = {
    "ActivityCNN": (ActivityCNN, CNNConfig),
    "KmerMLP": (KmerMLP, KmerMLPConfig),
}


@torch.inference_mode()
def predict_logits(model: SequenceClassifier, codes: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits ``(N, num_outputs)`` float32; strand-asymmetric models average both strands' logits."""
    model.eval()
    out = []
    for start in range(0, len(codes), batch_size):
        chunk = codes[start : start + batch_size]
        logits = model(model.featurize(chunk))
        if not model.strand_symmetric:
            logits = 0.5 * (logits + model(model.featurize(reverse_complement(chunk))))
        out.append(logits.float().numpy())
    if not out:
        return np.zeros((0, model.config.num_outputs), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)


def save_network(model: SequenceClassifier, directory: str | Path, name: str, metadata: dict[str, Any]) -> list[Path]:
    """Write ``<name>.safetensors`` (weights) and ``<name>.json`` (architecture, config, metadata)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}.safetensors"
    config = directory / f"{name}.json"
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(weights))
    record = {"architecture": type(model).__name__, "config": dataclasses.asdict(model.config), **metadata}
    config.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return [weights, config]


def load_network(directory: str | Path, name: str) -> tuple[SequenceClassifier, dict[str, Any]]:
    """Rebuild a network from ``<name>.json`` and load ``<name>.safetensors`` (strict); returns (model, record).

    Subnormal weights are zeroed (:func:`morbench.models.flush_subnormal_weights`): same outputs, ~5x faster.
    """
    directory = Path(directory)
    record = json.loads((directory / f"{name}.json").read_text())
    cls, config_cls = ARCHITECTURES[record["architecture"]]
    model = cls(config_cls(**record["config"]))
    model.load_state_dict(load_file(str(directory / f"{name}.safetensors")), strict=True)
    flush_subnormal_weights(model)
    return model.eval(), record


@dataclasses.dataclass
class TrainConfig:
    """One-vs-rest training with binary cross-entropy, Adam, and early stopping on validation mean AUROC."""

    max_epochs: int = 20
    patience: int = 3  # epochs without a validation improvement before stopping
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    reverse_complement_augment: bool = True  # flip each batch to the other strand with probability 1/2
    seed: int = 0


@dataclasses.dataclass
class TrainResult:
    best_epoch: int
    valid_auroc: list[float]  # per output, at the best epoch
    history: list[dict[str, float]]
    seconds: float


def train_classifier(
    model: SequenceClassifier,
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    valid_codes: np.ndarray,
    valid_labels: np.ndarray,
    config: TrainConfig,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train in place; the model ends with the weights of the epoch with the best validation mean AUROC."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    targets = torch.from_numpy(train_labels.astype(np.float32))
    best_score, best_epoch, best_state, best_aurocs = -math.inf, 0, None, []
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = rng.permutation(len(train_codes))
        total, seen = 0.0, 0
        for begin in range(0, len(order), config.batch_size):
            rows = order[begin : begin + config.batch_size]
            codes = train_codes[rows]
            if config.reverse_complement_augment and not model.strand_symmetric and rng.random() < 0.5:
                codes = reverse_complement(codes)
            loss = loss_fn(model(model.featurize(codes)), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
            seen += len(rows)
        logits = predict_logits(model, valid_codes)
        aurocs = [auroc(valid_labels[:, j], logits[:, j]) for j in range(valid_labels.shape[1])]
        record = {"epoch": epoch, "train_loss": total / seen, "valid_mean_auroc": float(np.mean(aurocs))}
        history.append(record)
        if progress is not None:
            progress(epoch, record)
        if record["valid_mean_auroc"] > best_score:
            best_score, best_epoch, best_aurocs = record["valid_mean_auroc"], epoch, aurocs
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_epoch, [float(a) for a in best_aurocs], history, time.perf_counter() - start)
