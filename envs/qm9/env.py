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
from morbench.core import Context, InvalidSequence, Oracle, OracleEvaluation, TokenEnv
from morbench.envs.qm9.molecules import canonical_qm9_smiles
from morbench.envs.qm9.predictors import PROPERTY_NAMES, PropertyPredictor
from morbench.envs.qm9.rewards import DEFAULT_GAP_TARGET_EV, DEFAULT_GAP_WIDTH_EV, OBJECTIVE_NAMES, RewardTransform
from morbench.errors import AssetError
from morbench.preferences import simplex_lattice
from morbench.vector import vector_entry_point

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
REBUILD_COMMAND = "morbench build-assets qm9"
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

__all__ = ["QM9Env", "QM9PropertyOracle", "make_vec"]


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

    ## Description
    A rebuild of the QM9 task of Iterative Rewarded Soups (a SMILES GPT-2 fine-tuned on polarizability, HOMO-LUMO
    gap and internal energy, judged by an independent predictor) from shipped data only. The policy writes a
    SMILES string; when it emits ``[EOS]`` (or reaches ``max_length``) the molecule is scored by a training
    oracle, a fingerprint MLP trained on QM9 (DFT B3LYP/6-31G(2df,p) labels, Ramakrishnan et al. 2014). A
    second, independently trained graph-convolution network is the held-out ``judge`` that evaluation reports
    next to the oracle, to expose reward hacking of the training oracle. A GPT-2 prior pretrained on the QM9
    training split ships in ``prior_path``.

    ## Observation Space
    ``MultiDiscrete([34] * 31)``: the generated token ids, padded with ``[PAD]`` (id 0).

    ## Action Space
    ``Discrete(34)``: ``[PAD]=0 [BOS]=1 [EOS]=2 [UNK]=3`` followed by the 30 atom-level SMILES tokens seen in
    the QM9 training split (atoms C N O F c n o, charged bracket atoms such as ``[NH3+]``, bonds, branches,
    ring-closure digits). Emitting any special token other than ``[EOS]`` makes the molecule invalid.

    ## Rewards
    Three objectives in [0, 1], each a transform of a predicted property (raw values in ``info["properties"]``):

    * ``alpha``: isotropic polarizability ``alpha_bohr3`` (bohr^3; QM9 range 6.3-196.6), maximised: its
      percentile among the QM9 training molecules (piecewise-linear empirical CDF, 1001 knots).
    * ``gap``: HOMO-LUMO gap ``gap_ev`` (eV; QM9 range 0.7-16.9, median 6.8), a target band:
      ``exp(-(gap - gap_target_ev)^2 / (2 gap_width_ev^2))``, 1 at 5.0 eV by default.
    * ``u0``: internal energy at 0 K ``u0_hartree`` (hartree; QM9 range -714.6 to -40.5), minimised:
      ``1 -`` its percentile among the QM9 training molecules. U0 is dominated by composition (about the sum
      of the free atoms' energies), so maximising it, as the original paper did, rewards hydrogen- and
      carbon-rich molecules, the same ones that maximise alpha: on 10,000 prior samples the alpha and u0
      rewards would correlate at +0.32 and one sample would already score >= 0.99 on all three objectives.
      Minimised, they correlate at -0.32 and the best sample's worst objective is 0.79.

    Invalid sequences get 0 in every objective, ``info["valid"] = False`` and a ``reason``: empty strings,
    unparsable SMILES, several fragments, elements other than H/C/N/O/F, isotopes, no heavy atom, **more than
    9 heavy atoms** (outside QM9, where the oracle would only extrapolate), radicals and non-zero net charge.

    ## Episode End
    Terminates when ``[EOS]`` is chosen; truncates after ``max_length = 31`` tokens (the longest tokenized
    training SMILES, 22 tokens, plus EOS plus 8 tokens of slack); the reward vector is zero until then.

    ## Arguments
    ``assets_dir`` (the shipped ``assets/``; point it at a copy to test other builds), ``gap_target_ev`` (5.0),
    ``gap_width_ev`` (1.0), ``oracle_budget`` (None: unlimited PMO-style oracle calls), ``render_mode``
    (None or "ansi").

    ## Provenance & licenses
    Data: QM9 (Ramakrishnan, Dral, Rupp, von Lilienfeld, Sci. Data 1, 140022, 2014; CC BY 4.0) as shipped by
    the ``qm9pack`` 1.0.3 package (MIT). All assets (prior, oracle, judge, CDF knots, training SMILES) are
    built by ``morbench build-assets qm9``; the package is needed only by that builder.

    ## Measured figures
    From ``assets/build_report.json`` (``morbench build-assets qm9``; 1 thread of a shared 2-core AMD EPYC):
    prior validity 91.9%, uniqueness 96.9%, novelty 39.4%, internal diversity 0.920 (10,000 samples).
    Test MAE oracle / judge: alpha 0.378 / 0.257 bohr^3, gap 0.175 / 0.118 eV, U0 4.1 / 2.0 mHa.
    Reward correlations on prior samples (Pearson): alpha-gap -0.19, alpha-u0 -0.32, gap-u0 +0.22.
    Oracle throughput 3,950 molecules/s. Details and wall times: ``envs/qm9/README.md``.

    ## Version History
    * v0: initial version.
    """

    rebuild_command = REBUILD_COMMAND

    def __init__(
        self,
        assets_dir: str | Path | None = None,
        gap_target_ev: float = DEFAULT_GAP_TARGET_EV,
        gap_width_ev: float = DEFAULT_GAP_WIDTH_EV,
        oracle_budget: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        assets = verify_assets(assets_dir if assets_dir is not None else ASSETS_DIR, REBUILD_COMMAND, REQUIRED_FILES)
        self.assets_dir = assets
        task = json.loads((assets / "task.json").read_text())
        if not task.get("max_length"):
            raise AssetError(f"{assets / 'task.json'} has no max_length; rebuild the assets with `{REBUILD_COMMAND}`")
        with asset_loading(f"the QM9 assets in {assets}", REBUILD_COMMAND):
            tokenizer = PreTrainedTokenizerFast.from_pretrained(assets / "prior", local_files_only=True)
            transforms = json.loads((assets / "reward_transforms.json").read_text())
            transform = RewardTransform.from_dict(transforms, gap_target_ev, gap_width_ev)
            oracle_predictor = PropertyPredictor.load(assets, "oracle_mlp")
            judge_predictor = PropertyPredictor.load(assets, "judge_gnn")
        oracle = QM9PropertyOracle(oracle_predictor, transform, budget=oracle_budget)
        judge = QM9PropertyOracle(judge_predictor, transform)
        super().__init__(
            tokenizer=tokenizer,
            oracle=oracle,
            judge=judge,
            max_length=int(task["max_length"]),
            preference_grid=simplex_lattice(len(OBJECTIVE_NAMES), 3),
            reference_point=np.zeros(len(OBJECTIVE_NAMES)),
            prior_path=assets / "prior",
            render_mode=render_mode,
        )

    @functools.cached_property
    def train_smiles(self) -> frozenset[str]:
        """Canonical SMILES of the QM9 training split (loaded on first use; novelty is measured against it)."""
        with gzip.open(self.assets_dir / "train_smiles.txt.gz", "rt") as handle:
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
