"""``morbench build-assets cns``, the models: the GPT-2 prior pretrained on ZINC250k's training split, and the
BBB oracle (ECFP4 + descriptors -> MLP) and judge (MACCS + atom pairs + descriptors -> logistic regression)
trained on B3DB with a scaffold split."""

from __future__ import annotations

import json
import shutil
import time
from typing import TYPE_CHECKING, Any

from morbench.envs.cns.bbb import save_bbb_model
from morbench.envs.cns.env import JUDGE_MODEL, ORACLE_MODEL
from morbench.envs.cns.featurize import FeatureSpec
from morbench.envs.cns.pool import RDKitPool
from morbench.envs.cns.prior import PRIOR_REPORT, train_prior
from morbench.envs.cns.train_bbb import load_b3db, scaffold_split, train_bbb_model

if TYPE_CHECKING:
    from morbench.envs.cns.build import BuildConfig

__all__ = ["JUDGE_SPEC", "ORACLE_SPEC", "build_bbb_models", "build_prior"]

ORACLE_SPEC = FeatureSpec(
    fingerprints=("ecfp4_2048",),
    descriptors=(
        "tpsa",
        "mol_weight",
        "hbd",
        "hba",
        "logp",
        "rotatable_bonds",
        "fraction_csp3",
        "rings",
        "aromatic_rings",
        "heavy_atoms",
        "heteroatoms",
        "formal_charge",
    ),
)
JUDGE_SPEC = FeatureSpec(
    fingerprints=("maccs_167", "atompair_1024"),
    descriptors=(
        "tpsa",
        "logp",
        "nh_oh",
        "nitrogen_oxygen",
        "labute_asa",
        "molar_refractivity",
        "kappa2",
        "chi1v",
        "formal_charge",
        "aliphatic_rings",
        "amide_bonds",
        "stereocenters",
    ),
)

# report path -> allowed absolute deviation from the previous build (figures not listed are not compared)


def build_prior(config: BuildConfig, train: list[str], valid: list[str]) -> dict[str, Any]:
    prior_dir = config.out_dir / "prior"
    report_path = prior_dir / PRIOR_REPORT
    if config.reuse_prior:
        if not report_path.is_file():
            raise SystemExit(f"--reuse-prior: {report_path} does not exist; build without --reuse-prior")
        report = json.loads(report_path.read_text())
        if report["config"] != json.loads(json.dumps(config.prior.to_dict())):
            raise SystemExit(
                f"--reuse-prior: the prior in {prior_dir} was trained with {report['config']}, "
                f"not {config.prior.to_dict()}; build without --reuse-prior"
            )
        return {**report, "reused": True}
    if prior_dir.exists():
        shutil.rmtree(prior_dir)
    return {**train_prior(train, valid, config.prior, prior_dir, progress=config.progress), "reused": False}


def build_bbb_models(config: BuildConfig, pool_workers: int | None) -> dict[str, Any]:
    start = time.perf_counter()
    data = load_b3db()
    split = scaffold_split(data.smiles, seed=config.split_seed)
    figures: dict[str, Any] = {
        "b3db": {
            "rows": data.raw_count,
            "rejected_unparsable_or_multifragment": data.rejected,
            "duplicate_rows": data.duplicates,
            "conflicting_labels_dropped": data.conflicts,
            "molecules": len(data.smiles),
            "positive_fraction": float(data.labels.mean()),
            "split": "balanced Bemis-Murcko scaffold split 80/10/10",
            "split_seed": config.split_seed,
            "split_sizes": [len(s) for s in split],
        }
    }
    for name, training in ((ORACLE_MODEL, config.oracle_training), (JUDGE_MODEL, config.judge_training)):
        pool = RDKitPool(training.spec, pool_workers)
        try:
            records = pool.map(data.smiles)
        finally:
            pool.close()
        failed = [r.error for r in records if r.error is not None]
        if failed:
            raise SystemExit(f"featurizing B3DB for {name} failed on {len(failed)} molecules, e.g. {failed[0]}")
        model, model_figures = train_bbb_model(records, data.labels, split, training, config.progress, name)
        model_figures["features"] = {
            "fingerprints": training.spec.fingerprints,
            "descriptors": training.spec.descriptors,
        }
        model_figures["family"] = "MLP" if training.hidden else "logistic regression"
        save_bbb_model(model, config.out_dir, name, {"training": model_figures})
        figures[name] = model_figures
    figures["seconds"] = time.perf_counter() - start
    return figures
