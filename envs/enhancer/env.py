"""Enhancer: design 200-bp regulatory DNA for cell-type-specific accessibility in HepG2, K562 and GM12878."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morbench.assets import asset_loading, require_file, verify_assets
from morbench.core import Context, InvalidSequence, Oracle, OracleEvaluation, TokenEnv
from morbench.envs.enhancer import metrics
from morbench.envs.enhancer.motifs import MotifSet, motif_enrichment
from morbench.envs.enhancer.sequences import (
    SEQUENCE_LENGTH,
    build_dna_tokenizer,
    encode,
    sequence_problem,
    tokens_per_sequence,
)
from morbench.errors import ConfigError
from morbench.preferences import simplex_lattice
from morbench.vector import vector_entry_point

__all__ = ["ASSETS_DIR", "CELL_TYPES", "CellTypeOracle", "EnhancerEnv", "load_reference", "make_vec"]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
REBUILD_COMMAND = "morbench build-assets enhancer"
CELL_TYPES = ("HepG2", "K562", "GM12878")
ORACLE_NAME = "oracle"  # assets/oracle.safetensors + oracle.json: the CNN that gives the training rewards
JUDGE_NAME = "judge"  # assets/judge.safetensors + judge.json: the k-mer MLP held out for evaluation
RUNTIME_FILES = (
    f"{ORACLE_NAME}.safetensors",
    f"{ORACLE_NAME}.json",
    f"{JUDGE_NAME}.safetensors",
    f"{JUDGE_NAME}.json",
    "motifs.json",
    "reference.json",
    "prior/model.safetensors",
)


class CellTypeOracle(Oracle):
    """Objective ``c`` = ``sigmoid(logit_c)``: a classifier's probability that the sequence is a DHS specific to
    cell type ``c`` (trained one-vs-rest on HepG2, K562, GM12878 and hESC sequences).

    Valid input: exactly 200 letters from ACGT (lower case accepted; the cache key is upper case). The raw
    logits are reported as properties ``<cell>_logit``.
    """

    objective_names = CELL_TYPES
    property_names = tuple(f"{cell}_logit" for cell in CELL_TYPES)

    def __init__(self, network, description: str, budget: int | None = None) -> None:
        super().__init__(budget=budget)
        if network.config.num_outputs != len(CELL_TYPES):
            raise ConfigError(f"the {description} has {network.config.num_outputs} outputs; expected {len(CELL_TYPES)}")
        self.network = network
        self.description = description

    def canonicalize(self, sequence: str, context: Context | None = None) -> str:
        problem = sequence_problem(sequence)
        if problem is not None:
            raise InvalidSequence(problem)
        return sequence.upper()

    def tokenizer_form(self, sequence: str) -> str:
        return sequence.upper()  # lower-case (soft-masked) bases are accepted: check the upper-case 4-mers

    def screen(self, sequences: Sequence[Any]) -> list[str | None]:
        """The input check, with this task's own rule as the reason: every text the check rejects (special or
        unknown tokens, over 204 characters) also breaks "exactly 200 letters from ACGT", which says more."""
        reasons = super().screen(sequences)
        return [
            (sequence_problem(s) or reason) if reason is not None and isinstance(s, str) else reason
            for s, reason in zip(sequences, reasons, strict=True)
        ]

    def evaluate(self, keys: list[str], contexts: list[Context | None]) -> OracleEvaluation:
        logits = self.logits(keys)
        properties = {name: logits[:, j] for j, name in enumerate(self.property_names)}
        return OracleEvaluation(rewards=1.0 / (1.0 + np.exp(-logits)), properties=properties)

    def logits(self, sequences: Sequence[str]) -> np.ndarray:
        """Raw ``(N, 3)`` float64 logits of valid sequences, bypassing the cache and the call counter."""
        from morbench.envs.enhancer.networks import predict_logits

        return predict_logits(self.network, encode(list(sequences), SEQUENCE_LENGTH)).astype(np.float64)


def _load_network(assets_dir: Path, name: str):
    from morbench.envs.enhancer.networks import load_network

    # a file that passed the manifest but does not load: stale manifest or bad build
    with asset_loading(f"asset {assets_dir / name}.safetensors/.json", REBUILD_COMMAND):
        network, _ = load_network(assets_dir, name)
    return network


def load_reference(assets_dir: Path = ASSETS_DIR) -> dict[str, Any]:
    """The natural-sequence statistics the metrics compare against (3-mer counts of the chr2 test set, ...)."""
    return json.loads(require_file(Path(assets_dir) / "reference.json", REBUILD_COMMAND).read_text())


class EnhancerEnv(TokenEnv):
    """Write a 200-bp DNA sequence, 4 bases per action, that is accessible in chosen cell types.

    ## Description
    The IterativeRS DNA task rebuilt from data that ships offline. The seed paper fine-tunes a 4-mer GPT-2 to
    design 200-bp enhancers with high MPRA activity in three cell lines; the MPRA data and its oracles do not
    ship in any package, so this task uses the DNA-Diffusion corpus instead: 47,872 hg38 200-bp DHS-summit
    sequences, each specific to one of HepG2, K562, GM12878 or hESC. The objectives are a CNN's probabilities
    that a sequence is a HepG2-, K562- or GM12878-specific regulatory element (accessibility specificity, a proxy
    for cell-type activity, not measured activity). Because the training sequences are specific to one cell
    type, the three objectives conflict. A k-mer MLP trained separately (different features and seed) is the
    held-out ``judge``, and a JASPAR motif check (:meth:`domain_metrics`) tells whether high-scoring designs carry
    the known transcription-factor motifs of each cell type (HNF4A/HNF1A/FOXA2/CEBPA, GATA1/TAL1/KLF1/NFE2,
    SPI1/IRF4/RUNX3/EBF1).

    ## Observation Space
    ``MultiDiscrete([260] * 51)``: the generated token ids, padded with ``[PAD]``.

    ## Action Space
    ``Discrete(260)``: ``[PAD]=0 [BOS]=1 [EOS]=2 [UNK]=3`` then the 256 non-overlapping 4-mers in lexicographic
    ACGT order (``AAAA``=4, ``AAAC``=5, ..., ``TTTT``=259).

    ## Rewards
    Three objectives, each a probability in [0, 1] (raw logits in ``info["properties"]["<cell>_logit"]``):

    * ``HepG2``: P(HepG2-specific DHS) from the CNN, averaged over both strands in logit space.
    * ``K562``: P(K562-specific DHS), same CNN.
    * ``GM12878``: P(GM12878-specific DHS), same CNN.

    A sequence that is empty, not exactly 200 bp, contains a letter outside ACGT, or contains a special token
    gets 0 in every objective, ``info["valid"] = False`` and a ``reason``.

    ## Episode End
    One action appends one 4-mer (4 bp). The episode terminates when ``[EOS]`` is chosen and truncates after
    ``max_length = 51`` tokens. Only ``[EOS]`` as the 51st token (after exactly 50 4-mers = 200 bp) gives a valid
    design; an earlier ``[EOS]`` (< 200 bp) or a 51st 4-mer (204 bp, truncation) is invalid. The prior emits
    ``[EOS]`` at position 51 in nearly every sample (see Measured figures).

    ## Arguments
    ``assets_dir`` (the shipped ``assets/``; point it at a copy to test corrupted assets), ``oracle_budget``
    (None: unlimited PMO-style unique-sequence calls), ``prior_likelihood_metric`` (True: ``domain_metrics``
    includes the prior log-likelihood per bp, about 1-3 s per 1,024 sequences on one core), ``top_fraction``
    (0.1: the share of designs, ranked by each objective, whose motifs enter ``motif_enrichment_<cell>``).

    ## Provenance & licenses
    See ``README.md`` beside this file (the env card): DNA-Diffusion data (MIT package, ENCODE DHS index),
    JASPAR 2024 profiles (CC BY 4.0) via pyjaspar, all models trained by ``morbench build-assets enhancer``.

    ## Measured figures
    See ``README.md`` and ``assets/build_report.json``.

    ## Version History
    * v0: initial version.
    """

    rebuild_command = REBUILD_COMMAND

    def __init__(
        self,
        assets_dir: str | Path | None = None,
        oracle_budget: int | None = None,
        prior_likelihood_metric: bool = True,
        top_fraction: float = 0.1,
        render_mode: str | None = None,
    ) -> None:
        if not 0 < top_fraction <= 1:
            raise ConfigError(f"top_fraction must be in (0, 1], got {top_fraction}")
        assets = verify_assets(assets_dir if assets_dir is not None else ASSETS_DIR, REBUILD_COMMAND, RUNTIME_FILES)
        self.assets_dir = assets
        self.prior_likelihood_metric = prior_likelihood_metric
        self.top_fraction = float(top_fraction)
        self.motif_set = MotifSet.from_json(assets / "motifs.json")
        reference = load_reference(assets)
        self.reference_kmer3_counts = np.asarray(reference["test_kmer3_counts"], dtype=np.float64)
        oracle = CellTypeOracle(_load_network(assets, ORACLE_NAME), "CNN oracle", budget=oracle_budget)
        judge = CellTypeOracle(_load_network(assets, JUDGE_NAME), "k-mer MLP judge")
        super().__init__(
            tokenizer=build_dna_tokenizer("kmer4"),
            oracle=oracle,
            judge=judge,
            max_length=tokens_per_sequence("kmer4") + 1,
            preference_grid=simplex_lattice(len(CELL_TYPES), 3),
            reference_point=np.zeros(len(CELL_TYPES)),
            prior_path=assets / "prior",
            render_mode=render_mode,
        )

    @functools.cached_property
    def prior(self):
        """The pretrained 4-mer GPT-2 prior (loaded on first use, manifest-verified; not pickled)."""
        from morbench.models import load_causal_lm

        return load_causal_lm(self.prior_path, rebuild_command=REBUILD_COMMAND)

    def domain_metrics(self, sequences: Sequence[str]) -> dict[str, float]:
        """Naturalness, diversity and motif metrics of the valid designs among ``sequences``.

        * ``num_valid``: designs that are 200-bp ACGT strings (the rest are ignored below).
        * ``kmer3_pearson``: Pearson r of the pooled 3-mer spectrum against the natural chr2 test sequences.
        * ``prior_loglik_per_bp``: mean log-likelihood under the prior, nats per bp (if enabled).
        * ``gc_content``, ``longest_homopolymer``: means over designs.
        * ``median_pairwise_hamming``: over the first 2,048 designs (bp; 150 is the value of random DNA).
        * ``motif_hits_<cell>``: mean JASPAR hits per design of that cell type's motifs (both strands).
        * ``motif_enrichment_<cell>``: mean hits in the top ``top_fraction`` designs by the ``<cell>``
          objective divided by the mean in natural test sequences (1 = as natural, > 1 = enriched).
        """
        valid = [s.upper() for s in sequences if isinstance(s, str) and sequence_problem(s) is None]
        out: dict[str, float] = {"num_valid": float(len(valid))}
        names = ["kmer3_pearson", "gc_content", "longest_homopolymer", "median_pairwise_hamming"]
        if self.prior_likelihood_metric:
            names.append("prior_loglik_per_bp")
        names += [f"motif_hits_{cell}" for cell in CELL_TYPES] + [f"motif_enrichment_{cell}" for cell in CELL_TYPES]
        if not valid:
            return {**out, **{name: float("nan") for name in names}}
        out["kmer3_pearson"] = metrics.kmer_spectrum_correlation(valid, self.reference_kmer3_counts, k=3)
        out["gc_content"] = float(np.mean(metrics.gc_content(valid)))
        out["longest_homopolymer"] = float(np.mean(metrics.longest_homopolymer(valid)))
        out["median_pairwise_hamming"] = metrics.median_pairwise_hamming(valid)
        if self.prior_likelihood_metric:
            loglik = metrics.prior_log_likelihood_per_bp(self.prior, self.tokenizer, valid)
            out["prior_loglik_per_bp"] = float(np.mean(loglik))
        scores = self.oracle.logits(valid)  # ranks only; not counted as oracle calls
        hits = self.motif_set.cell_type_hits(valid)
        for j, cell in enumerate(CELL_TYPES):
            out[f"motif_hits_{cell}"] = float(hits[cell].mean())
            out[f"motif_enrichment_{cell}"] = motif_enrichment(
                hits[cell], scores[:, j], self.motif_set.background_rate[cell], self.top_fraction
            )
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("prior", None)  # reloaded on demand
        return state


make_vec = vector_entry_point(EnhancerEnv)
