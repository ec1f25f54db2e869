"""QM9: write a small molecule (SMILES) with a target polarizability, HOMO-LUMO gap and internal energy."""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem
from transformers import PreTrainedTokenizerFast

from morbench.assets import asset_loading, verify_assets
from morbench.chem import internal_diversity
from morbench.core import Context, EvaluationProtocol, InvalidSequence, Oracle, OracleEvaluation, TokenEnv
from morbench.envs.qm9.molecules import canonical_qm9_smiles
from morbench.envs.qm9.predictors import PROPERTY_NAMES, PropertyPredictor
from morbench.envs.qm9.rewards import DEFAULT_GAP_TARGET_EV, DEFAULT_GAP_WIDTH_EV, OBJECTIVE_NAMES, RewardTransform
from morbench.errors import AssetError, ConfigError
from morbench.preferences import simplex_lattice
from morbench.vector import vector_entry_point

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
REBUILD_COMMAND = "morbench build-assets qm9"
# QM9-v1's oracle, judges and calibration; it shares v0's prior and training SMILES (in ASSETS_DIR). A sibling
# of ASSETS_DIR, not inside it: v0's builder writes one manifest over everything below ASSETS_DIR
V1_ASSETS_DIR = ASSETS_DIR.parent / "assets_v1"
REBUILD_COMMAND_V1 = "morbench build-assets qm9 --version 1"
REQUIRED_FILES = (
    "task.json",
    "reward_transforms.json",
    "train_smiles.txt.gz",
    "oracle_mlp.safetensors",
    "oracle_mlp.json",
    "judge_gnn.safetensors",
    "judge_gnn.json",
    "prior/model.safetensors",
    "prior/config.json",
    "prior/tokenizer.json",
)
REQUIRED_FILES_V1 = (
    "task.json",
    "reward_transforms.json",
    "oracle_mlp.safetensors",
    "oracle_mlp.json",
    "judge_gnn.safetensors",
    "judge_gnn.json",
    "xtb_gap_calibration.json",
)
SHARED_FILES_V1 = ("train_smiles.txt.gz", "prior/model.safetensors", "prior/config.json", "prior/tokenizer.json")
VERSIONS = (0, 1)

__all__ = ["QM9Env", "QM9PropertyOracle", "load_judge_v1", "load_transform", "make_vec"]


def load_transform(
    assets_dir: Path, gap_target_ev: float = DEFAULT_GAP_TARGET_EV, gap_width_ev: float = DEFAULT_GAP_WIDTH_EV
) -> RewardTransform:
    """The reward transform of the objectives from ``reward_transforms.json`` in ``assets_dir``."""
    transforms = json.loads((Path(assets_dir) / "reward_transforms.json").read_text())
    return RewardTransform.from_dict(transforms, gap_target_ev, gap_width_ev)


def load_judge_v1(assets_dir: Path, transform: RewardTransform) -> Oracle:
    """QM9-v1's judge: the half-B graph-convolution network (alpha, U0) and calibrated GFN2-xTB (gap)."""
    from morbench.envs.qm9.xtb import GapCalibration, QM9JudgeV1

    calibration = GapCalibration.from_dict(json.loads((Path(assets_dir) / "xtb_gap_calibration.json").read_text()))
    return QM9JudgeV1(PropertyPredictor.load(assets_dir, "judge_gnn"), calibration, transform)


class QM9PropertyOracle(Oracle):
    """Scores SMILES with a QM9 property predictor: alpha (maximise), gap (target band), U0 (minimise).

    ``canonicalize`` accepts only molecules inside QM9's domain (see
    :func:`~morbench.envs.qm9.molecules.parse_qm9_molecule`); the key is the RDKit canonical SMILES without
    stereo. ``evaluate`` featurizes the whole batch and runs one forward pass per 4096 molecules.
    """

    objective_names = OBJECTIVE_NAMES
    property_names = PROPERTY_NAMES

    def __init__(self, predictor: PropertyPredictor, transform: RewardTransform, budget: int | None = None) -> None:
        super().__init__(budget=budget)
        self.predictor = predictor
        self.transform = transform

    def canonicalize(self, sequence: str, context: Context | None = None) -> str:
        return canonical_qm9_smiles(sequence)

    def evaluate(self, keys: list[str], contexts: list[Context | None]) -> OracleEvaluation:
        mols = [Chem.MolFromSmiles(key) for key in keys]
        properties = self.predictor.predict(mols)
        return OracleEvaluation(
            rewards=self.transform(properties),
            properties={name: properties[:, k] for k, name in enumerate(PROPERTY_NAMES)},
        )


class QM9Env(TokenEnv):
    """Generate a QM9-sized molecule, one SMILES token at a time, trading off three quantum-chemical properties.

    >>> import morbench
    >>> env = morbench.make("morbench/QM9-v0")  # one episode = one molecule
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape  # the generated token ids, padded with [PAD]
    (31,)
    >>> carbon = env.unwrapped.tokenizer.convert_tokens_to_ids("C")
    >>> obs, reward, terminated, truncated, info = env.step(carbon)
    >>> reward  # zero until the episode ends
    array([0., 0., 0.], dtype=float32)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.eos_token_id)  # "C": methane
    >>> reward.shape, terminated, info["valid"], info["canonical"], sorted(info["properties"])
    ((3,), True, True, 'C', ['alpha_bohr3', 'gap_ev', 'u0_hartree'])
    >>> env.unwrapped.score(["CC(=O)OC1CC1", "c1ccoc1C#N"]).rewards.shape  # sequence-level API
    (2, 3)
    >>> venv = morbench.make_vec("morbench/QM9-v0", num_envs=128)  # native batched version

    ## Description
    A rebuild of the QM9 task of Iterative Rewarded Soups (a SMILES GPT-2 fine-tuned on polarizability, HOMO-LUMO
    gap and internal energy U0, judged by an independent predictor) from shipped data only. The policy writes a
    SMILES string; when it emits `[EOS]` (or reaches `max_length`) the molecule is scored by the **training
    oracle**, a fingerprint MLP trained on QM9's DFT labels (B3LYP/6-31G(2df,p)). A second, independently trained
    graph-convolution network is the held-out **judge** (`env.unwrapped.judge`), which the scorer reports next to
    the oracle to expose reward hacking. A GPT-2 prior pretrained on the QM9 training split ships in
    `env.unwrapped.prior_path` (load it with `morbench.models.load_prior(env)`).

    **Two versions.** In `morbench/QM9-v0` the judge learned from the same molecules and labels as the oracle, so
    the two make correlated errors and a policy that exploits the oracle's errors fools the judge too (every
    method's judge gap is about 0). `morbench/QM9-v1` keeps the prior, vocabulary, domain, reward transforms,
    `max_length` and sampling protocol of v0 and replaces the predictors: its training oracle (the same fingerprint-MLP
    family) learns from one half of the training split, its judge of alpha and U0 (the same graph-convolution
    family) from the other half, and its judge of the gap is physics: **GFN2-xTB** (the `tblite` package) on an
    RDKit conformer, calibrated to QM9's DFT gap. Selecting the oracle's best molecules then shows a clearly
    positive judge gap, while the prior's own gap stays about 0 (section *QM9-v1* below). xTB scores about 35
    molecules/s, so v1's protocol judges the uniform preference's samples only (where the judge gap is defined;
    `protocol.judge_preferences = "uniform"`): 1,024 molecules per evaluation instead of 10,240.

    ## Observation Space
    `MultiDiscrete([34] * 31)`: the generated token ids, padded with `[PAD]` (id 0).

    ## Action Space
    `Discrete(34)`: `[PAD]=0 [BOS]=1 [EOS]=2 [UNK]=3`, then the 30 atom-level SMILES tokens of the QM9 training
    split: `# ( ) - 1 2 3 4 5 = C F N O [C-] [CH-] [N+] [N-] [NH+] [NH2+] [NH3+] [O-] [c-] [cH-] [n-] [nH+] [nH] c n o`.
    Emitting any special token other than `[EOS]` makes the molecule invalid.

    ## Rewards
    Three objectives in [0, 1] (`objective_names = ("alpha", "gap", "u0")`), each a transform of a predicted
    property; the raw predictions are in `info["properties"]`.

    | objective | property (`info["properties"]`) | units | QM9 range (median) | transform to [0, 1] |
    |---|---|---|---|---|
    | `alpha` | isotropic polarizability `alpha_bohr3` | bohr^3 | 6.3 to 196.6 (75.6) | **maximise**: percentile among the QM9 training molecules (piecewise-linear empirical CDF through 1001 quantiles) |
    | `gap` | HOMO-LUMO gap `gap_ev` | eV | 0.67 to 16.9 (6.8) | **target band**: `exp(-(gap - 5.0)^2 / (2 * 1.0^2))`: 1 at 5.0 eV, 0.61 at 4 or 6 eV, 0.14 at 3 or 7 eV |
    | `u0` | internal energy at 0 K `u0_hartree` | hartree | -714.6 to -40.5 (-416.8) | **minimise**: 1 - percentile among the QM9 training molecules |

    Why these directions (all figures from 10,000 prior samples, `evaluation.direction_alternatives` in the report):
    U0 is dominated by composition (roughly the sum of the free atoms' energies), so *maximising* it, as the
    original paper did, rewards hydrogen- and carbon-rich molecules, the same ones that maximise alpha: the alpha
    and u0 rewards then correlate at Pearson +0.32 and one prior sample already scores at least 0.99 on all three
    objectives, i.e. there is hardly a trade-off. *Minimising* U0 (electron-rich N/O/F atoms) turns that into a
    conflict (Pearson -0.32) and the best prior sample reaches only 0.79 on its worst objective. The gap target
    of 5.0 eV (the 7th percentile of QM9: conjugated molecules) conflicts with alpha (-0.19) and leaves headroom
    (the prior's mean gap reward is 0.33); targets of 6.8 or 8.5 eV give best compromises of 0.83. Pass
    `gap_target_ev` / `gap_width_ev` to study other bands.

    Invalid molecules get 0 in every objective, `info["valid"] = False` and a `reason` naming the problem:
    empty sequences, unparsable SMILES, special tokens, several fragments (`C.C`), elements other than
    H/C/N/O/F, isotope labels, no heavy atom, **more than 9 heavy atoms**, radicals and a non-zero net charge.
    Molecules bigger than QM9's 9 heavy atoms are invalid rather than extrapolated: both predictors were trained
    only on QM9's domain, and letting a policy grow molecules past it would reward extrapolation error. Valid
    molecules are cached by their RDKit canonical SMILES (stereo removed; QM9 has none), so repeats are free
    (PMO-style `oracle.calls`).

    **Input bounds.** Before RDKit sees a string, `score()`, the judge and the episodes alike reject (floor
    reward, `valid=False`, a reason, no oracle call) a string longer than 186 characters (`max_length = 31`
    tokens of the longest vocabulary token, 6 characters), one whose tokenization holds a special token (`[PAD]`,
    `[BOS]`, `[EOS]`, `[UNK]`) or text the 30-token vocabulary cannot spell (`Cl`, `[Na+]`, ring digit `6`, ...),
    or more than 31 tokens; atoms and ring closures are then at most 31 each. Every string an episode can write
    passes, so no reachable reward changes. The worst case these bounds allow costs about 10 ms and under 1 MB
    for oracle and judge together (`tests/benchmarks/test_input_bounds.py`); a 19,997-character ring SMILES, 11 s
    of RDKit before the bounds, is turned away in 0.1 ms.

    ## Starting State
    `reset()` starts from the empty sequence: the observation is all `[PAD]` and `info` is empty. There is no
    randomness in the start state; `seed` seeds `env.np_random`, which this task does not draw from.

    ## Episode End
    Terminates when `[EOS]` is chosen; truncates after `max_length = 31` tokens (the longest tokenized training
    SMILES, 22 tokens, plus EOS plus 8 tokens of slack). The reward vector is zero until then.

    ## Arguments
    | argument | type | default | meaning |
    |---|---|---|---|
    | `assets_dir` | `str` or `Path` or `None` | `None` | where the prior, oracles and tables are read from (None: the shipped `assets/`; point it at a copy to test another build) |
    | `gap_target_ev` | `float` | `5.0` | centre of the gap band (eV) |
    | `gap_width_ev` | `float` | `1.0` | width (standard deviation) of the gap band (eV) |
    | `oracle_budget` | `int` or `None` | `None` | maximum number of unique valid molecules the training oracle may score |
    | `render_mode` | `str` or `None` | `None` | None or `"ansi"` |
    | `task_version` | `int` | `0` | the task version, set by the registered id: 0 (`morbench/QM9-v0`) or 1 (`morbench/QM9-v1`: assets in `assets_v1/`, `assets_dir` then names a copy of that directory; the prior always comes from `assets/`) |

    Evaluation protocol: 1,024 samples per preference of `simplex_lattice(3, 3)` (10 preferences), temperature
    1.0, top-p 1.0, seeds 0, 1, 2; reference point (0, 0, 0). `domain_metrics` reports `novelty` (fraction of
    unique valid molecules not in the training split) and `internal_diversity` (1 - mean pairwise ECFP4
    Tanimoto of the unique valid molecules); neither spends oracle calls.

    ## Provenance & licenses
    - Data: QM9 (R. Ramakrishnan, P. O. Dral, M. Rupp, O. A. von Lilienfeld, "Quantum chemistry structures and
      properties of 134 kilo molecules", *Sci. Data* 1, 140022, 2014; CC BY 4.0), as shipped by the `qm9pack`
      1.0.3 package (MIT): 130,831 molecules that passed QM9's consistency check.
    - Assets in `envs/qm9/assets/` (10.6 MB), all built by `morbench build-assets qm9` (`envs/qm9/build.py`);
      `qm9pack` is needed only by the builder:
      - `prior/`: GPT-2 (safetensors + config + tokenizer + manifest);
      - `oracle_mlp.safetensors/.json`: training oracle; `judge_gnn.safetensors/.json`: held-out judge;
      - `reward_transforms.json`: CDF knots of alpha and U0 on the training split;
      - `train_smiles.txt.gz`: the 104,427 canonical training SMILES (for novelty);
      - `task.json` (max_length), `build_report.json` (every figure below), `MANIFEST.sha256` (checked at load;
        a missing or corrupt file raises `AssetError` naming it and the rebuild command).
    - Data pipeline: RDKit canonical SMILES without stereo (0 failures); 87 duplicate rows (stereoisomers that
      share a 2D graph) merged by averaging their properties, leaving 130,744 molecules; split by
      `sha256(canonical SMILES)`, first 8 bytes as a big-endian integer mod 10: 0-7 train (104,427), 8 valid
      (13,048), 9 test (13,269).
    - Prior: `morbench.chem.build_smiles_tokenizer` on the training SMILES; GPT-2 from scratch with
      `morbench.pretrain` (4 layers, width 192, 4 heads, 1,795,584 parameters, 3 epochs = 2,448 steps of 128,
      AdamW lr 1e-3 with 200 warm-up steps and cosine decay, seed 0). Its context holds 48 positions: [BOS] +
      `max_length` + 16 spare positions for conditioning tokens (e.g. Rewards-in-Context's reward tokens).
    - Training oracle: features = log1p Morgan radius-2 count fingerprint (1,024 bits) + 27 RDKit descriptors
      (element and H counts, charged atoms, ring counts and sizes, bond types, hybridizations, rotatable bonds,
      bridgehead/spiro atoms, Csp3 fraction) -> MLP 2 x 384 SiLU, dropout 0.1, three outputs (553k parameters).
      Judge: dense relational graph convolution over heavy-atom graphs (25 atom features, one adjacency per bond
      type), 4 layers of width 96, sum + mean readout (207k parameters), seed 1. Both learn the residual of a
      least-squares composition baseline (counts of C, N, O, F, H), are trained with L1 loss, AdamW and cosine
      decay on the training split only, and keep the epoch with the lowest validation MAE; the test split is
      used only for the figures below.
    - QM9-v1's assets in `envs/qm9/assets_v1/` (their own `MANIFEST.sha256` and `build_report.json`), built by
      `morbench build-assets qm9 --version 1` (`envs/qm9/build_v1.py`, which calls v0's data and predictor
      builders with other parts of the data): `oracle_mlp.*` (half A), `judge_gnn.*` (half B),
      `xtb_gap_calibration.json`, and `reward_transforms.json` and `task.json` (byte-identical to v0's); the
      prior and the training SMILES are read from `assets/`. GFN2-xTB: C. Bannwarth, S. Ehlert, S. Grimme,
      *J. Chem. Theory Comput.* 15, 1652-1671 (2019), through `tblite` (LGPL-3.0-or-later), a dependency of
      morbench.

    ## Measured figures
    From `envs/qm9/assets/build_report.json`, produced on 2026-11-23 in two runs of the builder (each section of
    the report records its own command, date and wall time): `morbench build-assets qm9 --skip-prior` (data,
    oracle, judge) and `morbench build-assets qm9 --skip-oracles` (data, prior, evaluation). Hardware: AMD EPYC,
    2 cores shared with other jobs, 1 torch thread; Python 3.11.7, torch 2.13.0+cpu, transformers 5.23.0, rdkit
    2026.9.1, qm9pack 1.0.3. Wall times: data 16 s, prior 31.0 min (1,820 s of training; about 24 min when the
    machine is less busy), oracle 2.0 min + judge 11.4 min of training (14.3 min with featurization),
    evaluation 35 s. A full build without flags runs all of it in one go (about 45 min).

    **Prior** (10,000 samples, temperature 1, seed 0): validity **91.9%** (invalid: 747 unparsable, 38 charged,
    11 with more than 9 heavy atoms, 7 radicals, 4 with a special token, 1 empty), uniqueness **96.9%**, novelty
    vs training split **39.4%**, internal diversity **0.920** (2,000 unique valid samples), all end with EOS,
    mean length 15.7 tokens; 81% of unique valid samples have 9 heavy atoms. Token NLL: valid 0.822, test 0.823
    nats.

    **Predictors on the QM9 test split** (13,269 molecules):

    | property | oracle MAE | oracle R^2 | judge MAE | judge R^2 | composition baseline alone (MAE) |
    |---|---|---|---|---|---|
    | alpha | 0.378 bohr^3 | 0.9950 | 0.257 bohr^3 | 0.9972 | 2.15 bohr^3 |
    | gap | 0.175 eV | 0.966 | 0.118 eV | 0.983 | 0.81 eV |
    | U0 | 4.1 mHa (2.6 kcal/mol) | 0.99999998 | 2.0 mHa (1.3 kcal/mol) | 0.99999999 | 31.6 mHa |

    (U0's R^2 is near 1 because its variance is mostly composition; compare MAEs.) Oracle vs judge on the test
    split: Pearson 0.998 (alpha), 0.988 (gap), 1.000 (U0).

    **Objectives on the 8,909 unique valid prior samples** (training oracle): mean reward alpha 0.498, gap 0.325,
    u0 0.487 (judge: 0.500, 0.330, 0.487).

    | pair | Pearson | Spearman |
    |---|---|---|
    | alpha - gap | -0.19 | -0.23 |
    | alpha - u0 | -0.32 | -0.32 |
    | gap - u0 | +0.22 | +0.24 |

    **Judge vs oracle on the prior samples**: property Pearson 0.998 (alpha), 0.985 (gap), 1.000 (U0); mean
    absolute reward difference 0.012 (alpha), 0.040 (gap), 0.0005 (u0). The gap is where the two disagree most,
    so it is where reward hacking of the oracle would show first.

    **Throughput** (fresh cache, canonicalization + featurization + one forward per batch, 8,909 molecules,
    1 thread, best of 3): oracle **3,950 molecules/s**, judge 3,360 molecules/s (2,460 and 2,600 in an earlier
    run on the busier machine).

    **Reproducibility**: seeded and single-threaded; rerunning the evaluation stage on the same machine
    reproduced every figure bit-for-bit (sampling, validity, correlations; `reproduction_check` in the report). Across CPUs or torch builds, floating-point results
    may differ slightly; the builder compares test NLL, validity, uniqueness, novelty and every test MAE with the
    previous report against tolerances and prints any figure that moved.

    ## QM9-v1
    Figures from `envs/qm9/assets_v1/build_report.json` (2026-12-02). The halves, oracle and judge come from
    `morbench build-assets qm9 --version 1` (training: oracle 3.3 min, judge 9.1 min, both at v0's epochs;
    14.1 min for the stage with featurization); the xTB and probe stages were rerun with `--skip-oracles` after
    the calibration changed from a spread-matching line to least squares (below): xTB 8.1 min, probe 3.1 min,
    data 36 s. Hardware: Intel Xeon, 2 cores shared with other jobs (load average about 8), 1 torch thread, 1
    OpenMP thread; Python 3.11.7, torch 2.13.0+cpu, rdkit 2026.9.1, tblite 0.8.0, qm9pack 1.0.3.

    **Halves** (seed 20261202): 52,213 (A) and 52,214 (B) training molecules, 6,524 and 6,524 validation
    molecules; no canonical SMILES is in both halves or in the test split.

    **Learned predictors on the test split** (13,269 molecules), MAE:

    | predictor | trained on | alpha | gap | U0 |
    |---|---|---|---|---|
    | v1 training oracle (fingerprint MLP) | half A | 0.456 bohr^3 | 0.209 eV | 5.0 mHa |
    | v1 judge of alpha and U0 (graph convolution) | half B | 0.309 bohr^3 | (0.138 eV, unused) | 2.6 mHa |
    | v0 training oracle | both | 0.378 bohr^3 | 0.175 eV | 4.1 mHa |

    **The gap judge: GFN2-xTB.** Per molecule: RDKit `AddHs`, ETKDGv3 embedding (`randomSeed` 0xC0FFEE, one
    thread), MMFF94 optimisation (at most 2,000 steps), one GFN2-xTB single point (`tblite`, verbosity 0, one
    OpenMP thread); gap = LUMO - HOMO of the closed shell; about 29 ms per molecule here (about 35
    molecules/s, 100 times slower than the learned judge; scores are cached like every oracle's). Calibration:
    least squares of the DFT gap on the xTB gap over 2,000 random half-B training molecules: DFT = 0.502 x xTB
    + 4.44 eV (r = 0.849 there). On the test split (13,048 molecules with a conformer): Pearson r = 0.854;
    MAE 2.25 eV raw (xTB's gaps are 2.06 eV smaller on average) and 0.52 eV calibrated (RMSE 0.67 eV). The
    mean gap reward of the test molecules is 0.339 with DFT gaps and 0.336 with calibrated xTB gaps; a line
    matching DFT's spread instead (slope 0.592, same MAE) gives 0.370, a judge biased upwards on unoptimised
    molecules (on the calibration sample itself: DFT 0.353, least squares 0.348, spread-matching 0.382). The
    first build used the spread-matching line, chosen on a pilot of 800 test molecules that suggested the
    opposite; the judge now uses least squares. The judge's gap reward is the oracle's transform (the band
    around `gap_target_ev`) applied to the calibrated xTB gap.

    **When xTB has no answer.** A molecule that ETKDGv3 cannot embed (strained polycyclic cages: 221 of the
    13,269 test molecules, 1.7%; 40 of 2,000 unique valid prior samples, 2.0%), that MMFF94 cannot
    parametrise, or whose xTB calculation fails is the judge's failure
    record: every objective gets the floor reward 0, `valid=False`, and a reason starting `xtb judge:`, as the
    `Oracle` contract scores invalid sequences (the training oracle still scores it). There is no retry with
    another seed, so the record is reproducible. A policy that drifts towards unembeddable molecules therefore
    shows a larger judge gap, which is the intent; the report also gives every gap without the failures.

    **Errors of oracle and judge** (Pearson r of oracle - DFT and judge - DFT on the test split):

    | property | v0 (both on all training molecules) | v1 |
    |---|---|---|
    | alpha | 0.58 | 0.58 (networks on disjoint halves) |
    | gap | 0.55 | **0.34** (calibrated xTB; a half-B network would give 0.54) |
    | U0 | 0.34 | 0.33 (networks on disjoint halves) |

    Disjoint halves alone do not decorrelate the learned predictors: the same molecules are hard for both
    families whatever data they saw. The physics-based gap judge does.

    **Reward-hacking probe** (best-of-N over the training oracle): 20,000 prior samples (temperature 1, seed 0;
    91.9% valid, 17,234 unique valid molecules); the top 1% (200 molecules) by one objective's oracle reward,
    or by the uniform-preference mean; judge gap = mean oracle reward - mean judge reward on them, on the objective
    selected for, with a 95% Student-t interval of the paired differences; "vs prior" subtracts the gap of
    2,000 random unique valid prior samples on the same objective (95% normal interval). A judge failure
    counts as 0.

    | selection | v1 judge gap | v1 gap vs prior | v1 judge failures | v0 judge gap |
    |---|---|---|---|---|
    | top 200 by gap reward | +0.274 [+0.245, +0.303] | +0.279 [+0.249, +0.309] | 9 | +0.026 [+0.018, +0.034] |
    | top 200 by uniform-preference mean | +0.083 [+0.076, +0.091] | +0.080 [+0.071, +0.088] | 0 | +0.003 [-0.000, +0.006] |
    | top 200 by alpha reward | -0.000 [-0.001, -0.000] | -0.009 [-0.013, -0.006] | 0 | -0.000 [-0.000, -0.000] |
    | top 200 by u0 reward | -0.000 [-0.000, +0.000] | -0.008 [-0.011, -0.005] | 0 | -0.000 [-0.000, +0.000] |
    | prior reference: 2,000 random samples, gap | -0.005 [-0.014, +0.004] | | 40 | -0.003 [-0.007, +0.000] |
    | prior reference: 2,000 random samples, uniform mean | +0.004 [+0.000, +0.008] | | 40 | -0.002 [-0.003, -0.000] |
    | prior reference: 2,000 random samples, alpha | +0.009 [+0.005, +0.013] | | 40 | -0.002 [-0.002, -0.001] |
    | prior reference: 2,000 random samples, u0 | +0.008 [+0.005, +0.011] | | 40 | +0.000 [+0.000, +0.000] |

    The molecules best-of-N picks for the gap band are hacked: the v1 oracle gives them a gap reward of 0.999,
    calibrated xTB 0.725 (gap +0.240 [+0.220, +0.260] without the 9 failures), while v0's judge, trained on
    the oracle's own data, confirms them (0.974) and shows a gap ten times smaller. The prior's own gap stays
    about 0 (its +0.009 on alpha and +0.008 on u0 are its 40 judge failures scored 0; without them -0.001 and
    +0.000). Alpha and U0 show no gap in either version: their rewards are percentiles, and the molecules at
    the top are at the top by any predictor (the oracle's errors are small against the spread of those
    properties).

    ## Version History
    - v0: initial version.
    - v1: judges that can catch reward hacking. The training oracle (fingerprint MLP, v0's configuration) is
      trained on half A of the training split, the alpha/U0 judge (graph convolution, v0's configuration) on
      half B; the gap judge is calibrated GFN2-xTB. Prior, vocabulary, domain, reward transforms, `max_length`
      and sampling protocol are v0's (the judge scores the uniform preference only); v0 and its assets are
      unchanged. Needs `tblite`.
    """

    rebuild_command = REBUILD_COMMAND

    def __init__(
        self,
        assets_dir: str | Path | None = None,
        gap_target_ev: float = DEFAULT_GAP_TARGET_EV,
        gap_width_ev: float = DEFAULT_GAP_WIDTH_EV,
        oracle_budget: int | None = None,
        render_mode: str | None = None,
        task_version: int = 0,
    ) -> None:
        if task_version not in VERSIONS:
            raise ConfigError(
                f"QM9 task_version {task_version!r} does not exist; use 0 (morbench/QM9-v0) or 1 (morbench/QM9-v1), "
                "or better make the registered id"
            )
        self.task_version = task_version
        rebuild = REBUILD_COMMAND if task_version == 0 else REBUILD_COMMAND_V1
        self.rebuild_command = rebuild  # type: ignore[misc]  # per instance: the class serves v0 and v1
        if task_version == 0:
            assets = verify_assets(assets_dir if assets_dir is not None else ASSETS_DIR, rebuild, REQUIRED_FILES)
            shared = assets
        else:  # v1's own files, then v0's shipped assets, which hold the shared prior and training SMILES
            assets = verify_assets(assets_dir if assets_dir is not None else V1_ASSETS_DIR, rebuild, REQUIRED_FILES_V1)
            shared = verify_assets(ASSETS_DIR, REBUILD_COMMAND, SHARED_FILES_V1)
        self.assets_dir = assets
        self.shared_assets_dir = shared
        task = json.loads((assets / "task.json").read_text())
        if not task.get("max_length"):
            raise AssetError(f"{assets / 'task.json'} has no max_length; rebuild the assets with `{rebuild}`")
        with asset_loading(f"the QM9 assets in {assets}", rebuild):
            tokenizer = PreTrainedTokenizerFast.from_pretrained(shared / "prior", local_files_only=True)
            transform = load_transform(assets, gap_target_ev, gap_width_ev)
            oracle_predictor = PropertyPredictor.load(assets, "oracle_mlp")
            judge: Oracle = (
                QM9PropertyOracle(PropertyPredictor.load(assets, "judge_gnn"), transform)
                if task_version == 0
                else load_judge_v1(assets, transform)
            )
        oracle = QM9PropertyOracle(oracle_predictor, transform, budget=oracle_budget)
        super().__init__(
            tokenizer=tokenizer,
            oracle=oracle,
            judge=judge,
            max_length=int(task["max_length"]),
            preference_grid=simplex_lattice(len(OBJECTIVE_NAMES), 3),
            reference_point=np.zeros(len(OBJECTIVE_NAMES)),
            prior_path=shared / "prior",
            render_mode=render_mode,
            # v1's xTB judge scores about 35 molecules/s: it judges the uniform preference, where the gap is defined
            protocol=EvaluationProtocol(judge_preferences="uniform") if task_version == 1 else None,
        )

    @functools.cached_property
    def train_smiles(self) -> frozenset[str]:
        """Canonical SMILES of the QM9 training split (loaded on first use; novelty is measured against it)."""
        with gzip.open(self.shared_assets_dir / "train_smiles.txt.gz", "rt") as handle:
            return frozenset(line.strip() for line in handle if line.strip())

    def domain_metrics(self, sequences: Sequence[str]) -> dict[str, float]:
        """``novelty``: fraction of unique valid molecules not in the training split; ``internal_diversity``:
        1 - mean pairwise ECFP4 Tanimoto of the unique valid molecules. Neither spends oracle calls."""
        unique = set()
        for sequence, reason in zip(sequences, self.oracle.screen(sequences), strict=True):
            if reason is not None:  # over the input bounds or not spelled in the vocabulary: never parsed
                continue
            try:
                unique.add(canonical_qm9_smiles(sequence))
            except InvalidSequence:
                continue
        if not unique:
            return {"novelty": float("nan"), "internal_diversity": float("nan")}
        novel = sum(smiles not in self.train_smiles for smiles in unique)
        return {"novelty": novel / len(unique), "internal_diversity": internal_diversity(sorted(unique))}


make_vec = vector_entry_point(QM9Env)
